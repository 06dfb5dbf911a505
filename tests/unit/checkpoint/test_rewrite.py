"""Replacing guest pages in checkpoints."""

import gzip
import os

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import rewrite
from sparc_nova.checkpoint import write_mode
from sparc_nova import exception
from tests import streamgen

SECRET = b'TOP-SECRET-PASSPHRASE-0123456789'


def make(tmp_path, data=None, name='save.img', mode=0o600):
    path = tmp_path / name
    path.write_bytes(data or streamgen.simple_save(
        ram_pages=64, secret_pfns=(10, 20), secret=SECRET, twice=(10,)))
    os.chmod(path, mode)
    return str(path)


def test_every_copy_replaced_and_zero_records(tmp_path):
    path = make(tmp_path)
    before = open(path, 'rb').read()
    assert before.count(SECRET) == 2
    marked = bytes(4000) + b'KILL' + bytes(92)
    with checkpoint.open_checkpoint(path) as ck:
        # Frame 10 is sent twice (an old copy and the secret).
        res = rewrite.rewrite_pages(ck, {10: bytes(4096), 20: marked},
                                    output=str(tmp_path / 'out.img'))
    assert res.pages == 2
    assert res.records_rewritten == 3
    out = open(res.path, 'rb').read()
    assert SECRET not in out
    assert b'OLD!' in before and b'OLD!' not in out
    # Both copies of frame 10 became 9-byte ZERO records.
    assert len(out) == len(before) - 2 * (4096 - 1)
    assert res.verify()['pages_checked'] == 2
    with checkpoint.open_checkpoint(res.path) as ck:
        assert ck.memory.read_page(20) == marked
        assert ck.memory.read_page(2) == streamgen.page_of(2)
        assert ck.memory.read_page(10) == bytes(4096)
        idx = ck.layout.ram
        b = idx.block('pc.ram').index
        # Both copies of frame 10 now hold zeros.
        recs = idx.copies_of(b, [10])
        assert len(recs) == 2
        for r in recs:
            assert idx.rec_kind[r] == 1 and idx.rec_fill[r] == 0
    # The source is untouched.
    assert open(path, 'rb').read() == before


def test_replace_target_keeps_mode(tmp_path):
    path = make(tmp_path, mode=0o640)
    with checkpoint.open_checkpoint(path) as ck:
        rewrite.rewrite_pages(ck, {20: bytes(4096)})
    assert SECRET in open(path, 'rb').read()     # frame 10 still holds it
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ['save.img']


def test_zero_record_becomes_page_when_last_copy(tmp_path):
    path = make(tmp_path)
    content = streamgen.page_of(3, b'NEW!')
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.memory.read_page(3) == bytes(4096)
        res = rewrite.rewrite_pages(ck, {3: content},
                                    output=str(tmp_path / 'o.img'))
    assert res.records_rewritten == 1
    with checkpoint.open_checkpoint(res.path) as ck:
        assert ck.memory.read_page(3) == content
        # The ZERO record grew into a PAGE record.
        assert ck.layout.ram.rec_kind[ck.layout.ram.last[0][3]] == 2


def test_in_place(tmp_path, journal_key):
    path = make(tmp_path)
    size = os.path.getsize(path)
    with checkpoint.open_checkpoint(path) as ck:
        res = rewrite.rewrite_pages(ck, {10: bytes(4096), 20: bytes(4096)},
                                    in_place=True, journal_key=journal_key)
    assert res.in_place
    assert os.path.getsize(path) == size
    assert SECRET not in open(path, 'rb').read()
    res.verify()


def test_in_place_refuses_zero_record_content(tmp_path, journal_key):
    path = make(tmp_path)
    before = open(path, 'rb').read()
    with checkpoint.open_checkpoint(path) as ck:
        with pytest.raises(exception.CheckpointError) as ei:
            rewrite.rewrite_pages(ck, {3: streamgen.page_of(3)},
                                  in_place=True, journal_key=journal_key)
    assert 'ZERO record' in str(ei.value)
    assert open(path, 'rb').read() == before


def test_recompresses_gzip(tmp_path):
    data = make(tmp_path)
    raw = open(data, 'rb').read()
    cut = raw.index(b'QEVM')
    header = bytearray(raw[:cut])
    header[28:32] = compression.GZIP.to_bytes(4, 'little')
    path = make(tmp_path, bytes(header) + gzip.compress(raw[cut:]),
                name='gz.img')
    with checkpoint.open_checkpoint(path) as ck:
        res = rewrite.rewrite_pages(ck, {10: bytes(4096), 20: bytes(4096)},
                                    output=str(tmp_path / 'gz-out.img'))
    out = open(res.path, 'rb').read()
    assert out[:cut] == bytes(header)
    stream = gzip.decompress(out[cut:])
    assert SECRET not in stream
    assert stream.startswith(b'QEVM')
    res.verify()


