"""ELF64 core files of guest memory: the bounded reader.

QEMU's ``dump-guest-memory`` (``virsh dump --memory-only --format elf``)
writes an x86-64 ``ET_CORE`` file: one ``PT_NOTE`` (per vCPU an
``NT_PRSTATUS`` ``CORE`` note and a ``QEMU`` note with its control
registers, then the guest's ``VMCOREINFO`` note when the guest has the
vmcoreinfo device) and one ``PT_LOAD`` per guest-physical RAM range, its
``p_paddr`` the guest physical address. More than 65534 program headers
are counted in section header 0 (``PN_XNUM``).

The file is hostile input like every checkpoint: this reader bounds every
count and size (:data:`MAX_LOADS`, :data:`MAX_NOTE_BYTES`,
:data:`MAX_NOTES`, ``Limits.max_guest_ram``), and refuses segments out of
the file, overlapping each other (in the file or in guest physical
memory), overlapping the headers or notes, unaligned to pages, or with
``p_filesz != p_memsz``, with an error naming the file and the offset.
That refusal of overlaps is what lets a scrub write a page's bytes
without touching another page or a header.

Why not pyelftools: it is not in the product's environment, and it reads
whatever a header claims (it has no bounds of its own), so every check
above would still be ours; the ELF header, the program headers and the
note records are three fixed ``struct`` layouts.
"""

import dataclasses
import os
import struct
import typing

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova import exception

__all__ = ['EHDR', 'ELF_MAGIC', 'EM_X86_64', 'ET_CORE', 'MAX_LOADS',
           'MAX_NOTES', 'MAX_NOTE_BYTES', 'PAGE_SIZE', 'PHDR', 'PN_XNUM',
           'PT_LOAD', 'PT_NOTE', 'ElfCore', 'Load', 'Note', 'is_elf',
           'read_core']

ELF_MAGIC = b'\x7fELF'
ELFCLASS64 = 2
ELFDATA2LSB = 1
EV_CURRENT = 1
ET_CORE = 4
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xffff
PAGE_SIZE = 4096

#: ``e_ident`` .. ``e_shstrndx``.
EHDR = struct.Struct('<16sHHIQQQIHHHHHH')
#: ``p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align``.
PHDR = struct.Struct('<IIQQQQQQ')
#: The start of a section header, up to ``sh_info``.
_SHDR_HEAD = struct.Struct('<IIQQQQII')
_NHDR = struct.Struct('<III')

#: Program headers accepted (QEMU writes one per RAM range: a handful).
MAX_LOADS = 65536
#: Bytes of PT_NOTE accepted (QEMU writes a few KiB per vCPU).
MAX_NOTE_BYTES = 64 * 1024 * 1024
#: Note records accepted.
MAX_NOTES = 65536
#: Highest guest physical address accepted (x86-64: 52 bits).
_MAX_PADDR = 1 << 52


@dataclasses.dataclass(frozen=True)
class Load:
    """A ``PT_LOAD``: ``size`` bytes of guest physical memory from
    ``paddr`` on lie at ``offset`` in the file.
    """

    paddr: int
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.paddr + self.size


@dataclasses.dataclass(frozen=True)
class Note:
    """One note record: its name, type, and where its descriptor lies in
    the file (``desc_offset``, ``desc_size`` bytes).
    """

    name: str
    type: int
    desc_offset: int
    desc_size: int


@dataclasses.dataclass
class ElfCore:
    """The parsed layout of an ELF core file.

    :ivar loads: the PT_LOAD segments, by guest physical address.
    :ivar notes: the note records, in file order.
    :ivar vmcoreinfo: the ``VMCOREINFO`` note's text, or None.
    :ivar file_size: bytes of the file.
    """

    loads: list[Load]
    notes: list[Note]
    vmcoreinfo: bytes | None
    file_size: int

    def note_counts(self) -> dict[str, int]:
        """How many notes of each name (``CORE``, ``QEMU``, ...)."""
        out: dict[str, int] = {}
        for n in self.notes:
            out[n.name] = out.get(n.name, 0) + 1
        return out


def is_elf(head: bytes) -> bool:
    """Whether ``head`` starts an ELF file."""
    return head[:4] == ELF_MAGIC


