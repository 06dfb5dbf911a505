"""The guest kernel model on a real checkpoint: drgn's own helpers work
over our BTF, and our bulk walks agree with them.
"""

import os

import drgn
from drgn.helpers.linux import fs as fs_helpers
from drgn.helpers.linux import mm as mm_helpers
from drgn.helpers.linux import pid as pid_helpers
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.engine import physview
from sparc_nova.introspect import addrspace
from sparc_nova.introspect import freepages
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import pages
from sparc_nova.introspect import pagetable
from sparc_nova.introspect import tasks

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def model(make_guest, module_dir):
    g = make_guest()
    pids = [g.start_workload('hold 1 --threads 3 --pages 64'),
            g.start_workload('hold 2 --wait pipe')]
    path = os.path.join(module_dir, 'model.save')
    g.save(path)
    ck = checkpoint.open_checkpoint(path)
    mem = physview.CheckpointMemory(ck)
    kernel = kernel_mod.open_kernel(mem)
    yield kernel, mem, pids
    mem.close()
    ck.close()


def test_sources(model):
    kernel, _, _ = model
    s = kernel.summary()
    assert s['symbols'] == 'kallsyms (guest memory)'
    assert s['types'] == 'BTF (guest memory)'
    assert s['btf_types'] > 50000


def test_drgn_helpers_work(model):
    kernel, _, pids = model
    prog = kernel.prog
    by_drgn = {t.pid.value_(): t for t in pid_helpers.for_each_task(prog)}
    ours = tasks.processes(kernel)
    tids = {th.tid for p in ours for th in p.threads}
    assert tids == set(by_drgn)
    task = by_drgn[pids[0]]
    assert task.comm.string_() == b'workload'
    assert fs_helpers.d_path(task.mm.exe_file.f_path.address_of_()) == \
        b'/bin/workload'
    vmas = list(mm_helpers.for_each_vma(task.mm))
    assert any(v.vm_start <= task.mm.start_stack < v.vm_end for v in vmas)
    cpus = kernel.online_cpus()
    assert cpus == [0, 1]
    for cpu in cpus:
        assert kernel.current_task(cpu).comm.string_()


def test_page_walk_agrees_with_follow_phys(model):
    kernel, mem, pids = model
    prog = kernel.prog
    task = pid_helpers.find_task(prog, pids[0])
    mm = task.mm
    walker = pagetable.UserPageWalker(
        mem, kernel.phys(mm.pgd.value_()),
        kernel.vmcoreinfo.pgtable_l5_enabled)
    checked = 0
    for vma in mm_helpers.for_each_vma(mm):
        start, end = vma.vm_start.value_(), vma.vm_end.value_()
        present = {}
        for va, pfn, n in walker.leaves(start, end):
            for i in range(n):
                present[va + (i << 12)] = pfn + i
        for va in range(start, end, 4096):
            try:
                pa = mm_helpers.follow_phys(mm, va).value_()
            except drgn.FaultError:
                assert va not in present
                continue
            assert present[va] == pa >> 12
            checked += 1
    assert checked > 100


def test_free_pages_are_free(model):
    kernel, mem, _ = model
    model_ = pages.PageModel(kernel)
    free = freepages.free_memory(kernel, model_, kernel.online_cpus())
    assert free.buddy_frames > 10000 and free.pcp_frames >= 0
    # No free frame is mapped by a process.
    for p in tasks.processes(kernel):
        if p.kernel_thread:
            continue
        uf = addrspace.user_frames(kernel, model_, mem, p.mm)
        assert not free.free_among(uf.pfn).size, p.pid