def test_carries_out_the_mode_decided_for_the_checkpoint(tmp_path):
    path = make(tmp_path)
    before = open(path, 'rb').read()
    with checkpoint.open_checkpoint(path) as ck:
        # Decided for a compressed image, or for another file: refused,
        # nothing written.
        for mode in (write_mode.choose(path, compression.GZIP),
                     write_mode.choose(str(tmp_path / 'other.img'), 0)):
            with pytest.raises(exception.CheckpointError,
                               match='write mode was decided'):
                rewrite.rewrite_pages(ck, {10: bytes(4096)}, mode=mode)
        res = rewrite.rewrite_pages(ck, {10: bytes(4096)}, mode=write_mode.
                                    choose(path, 0, output=path + '.out'))
    assert res.path == path + '.out' and not res.in_place
    assert open(path, 'rb').read() == before
    res.verify()


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    path = make(tmp_path)
    before = open(path, 'rb').read()

    def boom(*a, **kw):
        raise OSError('disk full')
    with checkpoint.open_checkpoint(path) as ck:
        monkeypatch.setattr(rewrite._StreamCopier, 'copy', boom)
        with pytest.raises(OSError):
            rewrite.rewrite_pages(ck, {10: bytes(4096)})
        monkeypatch.setattr(rewrite, '_write_stream', boom)
        with pytest.raises(OSError):
            rewrite.rewrite_pages(ck, {3: streamgen.page_of(3)})
    assert open(path, 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['save.img']


@pytest.mark.parametrize('kernel_copy_min', [0, 1 << 20])
def test_many_pages_mixed_contents(tmp_path, monkeypatch, kernel_copy_min,
                                   journal_key):
    """Runs of zero pages, a poison fill and full pages in one rewrite,
    both modes, checked page by page; unchanged spans copied inside the
    kernel or through a buffer.
    """
    monkeypatch.setattr(rewrite, '_KERNEL_COPY_MIN', kernel_copy_min)
    data = streamgen.simple_save(ram_pages=512)
    poison = b'\xaa' * 4096
    full = streamgen.page_of(7, b'KILL')
    rep = {p: bytes(4096) for p in range(0, 512, 2) if p % 6}
    rep[0] = bytes(4096)    # the record that names the block
    rep.update({p: poison for p in range(100, 140, 2)})
    rep[6] = full
    rep[9] = full       # a ZERO record that must grow (rewrite mode)
    for in_place in (False, True):
        path = make(tmp_path, data, name='m%d.img' % in_place)
        with checkpoint.open_checkpoint(path) as ck:
            if in_place:
                del rep[9]
            res = rewrite.rewrite_pages(ck, rep, in_place=in_place,
                                        journal_key=journal_key)
        res.verify()
        with checkpoint.open_checkpoint(path) as ck:
            for pfn in range(512):
                expect = rep.get(pfn, streamgen.page_of(pfn)
                                 if pfn % 2 == 0 else bytes(4096))
                assert ck.memory.read_page(pfn) == expect, pfn


def test_bad_replacement_size(tmp_path):
    path = make(tmp_path)
    with checkpoint.open_checkpoint(path) as ck:
        with pytest.raises(ValueError):
            rewrite.rewrite_pages(ck, {10: b'short'})


@pytest.mark.parametrize('tamper', ['data page', 'zero record fill'])
def test_verify_finds_a_page_that_does_not_read_back(tmp_path, tamper):
    """The read back compares every replaced frame: a data page changed
    by one byte, or a ZERO record whose fill byte changed, is named.
    """
    data = streamgen.simple_save(ram_pages=64)
    full = streamgen.page_of(7, b'KILL')
    rep = {p: bytes(4096) for p in range(2, 40, 2)}
    rep[6] = full
    path = make(tmp_path, data)
    with checkpoint.open_checkpoint(path) as ck:
        res = rewrite.rewrite_pages(ck, rep, output=str(tmp_path / 'o.img'))
    assert res.verify()['pages_checked'] == len(rep)
    pfn = 6 if tamper == 'data page' else 30
    with checkpoint.open_checkpoint(res.path) as ck:
        idx = ck.layout.ram
        rec = idx.copies_of(idx.block('pc.ram').index, [pfn])[-1]
        offset = ck.stream_base + int(idx.rec_data[rec])
        assert idx.rec_kind[rec] == (2 if tamper == 'data page' else 1)
    with open(res.path, 'r+b') as f:
        f.seek(offset + (100 if tamper == 'data page' else 0))
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x5a]))
    with pytest.raises(exception.CheckpointError,
                       match=r'1 replaced pages do not read back \(first '
                             r'frame 0x%x\)' % pfn):
        res.verify()