def _pread(f: typing.BinaryIO, offset: int, size: int, path: str,
           what: str) -> bytes:
    data = os.pread(f.fileno(), size, offset)
    if len(data) != size:
        raise exception.CheckpointFormatError(
            path, 'ELF core: file ends inside the %s' % what, offset)
    return data


def _header(f, path: str, size: int) -> tuple[int, int]:
    """(program header offset, count), checked."""
    if size < EHDR.size:
        raise exception.CheckpointFormatError(
            path, 'ELF core: file ends inside the ELF header', 0)
    (ident, e_type, e_machine, _version, _entry, phoff, shoff, _flags,
     _ehsize, phentsize, phnum, shentsize, _shnum, _shstrndx) = \
        EHDR.unpack(_pread(f, 0, EHDR.size, path, 'ELF header'))
    if ident[4] != ELFCLASS64 or ident[5] != ELFDATA2LSB or \
            ident[6] != EV_CURRENT:
        raise exception.UnsupportedCheckpoint(
            path, 'ELF file is not a little-endian ELF64 file (class %d, '
                  'data %d, version %d)' % (ident[4], ident[5], ident[6]))
    if e_type != ET_CORE:
        raise exception.UnsupportedCheckpoint(
            path, 'ELF file is not a core file (e_type %d; a guest memory '
                  'dump is ET_CORE)' % e_type)
    if e_machine != EM_X86_64:
        raise exception.UnsupportedCheckpoint(
            path, 'ELF core of machine %d: only x86-64 guests (%d) are '
                  'supported' % (e_machine, EM_X86_64))
    if phentsize != PHDR.size:
        raise exception.CheckpointFormatError(
            path, 'ELF core: program header size %d, not %d'
            % (phentsize, PHDR.size), 54)
    if phnum == PN_XNUM:
        if shentsize < _SHDR_HEAD.size or shoff > size - _SHDR_HEAD.size:
            raise exception.CheckpointFormatError(
                path, 'ELF core: PN_XNUM program headers but no section '
                      'header 0 in the file', 40)
        phnum = _SHDR_HEAD.unpack(_pread(f, shoff, _SHDR_HEAD.size, path,
                                         'section header 0'))[7]
    if phnum > MAX_LOADS:
        raise exception.LimitExceeded(
            path, 'ELF core claims %d program headers (at most %d)'
            % (phnum, MAX_LOADS), 56)
    if phoff > size or phnum * PHDR.size > size - phoff:
        raise exception.CheckpointFormatError(
            path, 'ELF core: %d program headers at offset %d do not fit in '
                  'the file (%d bytes)' % (phnum, phoff, size), 32)
    return phoff, phnum


def _notes(f, path: str, offset: int, size: int, room: int) -> list[Note]:
    """The note records of a PT_NOTE (at most ``room`` of them)."""
    data = _pread(f, offset, size, path, 'notes')
    out = []
    pos = 0
    while pos < size:
        if len(out) >= room:
            raise exception.LimitExceeded(
                path, 'ELF core holds more than %d notes' % MAX_NOTES,
                offset + pos)
        if size - pos < _NHDR.size:
            raise exception.CheckpointFormatError(
                path, 'ELF core: note header cut by the end of PT_NOTE',
                offset + pos)
        namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
        name_at = pos + _NHDR.size
        desc_at = name_at + ((namesz + 3) & ~3)
        end = desc_at + ((descsz + 3) & ~3)
        if desc_at > size or end > size:
            raise exception.CheckpointFormatError(
                path, 'ELF core: note of %d+%d bytes runs past the end of '
                      'PT_NOTE' % (namesz, descsz), offset + pos)
        name = bytes(data[name_at:name_at + namesz]).rstrip(b'\0')
        out.append(Note(name.decode('ascii', 'replace'), ntype,
                        offset + desc_at, descsz))
        pos = end
    return out


