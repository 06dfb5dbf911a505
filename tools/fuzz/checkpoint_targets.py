"""Fuzz targets for the checkpoint format layer.

Each target takes bytes and must either succeed or raise one of the
documented clear errors (:class:`sparc_nova.exception.SparcError`
subclasses, or :class:`PhysicalAddressError` for reads outside RAM).
Anything else is a bug. Used by ``tools/fuzz/run.py`` (atheris, long runs)
and by the regression tests in ``tests/unit/checkpoint`` (corpus replay).
"""

import io
import os
import struct

from sparc_nova.checkpoint import cpu_state
from sparc_nova.checkpoint import elf_core
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import machine
from sparc_nova.checkpoint import memory_dump
from sparc_nova.checkpoint import physmem
from sparc_nova.checkpoint import qcow2_vmstate
from sparc_nova.checkpoint import qemu_stream
from sparc_nova import exception

#: Small limits so that a hostile input cannot make one execution slow.
LIMITS = limits_mod.Limits(max_guest_ram=64 * 1024 * 1024,
                           max_sections=4096, max_vmdesc=1 << 20,
                           max_page_copies=4, max_header_data=1 << 20)

EXPECTED = (exception.SparcError, physmem.PhysicalAddressError)


def parse_header(data: bytes) -> None:
    """The libvirt save header and its XML."""
    try:
        libvirt_save.read_header(io.BytesIO(data), 'fuzz', LIMITS)
    except EXPECTED:
        pass


def parse_stream(data: bytes) -> None:
    """A QEMU migration stream, then everything the layers above read
    from it: the machine layout, guest pages, vCPU registers.
    """
    try:
        layout = qemu_stream.parse(data, len(data), 'fuzz', limits=LIMITS)
        ram = layout.ram
        ram.stats()
        cpu_state.cpus(layout.devices)
        if machine.RAM_BLOCK in ram.by_name:
            ranges = machine.ram_layout(
                layout.machine or 'pc', ram.block(machine.RAM_BLOCK).length)
            mem = physmem.GuestPhysicalMemory(data, ram, ranges)
            for pfn in (0, 1, 7, (mem.size >> 12) - 1, 1 << 40):
                mem.read(pfn << 12, 16)
    except EXPECTED:
        pass


def structured(data: bytes) -> bytes:
    """Build a plausible stream from fuzz bytes, so that mutations reach
    deep into RAM records and device sections: a fixed prologue, then
    records whose flags, offsets and lengths come from ``data``.
    """
    out = bytearray(b'QEVM\x00\x00\x00\x03\x07\x00\x00\x00\x0dpc-i440fx-7.2')
    out += b'\x01\x00\x00\x00\x02\x03ram\x00\x00\x00\x00\x00\x00\x00\x04'
    ram = 16 * 4096
    out += struct.pack('>Q', ram | 4) + b'\x06pc.ram' + struct.pack('>Q', ram)
    out += struct.pack('>Q', 0x10) + b'\x7e\x00\x00\x00\x02'
    out += b'\x03\x00\x00\x00\x02'
    pos = 0
    for _ in range(64):
        if pos + 3 > len(data):
            break
        op, page, extra = data[pos], data[pos + 1] & 0x1f, data[pos + 2]
        pos += 3
        flags = (0x02, 0x08, 0x22, 0x28, 0x10, op)[op % 6]
        out += struct.pack('>Q', (page << 12) | flags)
        if not flags & 0x20 and flags & 0x0a:
            out += b'\x06pc.ram'
        if flags & 0x08:
            out += bytes([extra]) * 4096
        elif flags & 0x02:
            out += bytes([extra])
        if flags == 0x10:
            break
    out += data[pos:]
    return bytes(out)


def parse_structured(data: bytes) -> None:
    parse_stream(structured(data))


def parse_elf_core(data: bytes) -> None:
    """An ELF memory dump (read from a file, as the parser reads by
    offset), its layout as RAM, then guest pages.
    """
    fd = os.memfd_create('fuzz-elf')
    with os.fdopen(fd, 'w+b') as f:
        f.write(data)
        f.flush()
        try:
            core = elf_core.read_core(f, 'fuzz', LIMITS)
            dump = memory_dump.layout(core)
            dump.ram.stats()
            mem = physmem.GuestPhysicalMemory(
                data, dump.ram, memory_dump.ram_ranges(dump))
            for r in mem.ranges:
                mem.read(r.gpa, 16)
                mem.read(r.end - 16, 16)
            mem.read(1 << 40, 1)
        except EXPECTED:
            pass


def parse_qcow2(data: bytes) -> None:
    """A qcow2 image: its snapshot table, then for every snapshot with a
    vmstate the vmstate extracted and read through its view, and the
    image patches of a scrub planned (refcounts, sharing, compressed
    clusters); nothing is written to the image.
    """
    fd = os.memfd_create('fuzz-qcow2')
    with os.fdopen(fd, 'w+b') as f:
        f.write(data)
        f.flush()
        try:
            listing = qcow2_vmstate.list_snapshots(f, 'fuzz', LIMITS)
            for sn in listing['snapshots'][:4]:
                if sn['vm_state_size']:
                    _fuzz_vmstate(f, sn['name'])
        except EXPECTED:
            pass


def _fuzz_vmstate(f, name: str) -> None:
    try:
        vm = qcow2_vmstate.open_vmstate(f, 'fuzz', name, LIMITS)
        qcow2_vmstate.VmstateView(vm).read(1 << 16)
        tmp = os.memfd_create('fuzz-vmstate')
        with os.fdopen(tmp, 'w+b') as out:
            vm.extract(out)
            size = vm.size
            groups = [journal.Group(journal.FILL_BYTE, [0, size - 1], 0)]
            if size > journal.PAGE_SIZE:
                groups.append(journal.Group(
                    journal.FILL_PAGE, [(size - journal.PAGE_SIZE) // 2],
                    0))
            vm.file_patches(out.fileno(), groups)
    except EXPECTED:
        pass


TARGETS = {'header': parse_header, 'stream': parse_stream,
           'structured': parse_structured, 'elf': parse_elf_core,
           'qcow2': parse_qcow2}
