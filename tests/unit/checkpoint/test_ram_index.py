"""The RAM index's compact columns: payload offsets kept as header
lengths, block numbers as bytes.
"""

import numpy as np
import pytest

from sparc_nova.checkpoint import ram_index


def _index(records, blocks=2):
    """An index of ``records`` ``(block, page, hdr_off, data_off, kind,
    fill)`` added one at a time, then a run of 3 PAGE records of block 0.
    """
    b = ram_index.RamIndexBuilder(100)
    for rec in records:
        assert b.add(*rec)
    assert b.add_run(0, np.array([5, 6, 7]), np.array([9000, 13104, 17208]),
                     ram_index.KIND_PAGE, None)
    return b.finish([ram_index.RamBlock(i, 'b%d' % i, 8 * 4096)
                     for i in range(blocks)])


RECORDS = [(0, 0, 100, 100 + 8 + 1 + 6, ram_index.KIND_PAGE, 0),
           (1, 3, 4210, 4218, ram_index.KIND_ZERO, 0xaa),
           (0, 4, 4219, 4227, ram_index.KIND_PAGE, 0)]


def test_payload_offsets_are_header_plus_length():
    idx = _index(RECORDS)
    data = [115, 4218, 4227, 9008, 13112, 17216]
    assert idx.rec_header_len.dtype == np.uint16
    assert idx.rec_block.dtype == np.uint8
    assert idx.rec_data[0] == 115 and type(int(idx.rec_data[3])) is int
    assert idx.rec_data[np.array([5, 1])].tolist() == [17216, 4218]
    assert idx.rec_data[idx.rec_kind == ram_index.KIND_ZERO].tolist() == \
        [4218]
    assert idx.rec_data[2:4].dtype == np.int64
    assert np.array_equal(idx.rec_data, data) and len(idx.rec_data) == 6
    assert idx.last[0].tolist() == [0, -1, -1, -1, 2, 3, 4, 5]


@pytest.mark.parametrize('off, rec', [
    (0, -1), (114, -1), (115, 0), (4209, 0),
    (4210, 0),          # header of record 1: still inside record 0's page
    (4218, 1), (4226, 1), (4227, 2), (9007, 2), (9008, 3), (17216 + 10, 5)])
def test_record_at_a_stream_offset(off, rec):
    assert _index(RECORDS).rec_data.record_at(off) == rec


@pytest.mark.parametrize('data_off', [99, 100 + ram_index.MAX_HEADER + 1])
def test_a_payload_outside_its_header_reach_is_refused(data_off):
    b = ram_index.RamIndexBuilder(10)
    with pytest.raises(ValueError, match='record at 100'):
        b.add(0, 0, 100, data_off, ram_index.KIND_PAGE, 0)


def test_many_blocks_keep_wide_block_numbers():
    idx = _index(RECORDS, blocks=300)
    assert idx.rec_block.dtype == np.int32
    assert idx.rec_block.tolist() == [0, 1, 0, 0, 0, 0]
