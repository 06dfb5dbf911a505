"""Compact page replacements, as a scrub hands them to the rewrite."""

import numpy as np
import pytest

from sparc_nova.checkpoint import rewrite

PAGE = 4096


def test_from_a_dict_equal_objects_share_one_content():
    zero, mark = bytes(PAGE), b'M' * PAGE
    r = rewrite.PageReplacements.of({5: zero, 9: mark, 3: zero})
    assert r.pfns.tolist() == [5, 9, 3]
    assert len(r.contents) == 2 and r.content.dtype == np.uint8
    assert dict(r.items()) == {5: zero, 9: mark, 3: zero}
    assert rewrite.PageReplacements.of(r) is r


@pytest.mark.parametrize('args', [
    ([1, 2], [0], [bytes(PAGE)]),              # lengths differ
    ([1], [1], [bytes(PAGE)]),                 # no such content
    ([1, 1], [0, 0], [bytes(PAGE)]),           # a frame twice
    ([1], [0], [bytes(100)]),                  # not a page
])
def test_refuses_inconsistent(args):
    with pytest.raises(ValueError):
        rewrite.PageReplacements(*args)


def test_read_only_views_are_kept_and_others_copied():
    """A read-only view of bytes is kept as given (no copy); a bytearray
    or a writable view is copied, so that changing it afterwards does
    not change the replacement.
    """
    payload = bytes(range(256)) * 32
    view = memoryview(payload).toreadonly()[4096:8192]
    mutable = bytearray(b'\x01' * 4096)
    writable = memoryview(bytearray(b'\x02' * 4096))
    r = rewrite.PageReplacements([1, 2, 3], [0, 1, 2],
                                 [view, mutable, writable])
    assert r.contents[0] is view
    assert type(r.contents[1]) is bytes and type(r.contents[2]) is bytes
    mutable[0] = 9
    writable[0] = 9
    assert r.contents[1] == b'\x01' * 4096
    assert r.contents[2] == b'\x02' * 4096