def _check_loads(path: str, loads: list[Load],
                 reserved: list[tuple[int, int]],
                 limits: limits_mod.Limits) -> list[Load]:
    """The loads sorted by guest address, refusing overlaps in guest
    memory or in the file, and any load over the ``reserved`` file
    ranges (``(offset, size)``: the headers and the notes).
    """
    total = sum(s.size for s in loads)
    if total > limits.max_guest_ram:
        raise exception.LimitExceeded(
            path, 'ELF core holds %d bytes of guest memory (limit %d)'
            % (total, limits.max_guest_ram))
    spans = sorted([(s.offset, s.size, 'the segment of guest 0x%x'
                     % s.paddr) for s in loads] +
                   [(off, n, 'the ELF headers or notes')
                    for off, n in reserved if n])
    for (a_off, a_size, a), (b_off, _, b) in zip(spans, spans[1:]):
        if b_off < a_off + a_size:
            raise exception.CheckpointFormatError(
                path, 'ELF core: %s and %s overlap in the file' % (a, b),
                b_off)
    by_addr = sorted(loads, key=lambda s: s.paddr)
    for a, b in zip(by_addr, by_addr[1:]):
        if b.paddr < a.end:
            raise exception.CheckpointFormatError(
                path, 'ELF core: two segments cover guest physical 0x%x'
                % b.paddr, b.offset)
    return by_addr


def read_core(f: typing.BinaryIO, path: str,
              limits: limits_mod.Limits = limits_mod.DEFAULT) -> ElfCore:
    """Parse the ELF core file open in ``f`` (read by offset; ``f``'s
    position is not used).

    :raises CheckpointFormatError: a header, note or segment is out of
        the file, overlaps another, or is malformed.
    :raises LimitExceeded: more program headers, notes or guest memory
        than allowed.
    :raises UnsupportedCheckpoint: not a little-endian x86-64 ELF64 core,
        or a segment the guest-physical view cannot represent.
    """
    size = os.fstat(f.fileno()).st_size
    phoff, phnum = _header(f, path, size)
    table = _pread(f, phoff, phnum * PHDR.size, path, 'program headers')
    loads, notes = [], []
    note_bytes = 0
    reserved = [(0, EHDR.size), (phoff, phnum * PHDR.size)]
    for i in range(phnum):
        (p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz,
         _align) = PHDR.unpack_from(table, i * PHDR.size)
        at = phoff + i * PHDR.size
        if p_offset > size or p_filesz > size - p_offset:
            raise exception.CheckpointFormatError(
                path, 'ELF core: program header %d claims %d bytes at '
                      'offset %d, past the end of the file (%d bytes)'
                % (i, p_filesz, p_offset, size), at)
        if p_type == PT_NOTE:
            note_bytes += p_filesz
            if note_bytes > MAX_NOTE_BYTES:
                raise exception.LimitExceeded(
                    path, 'ELF core: more than %d bytes of notes'
                    % MAX_NOTE_BYTES, at)
            notes += _notes(f, path, p_offset, p_filesz,
                            MAX_NOTES - len(notes))
            reserved.append((p_offset, p_filesz))
            continue
        if p_type != PT_LOAD or not p_memsz:
            continue
        if p_filesz != p_memsz:
            raise exception.UnsupportedCheckpoint(
                path, 'ELF core: the segment of guest 0x%x holds %d of its '
                      '%d bytes (a filtered dump)' % (p_paddr, p_filesz,
                                                      p_memsz))
        if p_paddr % PAGE_SIZE or p_memsz % PAGE_SIZE:
            raise exception.UnsupportedCheckpoint(
                path, 'ELF core: the segment of guest 0x%x (%d bytes) is '
                      'not page aligned' % (p_paddr, p_memsz))
        if p_paddr >= _MAX_PADDR or p_memsz > _MAX_PADDR - p_paddr:
            raise exception.CheckpointFormatError(
                path, 'ELF core: segment of guest 0x%x (%d bytes) lies '
                      'beyond physical addresses' % (p_paddr, p_memsz), at)
        loads.append(Load(p_paddr, p_offset, p_memsz))
    loads = _check_loads(path, loads, reserved, limits)
    if not loads:
        raise exception.CheckpointFormatError(
            path, 'ELF core holds no guest memory (no PT_LOAD segment)')
    vmcoreinfo = None
    for n in notes:
        if n.name == 'VMCOREINFO' and n.desc_size <= 1024 * 1024:
            vmcoreinfo = _pread(f, n.desc_offset, n.desc_size, path,
                                'VMCOREINFO note')
    return ElfCore(loads, notes, vmcoreinfo, size)
