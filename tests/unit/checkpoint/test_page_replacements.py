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
