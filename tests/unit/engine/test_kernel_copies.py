"""The kernel-copy plan's shared-memory decisions and path matching
(guest objects replaced by plain records; the kernel side is exercised
on real guests in tests/functional/engine/test_ipc.py).
"""

from unittest import mock

from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine import ipc
from sparc_nova.engine import kernel_copies
from sparc_nova.introspect import ipc as ipc_introspect
from tests.unit.engine.test_ipc import held


def shm_plan(kind, name, holders, excluded, globs=()):
    obj = ipc.IpcObject(key=0x400, kind=kind, object=name, file=0x1,
                        holders=[held(p, -1, kind, name) for p in holders])
    reader = mock.Mock()
    reader.shmem_frames.return_value = ipc_introspect.KernelCopies(
        name, 'shmem', frames=[7, 8])
    plan = kernel_copies.KernelCopyPlan()
    rules = rules_mod.Rules(globs) if globs else None
    kernel_copies._plan_shm(reader, obj, set(excluded), rules, plan)
    return plan


def test_shared_memory_another_process_holds_is_never_scrubbed():
    plan = shm_plan('sysv-shm', '/SYSV0 (deleted)', [10, 11], [10])
    assert plan.copies['sysv-shm'] == []
    assert 'pid 11' in plan.not_scrubbed[0]['reason']


def test_memfd_held_only_by_excluded_processes_is_scrubbed():
    plan = shm_plan('memfd', '/memfd:k (deleted)', [10, 11], [10, 11])
    assert plan.copies['memfd-shmem'][0].frames == [7, 8]


def test_named_tmpfs_file_needs_an_exclude_path():
    plan = shm_plan('shmem', '/tmp/cache', [10], [10])
    assert plan.copies['memfd-shmem'] == []
    assert 'exclude paths' in plan.not_scrubbed[0]['reason']
    plan = shm_plan('shmem', '/tmp/cache', [10], [10], ['/tmp/**'])
    assert plan.copies['memfd-shmem'][0].frames == [7, 8]
    plan = shm_plan('shmem', '/dev/shm/sess', [10], [10])
    assert plan.copies['memfd-shmem'][0].frames == [7, 8]


def test_paths_too_deep_or_relative_are_not_matched():
    rules = rules_mod.Rules(['/srv/**'])
    assert kernel_copies._selected(rules, '/srv/a')
    assert not kernel_copies._selected(rules, 'srv/a')
    assert not kernel_copies._selected(rules, '/srv' + '/d' * 300)
