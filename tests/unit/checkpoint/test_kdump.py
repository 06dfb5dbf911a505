"""kdump-compressed guest memory dumps (flattened and seekable) as
checkpoints: reading, rewriting and the refusal of hostile files."""

import os
import struct
import zlib

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import kdump
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import rewrite
from sparc_nova.engine import physview
from sparc_nova import exception
from tests.unit.checkpoint import kdump_builder as kb

SECRET = b'KDUMP-SECRET-0123456789abcdef'
PAGE = 4096
BIOS = 0xfffc0
VMCOREINFO = b'OSRELEASE=6.1.0\nKERNELOFFSET=0\n'


def guest_pages() -> dict[int, bytes]:
    """16 frames of RAM (some zero, one with the secret) and 4 of
    firmware just below 4 GiB.
    """
    pages = {}
    for pfn in list(range(16)) + list(range(BIOS, BIOS + 4)):
        if pfn in (3, 4, 9):
            pages[pfn] = bytes(PAGE)
        else:
            pages[pfn] = struct.pack('<Q', pfn) + bytes([pfn % 251]) * \
                (PAGE - 8)
    secret = bytearray(pages[5])
    secret[100:100 + len(SECRET)] = SECRET
    pages[5] = bytes(secret)
    # Stored raw: it does not compress.
    pages[6] = np.random.default_rng(6).bytes(PAGE)
    return pages


def dump_bytes(flattened=True, **kw) -> bytes:
    img, _ = kb.logical_image(guest_pages(), vmcoreinfo=VMCOREINFO, **kw)
    return kb.flatten(img) if flattened else img


def write(tmp_path, data: bytes, name='guest.kdump') -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize('flattened', [True, False])
def test_dump_reads_as_guest_physical_memory(tmp_path, flattened):
    path = write(tmp_path, dump_bytes(flattened))
    pages = guest_pages()
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.kind == 'kdump-compressed'
        assert not ck.restorable
        assert [(r.gpa, r.length) for r in ck.memory.ranges] == \
            [(0, 16 * PAGE), (BIOS * PAGE, 4 * PAGE)]
        for pfn, data in pages.items():
            assert ck.memory.read_page(pfn) == data
        with pytest.raises(Exception, match='not RAM'):
            ck.memory.read(16 * PAGE, 1)
        info = ck.info()
        assert info['kdump']['layout'] == \
            ('flattened' if flattened else 'seekable')
        assert info['kdump']['compression'] == 'zlib'
        assert info['kdump']['pages'] == 20
        assert info['kdump']['vmcoreinfo'] is True
        assert info['restore'].startswith('none')
        assert ck.layout.core.vmcoreinfo == VMCOREINFO
        mem = physview.CheckpointMemory(ck)
        try:
            assert list(mem.find(SECRET)) == [5 * PAGE + 100]
        finally:
            mem.close()
    assert not checkpoint.restorable(path)
    assert sorted(os.listdir(tmp_path)) == ['guest.kdump']


def test_uncompressed_and_scattered_pieces(tmp_path):
    img, _ = kb.logical_image(guest_pages(), compression=0)
    # Pieces out of order, with a gap (read as zeros) between two.
    size = len(img)
    cuts = [(0, 5000), (size - 7000, 7000), (5000, 3000),
            (8192, size - 7000 - 8192)]
    path = write(tmp_path, kb.flatten(img, pieces=cuts))
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.memory.read_page(5)[100:100 + len(SECRET)] == SECRET


def _large_pages() -> dict[int, bytes]:
    """About 3 MiB of stored data (more than one read-ahead window):
    incompressible pages stored raw, compressible ones, zero frames
    naming the one stored zero page behind the window, and a hole in
    the frame numbers.
    """
    rng = np.random.default_rng(7)
    pages = {}
    for pfn in list(range(1700)) + list(range(2000, 2100)):
        if pfn % 5 == 0:
            pages[pfn] = bytes(PAGE)
        elif pfn % 5 in (1, 2):
            pages[pfn] = rng.bytes(PAGE)
        else:
            pages[pfn] = struct.pack('<Q', pfn) + bytes([pfn % 251]) * \
                (PAGE - 8)
    return pages


@pytest.mark.parametrize('flattened', [True, False])
def test_pages_beyond_one_read_window(tmp_path, flattened):
    pages = _large_pages()
    img, where = kb.logical_image(pages)
    assert len(img) - where['data'] > 2 * kdump._CHUNK
    path = write(tmp_path, kb.flatten(img, piece=300000) if flattened
                 else img)
    with checkpoint.open_checkpoint(path) as ck:
        for pfn, data in pages.items():
            assert ck.memory.read_page(pfn) == data, hex(pfn)
    out = str(tmp_path / 'scrubbed.kdump')
    with checkpoint.open_checkpoint(path) as ck:
        rewrite.rewrite_pages(ck, {1: bytes(PAGE), 1699: b'x' * PAGE},
                              output=out).verify()
    pages.update({1: bytes(PAGE), 1699: b'x' * PAGE})
    with checkpoint.open_checkpoint(out) as ck:
        for pfn, data in pages.items():
            assert ck.memory.read_page(pfn) == data, hex(pfn)


