"""Replay the plan decoder's fuzzing corpus (tools/fuzz/plan_targets.py):
whatever the sandbox child writes, the parent decodes it or refuses it
with a clear error.
"""

import glob
import os

import pytest

from sparc_nova.engine import sandbox
from tools.fuzz import plan_targets

CORPUS = os.path.join(os.path.dirname(__file__), '..', '..', 'fuzz_corpus')
FILES = sorted(glob.glob(os.path.join(CORPUS, 'plan', '*')))
STRUCTURED = sorted(glob.glob(os.path.join(CORPUS, 'plan-structured', '*')))


def test_corpus_present():
    assert len(FILES) >= 2 and len(STRUCTURED) >= 4


@pytest.mark.parametrize('path', FILES, ids=os.path.basename)
def test_corpus_replay(path):
    with open(path, 'rb') as f:
        plan_targets.decode_plan(f.read())


@pytest.mark.parametrize('path', STRUCTURED, ids=os.path.basename)
def test_structured_corpus_replay(path):
    with open(path, 'rb') as f:
        plan_targets.decode_mutated_plan(f.read())


def test_seed_plans_decode():
    for data in plan_targets.seed_plans():
        doc = sandbox._result('x', 0, data, b'', plan_targets.POLICY)
        doc.pop('_sandbox', None)
        plan_targets.plan_codec.decode_plan(doc, plan_targets.MEMORY)


@pytest.mark.parametrize('opener', [b'[', b'{"a":'])
def test_child_output_nested_too_deep_is_a_sandbox_error(opener):
    """Found by the fuzzer: JSON nested deeper than the interpreter's stack
    raised RecursionError out of the parent's read of the child's output.
    """
    out = b'{"result":' + opener * 200000
    with pytest.raises(sandbox.SandboxError, match='deep'):
        sandbox._result('x', 0, out, b'', plan_targets.POLICY)
