"""``sparc checkpoint extract-ram --format elf``: a checkpoint's guest
physical memory as an ELF core that crash, drgn and Volatility open.

One ``PT_LOAD`` per guest-physical range: the RAM ranges of the machine
type (:mod:`.machine`), plus the firmware ROM mapped below 4 GiB
(``pc.bios``), which QEMU's own ``dump-guest-memory`` also holds (it
dumps every RAM and ROM region of the guest's physical address space).
The notes are the ones the caller gives (the guest's ``VMCOREINFO``,
found by the guest introspection layer); this module knows nothing of
the guest's kernel.
"""

import typing

from sparc_nova.checkpoint import elf_write
from sparc_nova.checkpoint import machine as machine_mod
from sparc_nova.checkpoint import physmem

__all__ = ['NT_VMCOREINFO', 'elf_ranges', 'write_elf']

#: The type QEMU (and Linux's /proc/vmcore) give the VMCOREINFO note.
NT_VMCOREINFO = 0


def elf_ranges(ck) -> list[machine_mod.RamRange]:
    """The ranges written: the checkpoint's RAM, and the ROMs at fixed
    addresses that lie outside it, by address.
    """
    ranges = list(ck.memory.ranges)
    blocks = {b.name: b.length for b in ck.layout.ram.blocks}
    for rom in machine_mod.rom_ranges(blocks, ck.path):
        if all(rom.end <= r.gpa or rom.gpa >= r.end for r in ranges):
            ranges.append(rom)
    return sorted(ranges, key=lambda r: r.gpa)


def write_elf(ck, out: typing.BinaryIO, vmcoreinfo: bytes | None = None,
              progress=None) -> list[machine_mod.RamRange]:
    """Write checkpoint ``ck``'s guest physical memory to ``out`` as an
    ELF core; ``vmcoreinfo`` (the guest's text) becomes a ``VMCOREINFO``
    note. Returns the ranges written.
    """
    ranges = elf_ranges(ck)
    memory = physmem.GuestPhysicalMemory(ck.stream, ck.layout.ram, ranges)
    by_gpa = {r.gpa: r for r in ranges}
    notes = elf_write.core_notes(
        [('VMCOREINFO', NT_VMCOREINFO, vmcoreinfo)] if vmcoreinfo else [])
    total = sum(r.length for r in ranges)
    done = [0]

    def copy(seg, f):
        rng = by_gpa[seg.paddr]

        def step(n, _):
            if progress:
                progress(done[0] + n, total)
        memory.write_range(rng, f, step)
        done[0] += rng.length
    elf_write.write_core(out, [elf_write.Segment(r.gpa, r.length)
                               for r in ranges], notes, copy)
    return ranges
