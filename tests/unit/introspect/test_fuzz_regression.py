"""Replay the introspection fuzzing corpus (BTF, vmcoreinfo) and a short
property-based run: every input parses or fails with a clear error.
"""

import glob
import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from tools.fuzz import btfgen
from tools.fuzz import introspect_targets

CORPUS = os.path.join(os.path.dirname(__file__), '..', '..', 'fuzz_corpus')


def corpus(name):
    return sorted(glob.glob(os.path.join(CORPUS, name, '*')))


@pytest.mark.parametrize('path', corpus('btf'), ids=os.path.basename)
def test_btf_corpus(path):
    with open(path, 'rb') as f:
        introspect_targets.parse_btf(f.read())


@pytest.mark.parametrize('path', corpus('vmcoreinfo'), ids=os.path.basename)
def test_vmcoreinfo_corpus(path):
    with open(path, 'rb') as f:
        introspect_targets.parse_vmcoreinfo(f.read())


SAMPLE = btfgen.sample()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1),
                          st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_btf(flips):
    data = bytearray(SAMPLE)
    for pos, val in flips:
        data[pos] = val
    introspect_targets.parse_btf(bytes(data))
