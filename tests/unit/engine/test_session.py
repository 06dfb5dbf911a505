"""What the vCPUs' registers say of the running kernel."""

from sparc_nova.checkpoint import cpu_state
from sparc_nova.engine import session
from sparc_nova.introspect import kernel as kernel_mod

ENTRY = 0xffffffff9e800080


def _cpu(**kw):
    regs = dict(index=0, rip=0xffffffff9d8592eb, rsp=0, cr0=0x80050033,
                cr2=0, cr3=0x13b18c000 | 0x5, cr4=0x6f0, efer=0xd01,
                cpl=0, long_mode=True, halted=True, fs_base=0, gs_base=0,
                kernel_gs_base=0, lstar=ENTRY)
    regs.update(kw)
    return cpu_state.CpuState(**regs)


def test_anchors_of_a_vcpu_in_the_kernel():
    a = session.cpu_anchors([_cpu()])
    assert a == [
        kernel_mod.CpuAnchor(0x13b18c000, False, ENTRY, in_image=True),
        kernel_mod.CpuAnchor(0x13b18c000, False, 0xffffffff9d8592eb,
                             in_image=False)]


def test_anchors_of_a_vcpu_in_user_mode_or_not_started():
    # User mode: only the system-call entry (its page table still maps
    # the kernel's entry code).
    assert session.cpu_anchors([_cpu(cpl=3, rip=0x401000)]) == [
        kernel_mod.CpuAnchor(0x13b18c000, False, ENTRY, in_image=True)]
    # A vCPU that never reached 64-bit mode, or without a page table.
    assert session.cpu_anchors([_cpu(long_mode=False)]) == []
    assert session.cpu_anchors([_cpu(cr3=0)]) == []
    # A memory dump's vCPUs carry no LSTAR.
    assert len(session.cpu_anchors([_cpu(lstar=0)])) == 1


def test_entry_trampoline_of_page_table_isolation_is_not_image_text():
    # Linux 4.15-4.19 with page table isolation entered through a
    # trampoline in cpu_entry_area, outside the image.
    a = session.cpu_anchors([_cpu(cpl=3, lstar=0xfffffe0000006000)])
    assert a == [kernel_mod.CpuAnchor(0x13b18c000, False,
                                      0xfffffe0000006000, in_image=False)]
