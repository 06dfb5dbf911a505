"""Replay the fuzzing corpus and a short property-based run of the
checkpoint parsers: every input either parses or fails with a documented
clear error (tools/fuzz/checkpoint_targets.py)."""

import glob
import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from tests import streamgen
from tools.fuzz import checkpoint_targets

CORPUS = os.path.join(os.path.dirname(__file__), '..', '..', 'fuzz_corpus',
                      'checkpoint')
FILES = sorted(glob.glob(os.path.join(CORPUS, '*')))


def test_corpus_present():
    assert len(FILES) >= 4


@pytest.mark.parametrize('path', FILES, ids=os.path.basename)
@pytest.mark.parametrize('target', sorted(checkpoint_targets.TARGETS))
def test_corpus_replay(path, target):
    with open(path, 'rb') as f:
        checkpoint_targets.TARGETS[target](f.read())


SEED = streamgen.simple_save(ram_pages=8, twice=(2,))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SEED) - 1),
                          st.integers(0, 255)), max_size=8),
       st.integers(0, len(SEED)))
def test_mutated_save_images(flips, cut):
    data = bytearray(SEED[:cut] if cut > 100 else SEED)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    checkpoint_targets.parse_header(bytes(data))
    checkpoint_targets.parse_stream(bytes(data[data.find(b'QEVM'):]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_structured_streams(data):
    checkpoint_targets.parse_structured(data)


ELF_SEED = open(os.path.join(CORPUS, 'seed-elf-core'), 'rb').read()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                max_size=8),
       st.integers(0, len(ELF_SEED)))
def test_mutated_elf_cores(flips, cut):
    """Bytes of the ELF header, program headers and notes (the first 400
    bytes) changed, the file cut short.
    """
    data = bytearray(ELF_SEED[:cut] if cut > 16 else ELF_SEED)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    checkpoint_targets.parse_elf_core(bytes(data))


QCOW2_SEED = open(os.path.join(CORPUS, 'seed-qcow2'), 'rb').read()
#: Where the seed image's metadata lies: the first bytes of each of its
#: 4 KiB clusters (header, refcount table and block, L1 tables, snapshot
#: table, L2 tables, compressed data).
QCOW2_SPOTS = [c * 4096 + i for c in range(len(QCOW2_SEED) // 4096)
               for i in range(0, 128)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(QCOW2_SPOTS),
                          st.integers(0, 255)), max_size=8),
       st.integers(0, len(QCOW2_SEED)))
def test_mutated_qcow2_images(flips, cut):
    """Bytes of a qcow2 image with two internal snapshots (one with a
    compressed cluster, its vmstate also mapped by the active state)
    changed, the file cut short: read, extracted and a scrub planned, or
    refused with a clear error.
    """
    data = bytearray(QCOW2_SEED[:cut] if cut > 72 else QCOW2_SEED)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    checkpoint_targets.parse_qcow2(bytes(data))