@pytest.mark.parametrize('kernel_copy_min', [0, 1 << 30])
def test_a_failed_write_in_the_writer_thread_fails_the_rewrite(
        tmp_path, monkeypatch, kernel_copy_min):
    """The output is written by a thread of its own: its error (a full
    disk, on a buffer or on a kernel copy) fails the rewrite, nothing is
    left, and the writes after it are not made.
    """
    monkeypatch.setattr(rewrite, '_COPY_CHUNK', 4096)
    monkeypatch.setattr(rewrite, '_KERNEL_COPY_MIN', kernel_copy_min)
    path = make(tmp_path, streamgen.simple_save(ram_pages=256))
    before = open(path, 'rb').read()
    calls = []
    real_write = os.write
    real_copy = os.copy_file_range

    def failing(real):
        def call(*args):
            calls.append(real.__name__)
            if len(calls) == 3:
                raise OSError(28, 'No space left on device')
            return real(*args)
        return call
    monkeypatch.setattr(rewrite.os, 'write', failing(real_write))
    monkeypatch.setattr(rewrite.os, 'copy_file_range',
                        failing(real_copy))
    with checkpoint.open_checkpoint(path) as ck:
        with pytest.raises(OSError, match='No space left'):
            rewrite.rewrite_pages(ck, {p: bytes(4096)
                                       for p in range(0, 256, 3)})
    assert len(calls) == 3
    assert open(path, 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['save.img']


class _OneBufferPages:
    """A PageSource that makes every page in one buffer, overwritten at
    each call (as an unseal's sealed pages are, a record at a time): a
    rewrite that kept a page past the next call would write the wrong
    bytes.
    """

    def __init__(self, pages):
        self._pages = pages
        self._buf = bytearray(4096)
        self.fills = np.array([p[0] if p == bytes([p[0]]) * 4096 else -1
                               for p in pages], dtype=np.int16)
        self.asked = []

    def __len__(self):
        return len(self._pages)

    def __getitem__(self, i):
        self.asked.append(i)
        self._buf[:] = self._pages[i]
        return memoryview(self._buf).toreadonly()

    def pages(self, i, n):
        self.asked.extend(range(i, i + n))
        self._buf = bytearray(b''.join(self._pages[i:i + n]))
        return memoryview(self._buf).toreadonly()


@pytest.mark.parametrize('in_place', [False, True])
def test_contents_made_when_asked(tmp_path, journal_key, in_place):
    """Contents from a PageSource: each is used before the next is asked
    for, mostly in ascending order, and the result reads back.
    """
    path = make(tmp_path, streamgen.simple_save(ram_pages=64))
    pfns = [2, 4, 6, 40, 8] + ([] if in_place else [3, 5])
    pages = [streamgen.page_of(p, b'NEW%d' % p) for p in pfns]
    source = _OneBufferPages(pages)
    repl = rewrite.PageReplacements(pfns, range(len(pfns)), source)
    with checkpoint.open_checkpoint(path) as ck:
        res = rewrite.rewrite_pages(ck, repl, in_place=in_place,
                                    journal_key=journal_key)
    res.verify()
    with checkpoint.open_checkpoint(path) as ck:
        for pfn, page in zip(pfns, pages):
            assert ck.memory.read_page(pfn) == page
    assert sorted(set(source.asked)) == list(range(len(pfns)))


def test_back_to_back_zero_records_grow_in_one_run(tmp_path):
    """Frames 0-99 scrubbed into back-to-back ZERO records (the first
    names its block), then given distinct contents again: every record
    grows back into a PAGE record, in one splice where they touch.
    """
    path = make(tmp_path, streamgen.simple_save(ram_pages=128))
    with checkpoint.open_checkpoint(path) as ck:
        rewrite.rewrite_pages(ck, {p: bytes(4096) for p in range(100)})
    new = {p: streamgen.page_of(p, b'BACK') for p in range(100)}
    with checkpoint.open_checkpoint(path) as ck:
        edits = rewrite._plan(ck, rewrite.PageReplacements.of(new))
        runs = [s for s in rewrite._splices(ck, edits)
                if isinstance(s[2], rewrite._GrownRun)]
        assert len(runs) == 1 and len(runs[0][2].contents) == 99
        res = rewrite.rewrite_pages(ck, new)
    res.verify()
    with checkpoint.open_checkpoint(path) as ck:
        for pfn in range(128):
            expect = new.get(pfn, streamgen.page_of(pfn) if pfn % 2 == 0
                             else bytes(4096))
            assert ck.memory.read_page(pfn) == expect, pfn
        assert (ck.layout.ram.rec_kind[ck.layout.ram.last[0][:100]] ==
                2).all()
