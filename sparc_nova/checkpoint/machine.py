"""Where a machine type maps its RAMBlocks in guest physical memory.

x86 ``pc`` (i440fx) and ``q35`` put guest RAM (the ``pc.ram`` block) at
guest physical 0 up to the start of the PCI hole below 4 GiB, and the rest
from 4 GiB on. The split follows QEMU's ``hw/i386/pc_piix.c`` and
``pc_q35.c`` with the default ``max-ram-below-4g`` (libvirt never sets it).
"""

import dataclasses
import re

from sparc_nova import exception

GiB = 1024 ** 3
FOUR_GIB = 4 * GiB
RAM_BLOCK = 'pc.ram'


@dataclasses.dataclass(frozen=True)
class RamRange:
    """``length`` bytes of RAMBlock ``block`` from ``block_offset`` on
    appear at guest physical address ``gpa``.
    """

    gpa: int
    block: str
    block_offset: int
    length: int

    @property
    def end(self) -> int:
        return self.gpa + self.length


def _version(machine: str) -> tuple[int, int]:
    m = re.search(r'-(\d+)\.(\d+)$', machine)
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)


def below_4g(machine: str, ram_size: int, path: str = '') -> int:
    """Bytes of guest RAM placed below 4 GiB for this machine type."""
    if machine.startswith('pc-q35') or machine == 'q35':
        lowmem = 0x80000000 if ram_size >= 0xb0000000 else 0xb0000000
    elif machine.startswith('pc-i440fx') or machine == 'pc':
        lowmem = 0xe0000000
        gigabyte_align = _version(machine) >= (1, 7)
        if ram_size >= lowmem and gigabyte_align:
            lowmem = 0xc0000000
    else:
        raise exception.UnsupportedCheckpoint(
            path, 'machine type %r is not supported (x86 pc/i440fx and q35 '
                  'only)' % machine)
    return min(ram_size, lowmem)


def ram_layout(machine: str, ram_size: int, path: str = ''
               ) -> list[RamRange]:
    """The guest-physical ranges of ``pc.ram`` for ``machine``."""
    low = below_4g(machine, ram_size, path)
    ranges = [RamRange(0, RAM_BLOCK, 0, low)]
    if ram_size > low:
        ranges.append(RamRange(FOUR_GIB, RAM_BLOCK, low, ram_size - low))
    return ranges


#: The firmware ROM block mapped just below 4 GiB (QEMU's ``pc.bios``).
BIOS_BLOCK = 'pc.bios'


def rom_ranges(blocks: dict, path: str = '') -> list[RamRange]:
    """The guest-physical ranges of the ROM blocks QEMU maps at a fixed
    address: ``pc.bios`` ends at 4 GiB (``hw/i386/x86.c``, x86_bios_rom_init;
    its last 128 KiB is also aliased below 1 MiB, where the guest's RAM
    shadows it once the firmware has run). ``blocks`` maps block names to
    lengths in bytes.
    """
    length = blocks.get(BIOS_BLOCK)
    if not length or length % 4096 or length > 16 * 1024 * 1024:
        return []
    return [RamRange(FOUR_GIB - length, BIOS_BLOCK, 0, length)]
