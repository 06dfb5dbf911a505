"""The planner's inputs: the exclusion as it crosses into the sandbox
child, and the memory engine's modules taking their configuration from
their callers.
"""

import ast
import os

import pytest

from sparc_nova.engine import errors
from sparc_nova.engine import planner
from sparc_nova.engine import selectors

ENGINE = os.path.dirname(planner.__file__)
#: The memory engine's modules (engine/disk is the disk engine's).
MEMORY_ENGINE = ('memory', 'session', 'planner', 'sandboxed_plan',
                 'sandbox_calls', 'listings', 'verify')


def test_exclusion_crosses_into_the_child_unchanged():
    exclusion = planner.Exclusion(
        selectors=tuple(selectors.parse_all(['vault', 'pid:42'])),
        with_children=True, scrub_free_memory=False, follow_ipc=False,
        exclude_paths=('/srv/**', '!/srv/public/**'))
    args = exclusion.to_args()
    assert args == {'selectors': ['vault', 'pid:42'], 'with_children': True,
                    'scrub_free_memory': False, 'follow_ipc': False,
                    'exclude_paths': ['/srv/**', '!/srv/public/**'],
                    'kill': True}
    assert planner.Exclusion.from_args(args) == exclusion


def test_exclusion_from_the_child_refuses_a_bad_selector():
    args = planner.Exclusion(selectors=()).to_args()
    args['selectors'] = ['pid:1']
    with pytest.raises(errors.SelectorError):
        planner.Exclusion.from_args(args)


@pytest.mark.parametrize('module', MEMORY_ENGINE)
def test_memory_engine_reads_no_global_configuration(module):
    with open(os.path.join(ENGINE, module + '.py')) as f:
        tree = ast.parse(f.read())
    imported = {alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and
                node.module == 'sparc_nova' for alias in node.names}
    imported |= {alias.name for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
    assert 'conf' not in imported and 'sparc_nova.conf' not in imported
