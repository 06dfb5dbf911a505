"""Free frames from the buddy allocator's blocks, kept as ranges."""

import random

import numpy as np

from sparc_nova.introspect import freepages


def _free(blocks):
    starts, ends = freepages.block_ranges(blocks)
    return freepages.FreeMemory(
        starts=starts, ends=ends, buddy_blocks=len(blocks), buddy_frames=0,
        pcp_frames=0, fill=0, fill_reason='zero', skipped=[])


def _frames(free, chunk=freepages.FRAME_CHUNK):
    parts = list(free.frames(chunk))
    assert all(len(p) <= chunk and p.dtype == np.int64 for p in parts)
    return np.concatenate(parts).tolist() if parts else []


def test_blocks_become_sorted_disjoint_ranges():
    assert _frames(_free([])) == []
    free = _free([(8, 2), (0, 1), (9, 0), (12, 0)])
    # 8-11 and 12 are adjacent: one range; 9 lies inside 8-11.
    assert free.starts.tolist() == [0, 8] and free.ends.tolist() == [2, 13]
    assert _frames(free) == [0, 1, 8, 9, 10, 11, 12] and free.count == 7


def test_frames_are_sorted_and_distinct_in_any_chunk_size():
    rnd = random.Random(7)
    for _ in range(100):
        blocks = [(rnd.randrange(5000), rnd.randrange(6))
                  for _ in range(rnd.randrange(1, 40))]
        want = sorted({p + i for p, o in blocks for i in range(1 << o)})
        free = _free(blocks)
        assert free.count == len(want)
        for chunk in (1, 7, 64, freepages.FRAME_CHUNK):
            assert _frames(free, chunk) == want


def test_ranges_longer_than_a_chunk():
    """More frames than are numbered at once."""
    free = _free([(1 << 22, 21), (5, 0), (1 << 21, 20)])
    want = np.concatenate([[5], np.arange(1 << 21, (1 << 21) + (1 << 20)),
                           np.arange(1 << 22, (1 << 22) + (1 << 21))])
    parts = list(free.frames())
    assert max(len(p) for p in parts) == freepages.FRAME_CHUNK
    assert np.array_equal(np.concatenate(parts), want)


def test_free_among_picks_the_free_frames():
    free = _free([(8, 2), (100, 0)])
    assert free.free_among([0, 7, 8, 11, 12, 99, 100, 101]).tolist() == \
        [8, 11, 100]
    assert _free([]).free_among([1, 2]).tolist() == []
