"""The same end-to-end exclusion on other guests: Debian 11's 5.10
kernels (no kallsyms in vmcoreinfo: the tables are found by scanning, with
no operator files), Debian's 6.12 kernel (bookworm security/backports), a
guest with 5-level paging and a 4 GiB q35 guest (RAM above the 4 GiB
hole).
"""

import os

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.engine import physview
from sparc_nova.engine import session
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import vmcoreinfo
from tests.functional.engine import ipc_scenario as isc
from tests.functional.engine import scenario as scen
from tests.functional.testbed import build
from tests.functional.testbed import guest as guest_mod
from tests.functional.testbed import kernels

pytestmark = pytest.mark.slow


def found_by_the_vcpus_phys_base(path: str) -> bool:
    """Whether the kernel's vmcoreinfo in checkpoint ``path`` is found by
    the phys_base line its vCPUs' registers give (not only by the plain
    search).
    """
    with checkpoint.open_checkpoint(path) as ck:
        mem = physview.CheckpointMemory(ck)
        try:
            phys_base = kernel_mod.anchored_phys_base(
                mem, session.cpu_anchors(ck.cpus))
            return phys_base is not None and any(
                True for _ in vmcoreinfo.iter_candidates(mem, phys_base))
        finally:
            mem.close()


@pytest.fixture(scope='module')
def own_guests():
    guests = []

    def factory(image, **kwargs):
        g = guest_mod.Guest(image, **kwargs)
        guests.append(g)
        g.start(timeout=300)
        return g
    yield factory
    for g in guests:
        g.destroy()


@pytest.mark.parametrize('flavour', ['', 'cloud'])
def test_debian_5_10(own_guests, work_root, module_dir, flavour):
    """Memory and IPC exclusion on Debian 11's kernel, its symbols found
    in guest memory by scanning (no BUILD-ID cache is configured).
    """
    kernel = kernels.debian_kernel('5.10', flavour)
    name = '5.10' + ('-' + flavour if flavour else '')
    image = build.build_guest(os.path.join(work_root, 'image-' + name),
                              kernel=kernel)
    workdir = os.path.join(module_dir, name)
    os.makedirs(workdir, exist_ok=True)
    sc = scen.build(lambda **kw: own_guests(image, **kw), image, workdir)
    report = scen.end_to_end(sc)
    assert report['kernel']['osrelease'].startswith('5.10.')
    assert report['kernel']['symbols'] == \
        'kallsyms (guest memory, located by scan)'
    assert report['kernel']['types'] == 'BTF (guest memory)'
    # The model is tied to the kernel the vCPUs run (their LSTAR and
    # instruction pointers, through their own page tables).
    assert report['kernel']['vcpu_anchors'] >= 1
    assert found_by_the_vcpus_phys_base(sc.save_path)
    assert not report['free_pages']['skipped']
    assert report['free_pages']['pcp_frames'] > 0
    sc.guest.destroy()

    ipc_dir = os.path.join(workdir, 'ipc')
    os.makedirs(ipc_dir, exist_ok=True)
    ipc = isc.build(lambda **kw: own_guests(image, **kw), image, ipc_dir)
    out, ipc_report = isc.scrub(ipc, 'follow')
    args = ['checkpoint', 'verify', out, '--format', 'json']
    for scenario in isc.MARKERS:
        args += ['--marker', ipc.marker(scenario)]
    scen.sparc(*args, check=0)
    assert ipc_report['verification']['result'] == 'ok'
    gone = ipc.named() + ipc.peers()
    alive = isc.restore(ipc, out, gone)
    assert not alive & set(gone)


def test_debian_6_12(own_guests, work_root, module_dir):
    # The only test on a second kernel: a kernel that cannot be fetched
    # fails the run (KernelUnavailable says why), it is never skipped.
    kernel = kernels.debian_kernel('6.12')
    image = build.build_guest(os.path.join(work_root, 'image-6.12'),
                              kernel=kernel)
    workdir = os.path.join(module_dir, '6.12')
    os.makedirs(workdir, exist_ok=True)
    sc = scen.build(lambda **kw: own_guests(image, **kw), image, workdir)
    report = scen.end_to_end(sc)
    assert report['kernel']['osrelease'].startswith('6.12.')
    assert report['kernel']['version'].startswith('6.12.')
    assert report['kernel']['vcpu_anchors'] >= 1
    assert found_by_the_vcpus_phys_base(sc.save_path)


def test_five_level_paging(own_guests, guest_image, module_dir):
    """A guest on a CPU with la57 runs with 5-level page tables; the
    scrub walks them.
    """
    workdir = os.path.join(module_dir, 'la57')
    os.makedirs(workdir, exist_ok=True)
    sc = scen.build(lambda **kw: own_guests(guest_image, **kw), guest_image,
                    workdir, la57=True)
    report = scen.end_to_end(sc)
    assert report['kernel']['pgtable_l5_enabled'] is True
    assert report['kernel']['vcpu_anchors'] >= 1
    assert found_by_the_vcpus_phys_base(sc.save_path)


def test_q35_4gib(own_guests, guest_image, module_dir):
    workdir = os.path.join(module_dir, 'q35')
    os.makedirs(workdir, exist_ok=True)
    sc = scen.build(lambda **kw: own_guests(guest_image, **kw), guest_image,
                    workdir, memory_mib=4096, machine='q35')
    report = scen.end_to_end(sc)
    # Guest RAM above 4 GiB is scanned too.
    assert report['free_pages']['frames'] > (3 << 30) >> 12
    assert report['kernel']['vcpu_anchors'] >= 1
    assert found_by_the_vcpus_phys_base(sc.save_path)