@pytest.mark.parametrize('flattened', [True, False])
def test_rewrite_writes_a_new_dump(tmp_path, flattened, journal_key):
    before = dump_bytes(flattened)
    path = write(tmp_path, before)
    out = str(tmp_path / 'scrubbed.kdump')
    pages = guest_pages()
    with checkpoint.open_checkpoint(path) as ck:
        res = rewrite.rewrite_pages(
            ck, {5: bytes(PAGE), 6: b'\x01' * PAGE, 7: b'ab' * (PAGE // 2),
                 BIOS + 1: bytes(PAGE)}, output=out)
    res.verify()
    after = open(out, 'rb').read()
    assert open(path, 'rb').read() == before
    assert after[:12] == before[:12]
    assert SECRET not in after
    with checkpoint.open_checkpoint(out) as ck:
        assert ck.info()['kdump']['layout'] == \
            ('flattened' if flattened else 'seekable')
        assert ck.memory.read_page(5) == bytes(PAGE)
        assert ck.memory.read_page(6) == b'\x01' * PAGE
        assert ck.memory.read_page(7) == b'ab' * (PAGE // 2)
        assert ck.memory.read_page(BIOS + 1) == bytes(PAGE)
        for pfn in (0, 1, 3, 8, 15, BIOS, BIOS + 3):
            assert ck.memory.read_page(pfn) == pages[pfn]
        # A raw scan of every decompressed page.
        assert SECRET not in bytes(ck.stream)
    # Replacing the file itself (atomically) also works.
    with checkpoint.open_checkpoint(path) as ck:
        rewrite.rewrite_pages(ck, {5: bytes(PAGE)}).verify()
    with checkpoint.open_checkpoint(path) as ck:
        assert SECRET not in bytes(ck.stream)
    assert sorted(os.listdir(tmp_path)) == ['guest.kdump', 'scrubbed.kdump']


def test_in_place_is_refused(tmp_path, journal_key):
    before = dump_bytes()
    path = write(tmp_path, before)
    with checkpoint.open_checkpoint(path) as ck:
        with pytest.raises(exception.CheckpointError, match='in place'):
            rewrite.rewrite_pages(ck, {5: bytes(PAGE)}, in_place=True,
                                  journal_key=journal_key)
    assert open(path, 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['guest.kdump']


def _refused(tmp_path, data, error, *words, limits=limits_mod.DEFAULT):
    path = write(tmp_path, data)
    with pytest.raises(error) as e:
        checkpoint.open_checkpoint(path, limits=limits).close()
    assert e.value.path == path
    assert path in str(e.value)
    # The words are looked for in the message, not in the path (which
    # holds the test's name).
    message = str(e.value).replace(path, '')
    for w in words:
        assert w in message
    assert open(path, 'rb').read() == data
    assert sorted(os.listdir(tmp_path)) == ['guest.kdump']
    return e.value


def test_refuses_a_truncated_piece(tmp_path):
    data = dump_bytes()
    _refused(tmp_path, data[:-100], exception.CheckpointFormatError,
             'cut by the end of the file (truncated)')


def test_refuses_a_missing_end_marker(tmp_path):
    _refused(tmp_path, dump_bytes()[:-16], exception.CheckpointFormatError,
             'end marker')


def test_refuses_a_piece_past_the_limit(tmp_path):
    img, _ = kb.logical_image(guest_pages())
    data = bytearray(kb.flatten(img))
    struct.pack_into('>q', data, kdump.FLAT_HEADER_SIZE, 1 << 62)
    _refused(tmp_path, bytes(data), exception.LimitExceeded, 'past the limit')
    data = bytearray(kb.flatten(img))
    struct.pack_into('>q', data, kdump.FLAT_HEADER_SIZE + 8, -5)
    _refused(tmp_path, bytes(data), exception.LimitExceeded, 'past the limit')


def test_refuses_overlapping_pieces(tmp_path):
    img, _ = kb.logical_image(guest_pages())
    data = kb.flatten(img, pieces=[(0, len(img)), (4096, 100)])
    _refused(tmp_path, data, exception.CheckpointFormatError,
             'pieces overlap at logical offset 4096')


def _set_descriptor(img: bytes, where: dict, i: int, **fields) -> bytes:
    out = bytearray(img)
    at = where['desc'] + i * kdump.DESCRIPTOR.itemsize
    d = np.frombuffer(bytes(out[at:at + kdump.DESCRIPTOR.itemsize]),
                      dtype=kdump.DESCRIPTOR).copy()
    for k, v in fields.items():
        d[k] = v
    out[at:at + kdump.DESCRIPTOR.itemsize] = d.tobytes()
    return bytes(out)


@pytest.mark.parametrize('flattened', [True, False])
def test_refuses_a_descriptor_outside_the_file(tmp_path, flattened):
    img, where = kb.logical_image(guest_pages())
    bad = _set_descriptor(img, where, 1, offset=len(img) - 10)
    _refused(tmp_path, kb.flatten(bad) if flattened else bad,
             exception.CheckpointFormatError, 'frame 0x1',
             'outside the dump')
    bad = _set_descriptor(img, where, 2, offset=where['desc'])
    _refused(tmp_path, kb.flatten(bad) if flattened else bad,
             exception.CheckpointFormatError, 'frame 0x2',
             'outside the dump')


def test_refuses_a_raw_page_not_of_a_page(tmp_path):
    img, where = kb.logical_image(guest_pages())
    bad = _set_descriptor(img, where, 1, flags=0, size=100)
    _refused(tmp_path, bad, exception.CheckpointFormatError, 'not of 4096')


def test_refuses_a_page_inflating_past_a_page(tmp_path):
    big = zlib.compress(bytes(2 * PAGE))
    img, _ = kb.logical_image(guest_pages(), compress=lambda b: big)
    _refused(tmp_path, kb.flatten(img), exception.CheckpointFormatError,
             'frame 0x1', 'inflates to more than 4096')


def test_refuses_a_short_page(tmp_path):
    short = zlib.compress(b'x' * 100)
    img, _ = kb.logical_image(guest_pages(), compress=lambda b: short)
    _refused(tmp_path, img, exception.CheckpointFormatError,
             'frame 0x1', 'inflates to 100 bytes')


def test_refuses_a_corrupt_page(tmp_path):
    img, _ = kb.logical_image(guest_pages(),
                              compress=lambda b: b'\x78\x9c' + bytes(40))
    _refused(tmp_path, img, exception.CheckpointFormatError,
             'does not inflate')


def test_refuses_a_bitmap_past_the_ram_bound(tmp_path):
    small = limits_mod.Limits(max_guest_ram=16 * PAGE)
    _refused(tmp_path, dump_bytes(), exception.LimitExceeded,
             'claims 20 pages', limits=small)
    img, _ = kb.logical_image(guest_pages())
    bad = bytearray(img)
    struct.pack_into('<Q', bad, PAGE + 96, 1 << 40)     # max_mapnr_64
    _refused(tmp_path, kb.flatten(bytes(bad)), exception.LimitExceeded,
             'describe 1099511627776 frames')


def test_refuses_descriptors_larger_than_the_file(tmp_path):
    # A bitmap of 2**20 dumped frames, its 24 MiB of descriptors past the
    # last piece (they would read as zeros).
    img, where = kb.logical_image(guest_pages(), max_mapnr=1 << 20)
    bad = bytearray(img)
    ones = b'\xff' * ((1 << 20) // 8)
    start, half = where['bitmap'], where['bitmap_len']
    bad[start:start + len(ones)] = ones
    bad[start + half:start + half + len(ones)] = ones
    data = kb.flatten(bytes(bad), pieces=[(0, where['desc'])])
    _refused(tmp_path, data, exception.LimitExceeded, 'descriptors alone')


def test_refuses_a_filtered_dump(tmp_path):
    img, where = kb.logical_image(guest_pages())
    bad = bytearray(img)
    bad[where['bitmap']] ^= 0x02      # frame 1 present but not dumped
    _refused(tmp_path, bytes(bad), exception.UnsupportedCheckpoint,
             'filtered')


def test_refuses_another_block_size(tmp_path):
    img, _ = kb.logical_image(guest_pages())
    bad = bytearray(img)
    struct.pack_into('<I', bad, 428, 8192)
    _refused(tmp_path, bytes(bad), exception.UnsupportedCheckpoint,
             'block size 8192')


@pytest.mark.parametrize('compression,module,package', [
    (kdump.COMPRESS_LZO, 'lzo', 'python-lzo'),
    (kdump.COMPRESS_SNAPPY, 'cramjam', 'cramjam')])
def test_lzo_and_snappy_need_their_library(tmp_path, compression, module,
                                           package):
    try:
        __import__(module)
    except ImportError:
        pass
    else:
        pytest.skip('%s is installed' % package)
    img, _ = kb.logical_image(guest_pages(), compression=compression,
                              compress=lambda b: b[:100])
    _refused(tmp_path, kb.flatten(img), exception.UnsupportedCheckpoint,
             package, 'not installed')


@pytest.mark.parametrize('flattened', [True, False])
def test_mutated_dumps_open_or_fail_cleanly(tmp_path, flattened):
    """Bytes flipped in the headers, bitmaps, descriptors and pieces:
    every dump opens, or is refused with a CheckpointError.
    """
    data = dump_bytes(flattened)
    rng = np.random.default_rng(21)
    # Half of the flips land in the headers (and the first pieces' tags),
    # the others anywhere (bitmaps, descriptors, page data, tags).
    head = 12 * 1024
    path = str(tmp_path / 'guest.kdump')
    for i in range(300):
        bad = bytearray(data)
        hot = head if i % 2 else len(data)
        for at in rng.integers(0, hot, size=int(rng.integers(1, 4))):
            bad[int(at)] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            bad = bad[:int(rng.integers(0, len(bad)))]
        with open(path, 'wb') as f:
            f.write(bad)
        try:
            checkpoint.open_checkpoint(path).close()
        except exception.CheckpointError:
            pass
    assert sorted(os.listdir(tmp_path)) == ['guest.kdump']
