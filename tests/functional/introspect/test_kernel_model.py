"""The guest kernel model on a real checkpoint: drgn's own helpers work
over our BTF, and our bulk walks agree with them.
"""

import os
import re

import drgn
from drgn.helpers.linux import fs as fs_helpers
from drgn.helpers.linux import mm as mm_helpers
from drgn.helpers.linux import pid as pid_helpers
import hypothesis
from hypothesis import strategies as st
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.engine import physview
from sparc_nova.engine import session
from sparc_nova.introspect import addrspace
from sparc_nova.introspect import freepages
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import pages
from sparc_nova.introspect import pagetable
from sparc_nova.introspect import tasks
from sparc_nova.introspect import vmcoreinfo

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
    kernel = kernel_mod.open_kernel(mem, anchors=session.cpu_anchors(
        ck.cpus))
    yield kernel, mem, pids, ck
    mem.close()
    ck.close()


def test_sources(model):
    kernel, _, _, _ = model
    s = kernel.summary()
    assert s['symbols'] == 'kallsyms (guest memory)'
    assert s['types'] == 'BTF (guest memory)'
    assert s['btf_types'] > 50000


def test_drgn_helpers_work(model):
    kernel, _, pids, _ = model
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
    kernel, mem, pids, _ = model
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
    kernel, mem, _, _ = model
    model_ = pages.PageModel(kernel)
    free = freepages.free_memory(kernel, model_, kernel.online_cpus())
    assert free.buddy_frames > 10000 and free.pcp_frames >= 0
    # No free frame is mapped by a process.
    for p in tasks.processes(kernel):
        if p.kernel_thread:
            continue
        uf = addrspace.user_frames(kernel, model_, mem, p.mm)
        assert not free.free_among(uf.pfn).size, p.pid


#: Where the forged vmcoreinfo text goes: in the first megabyte, which the
#: kernel reserves (nothing the model reads lives there), and ahead of the
#: kernel's own copy, so it is the first candidate.
FORGED_AT = 0x50000


class _ForgedAhead:
    """``mem`` with ``pages`` (guest physical address -> bytes) written
    over it, as a guest process can write into its own pages, and a forged
    vmcoreinfo ``text`` at :data:`FORGED_AT`, found first.
    """

    def __init__(self, mem, text: bytes, pages: dict | None = None):
        self._mem = mem
        self._pages = dict(pages or {})
        self._pages[FORGED_AT] = (text + b'\0').ljust(4096, b'\0')[:4096]
        self.ranges = mem.ranges

    def read(self, addr: int, size: int) -> bytes:
        out = None
        for at, data in self._pages.items():
            lo, hi = max(addr, at), min(addr + size, at + len(data))
            if lo >= hi:
                continue
            if out is None:
                out = bytearray(self._mem.read(addr, size))
            out[lo - addr:hi - addr] = data[lo - at:hi - at]
        return self._mem.read(addr, size) if out is None else bytes(out)

    def find(self, needle: bytes):
        for base, data in sorted(self._pages.items()):
            at = data.find(needle)
            while at >= 0:
                yield base + at
                at = data.find(needle, at + 1)
        for addr in self._mem.find(needle):
            if not any(base <= addr < base + len(data)
                       for base, data in self._pages.items()):
                yield addr

    def __getattr__(self, name):
        return getattr(self._mem, name)


#: Values a forged number may take: edges of the integer types, addresses
#: outside RAM and outside the kernel's half, and the empty and the huge.
_HOSTILE_NUMBERS = st.sampled_from(
    [0, 1, -1, 4095, 1 << 31, 1 << 32, (1 << 46), (1 << 52) - 1, 1 << 63,
     (1 << 64) - 1, 1 << 64, 1 << 80, -(1 << 63), 0xffffffff80000000,
     0xffff888000000000]) | st.integers(-(1 << 70), 1 << 70)


