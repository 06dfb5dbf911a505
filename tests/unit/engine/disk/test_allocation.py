"""The host allocation map of a raw file (real sparse files)."""

import os

import pytest

from sparc_nova.engine.disk import allocation

MIB = 1024 * 1024


@pytest.fixture
def sparse(tmp_path):
    path = tmp_path / 's.raw'
    with open(path, 'wb') as f:
        f.truncate(16 * MIB)
        f.seek(2 * MIB)
        f.write(b'a' * MIB)
        f.seek(8 * MIB)
        f.write(b'b' * 4096)
    return str(path)


def _holes_supported(path):
    return allocation.data_ranges(path) != [(0, os.path.getsize(path))]


def test_data_ranges_skip_holes(sparse):
    if not _holes_supported(sparse):
        pytest.skip('the filesystem of the test directory has no holes')
    assert allocation.data_ranges(sparse) == [(2 * MIB, MIB),
                                              (8 * MIB, 4096)]


def test_data_ranges_are_clipped_to_the_window(sparse):
    if not _holes_supported(sparse):
        pytest.skip('the filesystem of the test directory has no holes')
    assert allocation.data_ranges(sparse, 2 * MIB + 10, 8 * MIB + 100) \
        == [(2 * MIB + 10, MIB - 10), (8 * MIB, 100)]
    assert allocation.data_ranges(sparse, 9 * MIB) == []
    assert allocation.data_ranges(sparse, 0, 100 * MIB)[-1] == \
        (8 * MIB, 4096)


def test_intersect_and_merge():
    a = [(0, 10), (20, 10), (40, 100)]
    b = [(5, 20), (29, 12), (100, 5)]
    assert allocation.intersect(a, b) == [(5, 5), (20, 5), (29, 1),
                                          (40, 1), (100, 5)]
    assert allocation.intersect(a, []) == []
    assert allocation.merged([(10, 5), (0, 10), (30, 1), (12, 1)]) == \
        [(0, 15), (30, 1)]
    assert allocation.total([(0, 15), (30, 1)]) == 16


def test_nonzero_ranges(sparse):
    assert allocation.nonzero_ranges(sparse, [(0, 2 * MIB)]) == []
    # reported in whole chunks of at most 4 MiB
    assert allocation.nonzero_ranges(sparse, [(MIB, 2 * MIB)]) == \
        [(MIB, 2 * MIB)]
    assert allocation.nonzero_ranges(sparse, [(8 * MIB + 4095, 1)]) == \
        [(8 * MIB + 4095, 1)]


def test_nonzero_ranges_past_the_end_is_an_error(sparse):
    with pytest.raises(OSError):
        allocation.nonzero_ranges(sparse, [(16 * MIB - 10, 20)])
