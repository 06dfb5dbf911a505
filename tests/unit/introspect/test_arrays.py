import numpy as np

from sparc_nova.introspect import arrays


def test_unique_matches_numpy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 50, 500)
    u, idx, inv, cnt = arrays.unique(a, return_index=True,
                                     return_inverse=True, return_counts=True)
    nu, nidx, ninv, ncnt = np.unique(a, return_index=True,
                                     return_inverse=True, return_counts=True)
    assert (u == nu).all() and (idx == nidx).all()
    assert (inv == ninv).all() and (cnt == ncnt).all()
    assert (u[inv] == a).all()
    assert len(arrays.unique(np.zeros(0, dtype=np.int64))) == 0


def test_intersect_and_isin():
    a = np.array([1, 3, 5, 7])
    b = np.array([3, 4, 7, 9])
    assert list(arrays.intersect_sorted(a, b)) == [3, 7]
    assert list(arrays.isin_sorted(a, b)) == [False, True, False, True]
    assert len(arrays.intersect_sorted(a, b[:0])) == 0
    assert not arrays.isin_sorted(a, b[:0]).any()
