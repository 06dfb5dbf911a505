"""Page comparisons of the guest physical view."""

import numpy as np
import pytest

from sparc_nova.engine import physview


def test_pages_hold_whole_page_compared():
    buf = bytearray(b'\xaa' * (3 * 4096 + 7))
    offs = np.array([0, 3, 4096 + 5, 2 * 4096 + 7])
    assert physview.pages_hold(bytes(buf), offs, 0xaa).tolist() == \
        [True] * 4
    # One byte off at the end of the second page, at the head of the
    # third: only those fail.
    buf[3 + 4095] = 0
    buf[4096 + 5] = 1
    assert physview.pages_hold(bytes(buf), offs, 0xaa).tolist() == \
        [True, False, False, True]
    assert physview.pages_hold(bytes(buf), offs, 0).tolist() == [False] * 4


def records(n, fill, headers=b'\x01\x00\xaa\xff\x00\x07\x20\x08'):
    """``n`` back-to-back PAGE records (header, 4096 ``fill`` bytes) after
    a 5-byte prefix; their payload offsets.
    """
    buf = bytearray(b'QEVM!')
    for _ in range(n):
        buf += headers + bytes([fill]) * 4096
    return buf, 5 + 8 + np.arange(n) * 4104


@pytest.mark.parametrize('fill', [0, 0xaa])
@pytest.mark.parametrize('expected', [False, True])
def test_pages_hold_runs(fill, expected):
    def hold(buf, offs):
        return physview.pages_hold(bytes(buf), offs, fill,
                                   expected).tolist()
    buf, offs = records(40, fill)
    assert hold(buf, offs) == [True] * 40
    # A byte off in the middle and at the end of a page of the run.
    for p, at in ((7, 2000), (31, 4095), (32, 64)):
        buf[offs[p] + at] ^= 1
    assert hold(buf, offs) == [p not in (7, 31, 32) for p in range(40)]
    # Some of the pages, not back to back, and a short run.
    sel = np.array([0, 2, 3, 4, 7, 39])
    assert hold(buf, offs[sel]) == [True, True, True, True, False, True]
    assert hold(buf, offs[:0]) == []


def test_pages_hold_bounds():
    with pytest.raises(ValueError):
        physview.pages_hold(bytes(8192), np.array([4097]), 0)
    with pytest.raises(ValueError):
        physview.pages_hold(bytes(8192), np.array([-1]), 0)


def test_page_aligned_reads_of_many_pages(tmp_path):
    """A read of whole pages (looked up at once) returns what reading
    them one by one does: data pages, ZERO records, a page sent twice
    (its last copy), and reads that cross into the next RAM range or
    start inside a page take the general path.
    """
    from sparc_nova.checkpoint import checkpoint
    from sparc_nova.introspect import physical
    from tests import streamgen

    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=64, twice=(10,)))
    with checkpoint.open_checkpoint(str(path)) as ck:
        mem = physview.CheckpointMemory(ck)
        try:
            one_by_one = b''.join(mem.read(p * 4096, 4096)
                                  for p in range(64))
            assert mem.read(0, 64 * 4096) == one_by_one
            assert mem.read(9 * 4096, 3 * 4096) == \
                one_by_one[9 * 4096:12 * 4096]
            assert mem.read(10 * 4096, 4096)[:4] != b'OLD!'
            assert mem.read(100, 3 * 4096) == one_by_one[100:100 + 3 * 4096]
            assert one_by_one[4096:8192] == bytes(4096)
            with pytest.raises(physical.PhysicalAddressError):
                mem.read(63 * 4096, 2 * 4096)
        finally:
            mem.close()


def test_read_into_copies_back_to_back_data_pages_at_once(tmp_path,
                                                          monkeypatch):
    """Frames whose last copies are back-to-back PAGE records are copied
    in one step; a run with a ZERO record among them takes the page by
    page path; both give what reads one by one give.
    """
    from sparc_nova.checkpoint import checkpoint
    from tests import streamgen

    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(
        ram_pages=64, secret_pfns=(20, 21, 22, 23), secret=b'SECRET'))
    copied = []
    real = physview.CheckpointMemory._copy_records

    def spy(self, i, p, out):
        done = real(self, i, p, out)
        copied.append((p, len(out) // 4096, done))
        return done

    monkeypatch.setattr(physview.CheckpointMemory, '_copy_records', spy)
    with checkpoint.open_checkpoint(str(path)) as ck:
        mem = physview.CheckpointMemory(ck)
        try:
            for first, n, at_once in ((20, 4, True), (19, 4, False),
                                      (22, 1, True)):
                out = memoryview(bytearray(n * 4096))
                mem.read_into(first * 4096, out)
                assert bytes(out) == b''.join(
                    mem.read(p * 4096, 4096) for p in range(first, first + n))
                assert copied[-1] == (first, n, at_once)
            assert bytes(out).startswith(b'SECRET')
        finally:
            mem.close()
