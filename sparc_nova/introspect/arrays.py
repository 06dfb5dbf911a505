"""Sort-based set operations on frame-number arrays.

``numpy.unique`` (numpy 2) hashes int64 input, which is several times
slower than sorting for the million-frame arrays a scrub handles.
"""

import numpy as np


def unique(a, return_index: bool = False, return_inverse: bool = False,
           return_counts: bool = False):
    """Like :func:`numpy.unique` for 1-D integer arrays (sorted result;
    ``return_index`` gives first occurrences).
    """
    a = np.asarray(a)
    order = np.argsort(a, kind='stable')
    s = a[order]
    flag = np.empty(len(s), dtype=bool)
    flag[:1] = True
    flag[1:] = s[1:] != s[:-1]
    out = [s[flag]]
    if return_index:
        out.append(order[flag])
    if return_inverse:
        inv = np.empty(len(a), dtype=np.int64)
        inv[order] = np.cumsum(flag) - 1
        out.append(inv)
    if return_counts:
        starts = np.nonzero(flag)[0]
        out.append(np.diff(np.append(starts, len(s))))
    return out[0] if len(out) == 1 else tuple(out)


def intersect_sorted(a, b) -> np.ndarray:
    """Elements of sorted unique ``a`` that are in sorted unique ``b``."""
    a = np.asarray(a)
    b = np.asarray(b)
    if not len(a) or not len(b):
        return a[:0]
    idx = np.minimum(np.searchsorted(b, a), len(b) - 1)
    return a[b[idx] == a]


def isin_sorted(a, b) -> np.ndarray:
    """Mask of the elements of ``a`` found in sorted ``b``."""
    a = np.asarray(a)
    b = np.asarray(b)
    if not len(b):
        return np.zeros(len(a), dtype=bool)
    idx = np.minimum(np.searchsorted(b, a), len(b) - 1)
    return b[idx] == a
