"""The planner's inputs: the exclusion as it crosses into the sandbox
child, and the memory engine's modules taking their configuration from
their callers.
"""

import ast
import os

import numpy as np
import pytest

from sparc_nova.engine import errors
from sparc_nova.engine import patches
from sparc_nova.engine import planner
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import selectors
from sparc_nova.introspect import freepages
from sparc_nova.introspect import slabfree

ENGINE = os.path.dirname(planner.__file__)
#: The memory engine's modules (engine/disk is the disk engine's).
MEMORY_ENGINE = ('memory', 'session', 'planner', 'sandboxed_plan',
                 'sandbox_calls', 'listings', 'verify')


def test_exclusion_crosses_into_the_child_unchanged():
    exclusion = planner.Exclusion(
        selectors=tuple(selectors.parse_all(['vault', 'pid:42'])),
        with_children=True, scrub_free_memory=False, follow_ipc=False,
        exclude_paths=('/srv/**', '!/srv/public/**'), kill=False)
    args = exclusion.to_args()
    assert args == {'selectors': ['vault', 'pid:42'], 'with_children': True,
                    'scrub_free_memory': False, 'follow_ipc': False,
                    'exclude_paths': ['/srv/**', '!/srv/public/**'],
                    'kill': False}
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


class _FreeMemoryOf:
    """memory.holds: only frame 2 already holds the fill."""

    def holds(self, pfns, fill):
        return np.asarray(pfns) == 2


def _free(pfns):
    starts, ends = freepages.block_ranges([(p, 0) for p in pfns])
    return freepages.FreeMemory(
        starts=starts, ends=ends, buddy_blocks=1,
        buddy_frames=len(pfns), pcp_frames=0, fill=0, fill_reason='zero',
        skipped=[])


@pytest.fixture
def free_memory(monkeypatch):
    """scrub_free_memory on free frames ``pfns`` and the selected
    processes' frames ``selected``, without a guest kernel.
    """
    class Kernel:
        def online_cpus(self):
            return [0]
    monkeypatch.setattr(slabfree, 'free_objects', lambda k, m: ([], []))

    def scrub(pfns, selected):
        monkeypatch.setattr(freepages, 'free_memory',
                            lambda k, m, cpus: _free(pfns))
        patcher = patches.PagePatcher(_FreeMemoryOf())
        rep = report_mod.ScrubReport('ck.save')
        planner.scrub_free_memory(Kernel(), None, _FreeMemoryOf(),
                                  np.array(selected, dtype=np.int64),
                                  patcher, rep)
        return patcher, rep
    return scrub


def test_free_frames_not_holding_the_fill_are_scrubbed(free_memory):
    patcher, rep = free_memory([1, 2, 3, 4096], [0, 5, 4097])
    assert patcher.free_frames.tolist() == [1, 3, 4096]
    assert rep.free_pages['frames'] == 4
    assert rep.free_pages['frames_rewritten'] == 3


def test_a_frame_both_free_and_selected_stops_the_plan(free_memory):
    with pytest.raises(patches.PlanConflict,
                       match='frame 0x1000 is both free and mapped'):
        free_memory([1, 2, 3, 4096, 5000], [0, 4096, 4097])
