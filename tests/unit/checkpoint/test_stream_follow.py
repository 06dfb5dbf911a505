"""Opening a save image while libvirt is still writing it."""

import gzip
import time

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import stream_follow
from sparc_nova import exception
from tests import streamgen


def _start(tmp_path, data, **kw):
    return streamgen.start_writing(str(tmp_path / 'save.img'), data, **kw)


def test_followed_image_parses_as_the_finished_file(tmp_path):
    data = streamgen.simple_save(ram_pages=512, twice=(4, 6))
    path, w = _start(tmp_path, data)
    follow = stream_follow.Follow.within(60, w.done.is_set)
    with checkpoint.open_checkpoint(path, follow=follow) as ck:
        assert w.marked_at is not None
        assert follow.completed_at >= w.marked_at
        got = ck.layout
        assert ck.memory.read_page(2) == streamgen.page_of(2)
    with checkpoint.open_checkpoint(path) as ck:
        ref = ck.layout
    assert (got.size, got.machine, got.eof_offset) == \
        (ref.size, ref.machine, ref.eof_offset)
    assert [s.idstr for s in got.sections] == \
        [s.idstr for s in ref.sections]
    assert [d.name for d in got.devices] == [d.name for d in ref.devices]
    for name in ('rec_block', 'rec_page', 'rec_hdr', 'rec_data',
                 'rec_kind', 'rec_fill'):
        assert np.array_equal(getattr(got.ram, name),
                              getattr(ref.ram, name)), name


def test_a_save_that_stopped_short_is_an_error(tmp_path):
    data = streamgen.simple_save(ram_pages=64)
    path, w = _start(tmp_path, data, stop_at=len(data) // 2)
    follow = stream_follow.Follow.within(60, w.done.is_set)
    with pytest.raises(exception.CheckpointFormatError):
        checkpoint.open_checkpoint(path, follow=follow)


def test_a_compressed_image_is_read_once_complete(tmp_path):
    data = streamgen.simple_save(ram_pages=32)
    hdr_end = data.index(b'QEVM')
    header = bytearray(data[:hdr_end])
    header[28:32] = compression.GZIP.to_bytes(4, 'little')
    path, w = _start(tmp_path, bytes(header) + gzip.compress(data[hdr_end:]))
    follow = stream_follow.Follow.within(60, w.done.is_set)
    with checkpoint.open_checkpoint(path, follow=follow) as ck:
        assert w.marked_at is not None
        assert ck.memory.read_page(6) == streamgen.page_of(6)


def test_the_wait_ends_at_the_deadline(tmp_path):
    path = str(tmp_path / 'save.img')
    data = streamgen.simple_save(ram_pages=64)
    with open(path, 'wb') as f:
        f.write(libvirt_save.MAGIC_PARTIAL + data[16:len(data) // 2])
    t = time.monotonic()
    with pytest.raises(exception.CheckpointFormatError, match='gave up'):
        checkpoint.open_checkpoint(
            path, follow=stream_follow.Follow.within(0.3))
    assert time.monotonic() - t < 5


def test_a_header_read_while_incomplete_is_not_served_stale(tmp_path):
    """The header is read while the magic still says "partial"; the
    checkpoint opened on the same file object once the image is complete
    must see the final header, not a buffered copy of the old one.
    """
    data = streamgen.simple_save(ram_pages=256)
    path, w = _start(tmp_path, data, pause=0.001)
    follow = stream_follow.Follow.within(60, w.done.is_set)
    f = open(path, 'rb')
    head = stream_follow.wait_header(f, path, follow)
    assert head.stream_offset > 0 and w.marked_at is None
    # Whoever opened the file read its start through it meanwhile.
    assert f.read(16) == libvirt_save.MAGIC_PARTIAL
    with checkpoint.open_checkpoint(path, file=f, follow=follow) as ck:
        assert ck.header.stream_offset == head.stream_offset
        assert ck.memory.read_page(2) == streamgen.page_of(2)


def test_a_claim_the_finished_stream_cannot_back_is_refused(tmp_path):
    """While the stream grows its size is not known yet: the RAM blocks'
    claim is checked again, against the final size, before the per-page
    tables are built.
    """
    b = streamgen.StreamBuilder({'pc.ram': (1 << 40) - (1 << 20)})
    data = streamgen.libvirt_header(1 << 30) + b.build(
        [[('pc.ram', p, streamgen.page_of(p)) for p in range(8)]])
    path, w = _start(tmp_path, data)
    with pytest.raises(exception.LimitExceeded, match='can hold at most'):
        checkpoint.open_checkpoint(
            path, follow=stream_follow.Follow.within(60, w.done.is_set))


def test_a_corrupt_record_in_a_followed_stream_is_an_error(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=64))
    start = data.index(b'QEVM')
    rec = data.index(b'\x03\x00\x00\x00\x02', start) + 5
    data[rec:rec + 8] = (1000 << 12 | 0x08).to_bytes(8, 'big')
    path, w = _start(tmp_path, bytes(data))
    with pytest.raises(exception.CheckpointFormatError,
                       match='beyond RAM block'):
        checkpoint.open_checkpoint(
            path, follow=stream_follow.Follow.within(60, w.done.is_set))
    w.join()
    assert open(path, 'rb').read() == bytes(data)
