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


def test_pages_hold_many_pages():
    buf = bytearray(10 * 4104)
    for p in (2, 7):
        buf[p * 4104 + 4000] = 9
    offs = np.arange(10) * 4104
    want = [p not in (2, 7) for p in range(10)]
    assert physview.pages_hold(bytes(buf), offs, 0).tolist() == want
    assert physview.pages_hold(bytes(buf), offs[:0], 0).tolist() == []


def test_pages_hold_bounds():
    with pytest.raises(ValueError):
        physview.pages_hold(bytes(8192), np.array([4097]), 0)
    with pytest.raises(ValueError):
        physview.pages_hold(bytes(8192), np.array([-1]), 0)
