"""Guest physical memory of a stream: frames to their records."""

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import physmem
from tests import streamgen


def test_page_records_match_page_record(tmp_path):
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=64, twice=(10,)))
    with checkpoint.open_checkpoint(str(path)) as ck:
        mem = ck.memory
        pfns = np.arange(64, dtype=np.int64)[::-1]
        records = mem.page_records(pfns)
        assert records.tolist() == [mem.page_record(int(p) << 12)
                                    for p in pfns]
        # Frame 10 sent twice: its last copy.
        idx = ck.layout.ram
        copies = idx.copies_of(idx.block('pc.ram').index, [10])
        assert mem.page_records([10]).tolist() == [max(copies)]
        data = [int(r) for r in records if idx.rec_kind[r] == 2]
        assert data
        for rec in data[:4]:
            pfn = int(pfns[records.tolist().index(rec)])
            assert mem.record_page(rec) == mem.read_page(pfn)
        with pytest.raises(physmem.PhysicalAddressError) as e:
            mem.page_records([3, 64])
        assert e.value.address == 64 << 12


def test_frames_join_what_read_page_gives(tmp_path):
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=64, twice=(10,)))
    with checkpoint.open_checkpoint(str(path)) as ck:
        mem = ck.memory
        for pfns in ([10, 12, 14], [3, 4, 5], [7], [63, 2, 10]):
            # Data pages only (one step), zero pages among them, one
            # zero page, and frames in any order.
            assert mem.frames(np.array(pfns)) == b''.join(
                mem.read_page(p) for p in pfns)
        assert mem.frames(np.array([], dtype=np.int64)) == b''
        with pytest.raises(physmem.PhysicalAddressError):
            mem.frames(np.array([2, 64]))
