"""Free frames from the buddy allocator's blocks."""

import random

import numpy as np

from sparc_nova.introspect import freepages


def test_block_frames_sorted_distinct():
    assert freepages.block_frames([]).tolist() == []
    assert freepages.block_frames([(8, 2), (0, 1), (9, 0)]).tolist() == \
        [0, 1, 8, 9, 10, 11]
    rnd = random.Random(7)
    for _ in range(100):
        blocks = [(rnd.randrange(5000), rnd.randrange(6))
                  for _ in range(rnd.randrange(1, 40))]
        want = sorted({p + i for p, o in blocks for i in range(1 << o)})
        got = freepages.block_frames(blocks)
        assert got.dtype == np.int64 and got.tolist() == want


def test_block_frames_across_chunks():
    """More frames than are numbered at once (1 << 20)."""
    got = freepages.block_frames([(1 << 22, 21), (5, 0), (1 << 21, 20)])
    want = np.concatenate([[5], np.arange(1 << 21, (1 << 21) + (1 << 20)),
                           np.arange(1 << 22, (1 << 22) + (1 << 21))])
    assert np.array_equal(got, want)
