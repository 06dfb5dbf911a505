"""A guest memory dump (an ELF core) as a checkpoint layout.

The layers above read a checkpoint through its RAM index
(:mod:`.ram_index`) and guest-physical ranges (:mod:`.machine`): this
module describes a dump's ``PT_LOAD`` segments the same way, so that the
guest-physical view, the kernel model, the rewrite (in place through the
journal, or a new file) and the read-back work on a dump unchanged. Each
segment is a RAM "block" of its own, named after its guest physical
address, mapped 1:1 at that address; each of its pages is one data
record whose payload is the page's bytes in the file. A dump has no
device state and cannot be restored.
"""

import dataclasses
import struct

from sparc_nova.checkpoint import cpu_state
from sparc_nova.checkpoint import elf_core
from sparc_nova.checkpoint import machine as machine_mod
from sparc_nova.checkpoint import ram_index

__all__ = ['DumpLayout', 'block_name', 'cpus', 'layout', 'ram_ranges']

PAGE_SIZE = ram_index.PAGE_SIZE


def block_name(load: elf_core.Load) -> str:
    """The RAM block name of a segment (``elf-load@0x...``)."""
    return 'elf-load@0x%x' % load.paddr


@dataclasses.dataclass
class DumpLayout:
    """What :class:`~.checkpoint.Checkpoint` reads of a dump, in the shape
    of a :class:`~.qemu_stream.StreamLayout`.

    :ivar core: the parsed ELF core.
    :ivar ram: one data record per page of every segment, ascending by
        file offset.
    :ivar size: bytes of the file.
    """

    core: elf_core.ElfCore
    ram: ram_index.RamIndex
    size: int
    machine: str = ''
    sections: list = dataclasses.field(default_factory=list)
    devices: list = dataclasses.field(default_factory=list)
    device_state_note: str | None = None

    def describe(self) -> dict:
        """The dump's own facts for ``sparc checkpoint info``."""
        return {'elf': {
            'segments': [{'gpa': '0x%x' % s.paddr, 'offset': s.offset,
                          'length': s.size} for s in self.core.loads],
            'notes': self.core.note_counts(),
            'vmcoreinfo': self.core.vmcoreinfo is not None},
            'restore': 'none (a memory dump cannot be restored)'}


def layout(core: elf_core.ElfCore) -> DumpLayout:
    """The RAM index of ``core``'s segments."""
    blocks = [ram_index.RamBlock(i, block_name(s), s.size)
              for i, s in enumerate(core.loads)]
    order = sorted(range(len(core.loads)),
                   key=lambda i: core.loads[i].offset)
    # No headers: each page's record is its data, a segment one run.
    builder = ram_index.RamIndexBuilder(sum(b.pages for b in blocks))
    for i in order:
        s = core.loads[i]
        builder.add_run(i, 0, s.size // PAGE_SIZE, s.offset, PAGE_SIZE,
                        ram_index.KIND_PAGE, header_len=0)
    index = builder.finish(blocks)
    return DumpLayout(core, index, core.file_size)


def ram_ranges(dump: DumpLayout) -> list[machine_mod.RamRange]:
    """Each segment at its own guest physical address."""
    return [machine_mod.RamRange(s.paddr, block_name(s), 0, s.size)
            for s in dump.core.loads]


#: QEMU's ``QEMUCPUState`` (``target/i386/arch_dump.c``): version, size,
#: 16 general registers (rsp is the 7th), rip, rflags, ten segments (cs,
#: ds, es, fs, gs, ss, ldt, tr, gdt, idt: selector, limit, flags, pad,
#: base), cr0..cr4, KERNEL_GS_BASE.
_QEMU_CPU = struct.Struct('<II16QQQ' + 'IIIIQ' * 10 + '5QQ')
#: QEMU's segment flag for a 64-bit code segment (``DESC_L_MASK``).
_DESC_L = 1 << 21


def cpus(dump: DumpLayout, view) -> list[cpu_state.CpuState]:
    """The vCPUs of the dump's ``QEMU`` notes (one per vCPU, in order);
    ``view`` is the file's bytes. EFER and the halted state are not in
    the note (None); the CPL is the CS selector's RPL.
    """
    out = []
    for n in dump.core.notes:
        if n.name != 'QEMU' or n.desc_size < _QEMU_CPU.size:
            continue
        v = _QEMU_CPU.unpack_from(view, n.desc_offset)
        regs, rip = v[2:18], v[18]
        seg = v[20:70]
        cs_sel, cs_flags = seg[0], seg[2]
        fs_base, gs_base = seg[3 * 5 + 4], seg[4 * 5 + 4]
        cr = v[70:75]
        out.append(cpu_state.CpuState(
            index=len(out), rip=rip, rsp=regs[6], cr0=cr[0], cr2=cr[2],
            cr3=cr[3], cr4=cr[4], efer=None, cpl=cs_sel & 3,
            long_mode=bool(cs_flags & _DESC_L), halted=None,
            fs_base=fs_base, gs_base=gs_base, kernel_gs_base=v[75]))
    return out
