"""Replay the journal reader's fuzzing corpus and a short property-based
run of the same target: every input is refused with a clear error or
decodes into patches that lie inside the file
(tools/fuzz/journal_targets.py).
"""

import glob
import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from sparc_nova.checkpoint import journal
from tools.fuzz import journal_targets

CORPUS = os.path.join(os.path.dirname(__file__), '..', '..', 'fuzz_corpus',
                      'journal')
FILES = sorted(glob.glob(os.path.join(CORPUS, '*')))


def test_corpus_present():
    assert len(FILES) >= 6


@pytest.mark.parametrize('path', FILES, ids=os.path.basename)
def test_corpus_replay(path):
    with open(path, 'rb') as f:
        journal_targets.read_journal(f.read())


@pytest.mark.parametrize('name', ['regress-offset-2-63',
                                  'regress-group-count-beyond-data',
                                  'regress-truncated-full-page'])
def test_reproducers_are_refused(name):
    with open(os.path.join(CORPUS, name), 'rb') as f:
        data = journal_targets.authenticated(f.read())
    with pytest.raises(journal.JournalRefused):
        journal.decode(data, journal_targets.TARGET, journal_targets.KEY,
                       name)


def test_seeds_decode():
    with open(os.path.join(CORPUS, 'mixed'), 'rb') as f:
        groups = journal.decode(journal_targets.authenticated(f.read()),
                                journal_targets.TARGET, journal_targets.KEY,
                                'mixed')
    assert [g.kind for g in groups] == [journal.FILL_PAGE, journal.FILL_BYTE,
                                        journal.FULL_PAGE]


SEED = open(os.path.join(CORPUS, 'mixed'), 'rb').read()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SEED) - 1),
                          st.integers(0, 255)), max_size=8),
       st.integers(0, len(SEED)))
def test_mutated_journals(flips, cut):
    data = bytearray(SEED[:cut])
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    journal_targets.read_journal(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.integers(0, 255),
                          st.lists(st.integers(0, 2 ** 64 - 1),
                                   max_size=6)),
                max_size=4))
def test_generated_groups(groups):
    body = journal.encode(
        [journal.Group(kind, np.array(offs, dtype=np.uint64), fill,
                       b'\x07' * 4096 if kind == journal.FULL_PAGE else None)
         for kind, fill, offs in groups],
        journal_targets.TARGET, journal_targets.KEY)[:-journal.MAC_SIZE]
    journal_targets.read_journal(body)
