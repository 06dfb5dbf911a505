"""Nesting depth is measured before a document from the sandbox child is
parsed.
"""

import json

import hypothesis
from hypothesis import strategies as st
import pytest

from sparc_nova.engine import bounded_json


def _nested(n):
    return b'[' * n + b']' * n


def test_depth_of_plain_documents():
    assert bounded_json.depth(b'1', 10) == 0
    assert bounded_json.depth(b'{"a": [1, {"b": []}]}', 10) == 4
    assert bounded_json.depth(_nested(50), 100) == 50


def test_brackets_in_strings_do_not_count():
    doc = json.dumps({'a': '[[[[{{{{', 'b': '\\"[[[', 'c': 'x\\\\'}).encode()
    assert bounded_json.depth(doc, 10) == 1


def test_deep_document_refused_without_parsing():
    with pytest.raises(bounded_json.TooDeep, match='more than 128 deep'):
        bounded_json.loads(_nested(100000), 128)
    assert bounded_json.loads(_nested(128), 128) == json.loads(_nested(128))


def test_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(bounded_json, 'CHUNK', 3)
    doc = json.dumps([['\\\\"[', {'k': ['\\\\\\"]]']}], 'x']).encode()
    assert bounded_json.depth(doc, 50) == 4


values = st.recursive(
    st.none() | st.booleans() | st.integers() |
    st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: st.lists(inner, max_size=3) |
    st.dictionaries(st.text(alphabet='[]{}"\\a', max_size=3), inner,
                    max_size=3), max_leaves=20)


def _true_depth(v):
    if isinstance(v, list):
        return 1 + max((_true_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_true_depth(x) for x in v.values()), default=0)
    return 0


@hypothesis.given(values, st.integers(1, 7))
def test_depth_matches_the_structure(value, chunk):
    bounded_json.CHUNK, saved = chunk, bounded_json.CHUNK
    try:
        assert bounded_json.depth(json.dumps(value).encode(), 1000) == \
            _true_depth(value)
    finally:
        bounded_json.CHUNK = saved