@hypothesis.settings(max_examples=40, deadline=None, suppress_health_check=[
    hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_a_forged_vmcoreinfo_ahead_never_stops_the_model(model, data):
    """A vmcoreinfo-looking text ahead of the kernel's own, with one
    value changed or one line dropped: whatever it says, the kernel is
    modelled (from its own copy, or from the forged one if that still
    checks out), and no error but a refused candidate comes of it.
    """
    kernel, mem, _, ck = model
    real = kernel.vmcoreinfo
    assert FORGED_AT < real.address
    lines = real.raw.split(b'\n')
    numeric = [i for i, ln in enumerate(lines)
               if re.match(rb'(SYMBOL|NUMBER|OFFSET|SIZE|LENGTH)\(|'
                           rb'KERNELOFFSET=', ln)]
    i = data.draw(st.sampled_from(numeric))
    key = lines[i].split(b'=', 1)[0]
    if data.draw(st.booleans()):
        value = data.draw(_HOSTILE_NUMBERS)
        hexa = key.startswith((b'SYMBOL', b'KERNELOFFSET'))
        text = ('%x' % value if hexa and value >= 0 else '%d' % value)
        lines[i] = key + b'=' + text.encode()
    else:
        del lines[i]
    forged = b'\n'.join(lines)
    hypothesis.note(forged.split(b'\n')[i - 1:i + 1])
    got = kernel_mod.open_kernel(_ForgedAhead(mem, forged),
                                 anchors=session.cpu_anchors(ck.cpus))
    assert got.vmcoreinfo.address in (FORGED_AT, real.address)
    if got.vmcoreinfo.address == FORGED_AT:
        assert got.vmcoreinfo.raw == forged


def test_a_forged_kernel_world_elsewhere_in_ram_is_refused(model):
    """The whole kernel image copied to free RAM, a vmcoreinfo whose
    phys_base points at the copy, and the copy's vmcoreinfo_data pointing
    at that text: a world that confirms itself through its own pointers
    (a guest program that learnt where its pages lie could build it). The
    vCPUs' registers tie the model to the kernel they run: the copy is
    refused and the kernel's own copy used.
    """
    kernel, mem, _, ck = model
    real = kernel.vmcoreinfo
    start = kernel.consts.START_KERNEL_MAP
    text, end = kernel.symbol_address('_text'), kernel.symbol_address('_end')
    image_pa = text - start + real.phys_base
    size = end - text
    # A free stretch of RAM (it does not meet the image).
    free = freepages.free_memory(kernel, pages.PageModel(kernel),
                                 kernel.online_cpus())
    runs = [(lo << 12, hi << 12) for lo, hi in
            zip(free.starts.tolist(), free.ends.tolist())]
    copy_pa = next((lo for lo, hi in runs if hi - lo >= size), None)
    assert copy_pa is not None, 'no free stretch of %d bytes: %s' % (
        size, sorted(hi - lo for lo, hi in runs)[-3:])
    image = bytearray(mem.read(image_pa, size))
    direct_map = kernel.prog['page_offset_base'].value_()
    pointer = kernel.symbol_address('vmcoreinfo_data') - text
    image[pointer:pointer + 8] = (direct_map + FORGED_AT).to_bytes(
        8, 'little')
    forged = re.sub(rb'NUMBER\(phys_base\)=-?\d+', b'NUMBER(phys_base)=%d'
                    % (real.phys_base + copy_pa - image_pa), real.raw)
    world = _ForgedAhead(mem, forged, {copy_pa: bytes(image)})
    # Without the vCPUs' registers, the forged world is taken.
    assert kernel_mod.open_kernel(world).vmcoreinfo.address == FORGED_AT
    got = kernel_mod.open_kernel(world, anchors=session.cpu_anchors(ck.cpus))
    assert got.vmcoreinfo.address == real.address
    assert got.sources.anchors >= 1
    with pytest.raises(vmcoreinfo.VmcoreinfoError,
                       match='not the kernel the vCPUs run'):
        k = kernel_mod.GuestKernel(world, vmcoreinfo.parse(forged, FORGED_AT))
        k._load_symbols()
        k._narrow_image()
        k._validate_vmcoreinfo()
        k._check_anchors(session.cpu_anchors(ck.cpus))


def test_forgeries_cannot_use_up_the_search(model, monkeypatch):
    """As many forged texts ahead of the kernel's own as the search reads
    at most (each with another phys_base): without the vCPUs' registers
    they use up the search and the scrub fails; with them, the texts that
    hold the phys_base the vCPUs give are read first, and a guest program
    that cannot learn where the kernel lies has none of those to plant.
    """
    # A smaller bound, the same search (each forgery refused costs a
    # second or so of modelling here).
    monkeypatch.setattr(vmcoreinfo, 'MAX_CANDIDATES', 8)
    kernel, mem, _, ck = model
    real = kernel.vmcoreinfo
    anchors = session.cpu_anchors(ck.cpus)
    assert kernel_mod.anchored_phys_base(mem, anchors) == \
        real.phys_base & ((1 << 64) - 1)
    pages = {}
    for i in range(vmcoreinfo.MAX_CANDIDATES):
        text = re.sub(rb'NUMBER\(phys_base\)=-?\d+', b'NUMBER(phys_base)=%d'
                      % (real.phys_base + ((i + 1) << 21)), real.raw)
        page = (text + b'\0').ljust(4096, b'\0')
        pages[FORGED_AT + (i + 1) * 4096] = page
    assert max(pages) + 4096 <= 0xa0000 < real.address
    world = _ForgedAhead(mem, real.raw.replace(b'OSRELEASE=', b'X'), pages)
    with pytest.raises(vmcoreinfo.VmcoreinfoError,
                       match='among %d candidate' % vmcoreinfo.MAX_CANDIDATES):
        kernel_mod.open_kernel(world)
    got = kernel_mod.open_kernel(world, anchors=anchors)
    assert got.vmcoreinfo.address == real.address
