"""Write guest physical memory as an x86-64 ELF core file.

The layout QEMU's ``dump-guest-memory`` writes and crash, drgn and
Volatility open: the ELF header, one ``PT_NOTE`` then one ``PT_LOAD`` per
guest-physical range (``p_paddr`` the guest physical address,
``p_vaddr`` 0), the notes, then each range's bytes in address order.
More than 65534 program headers are counted in section header 0
(``PN_XNUM``), as ELF requires.
"""

import dataclasses
import struct
import typing

from sparc_nova.checkpoint import elf_core

__all__ = ['Segment', 'core_notes', 'layout_size', 'write_core']

_NHDR = struct.Struct('<III')
_SHDR = struct.Struct('<IIQQQQIIQQ')
PF_R, PF_W, PF_X = 4, 2, 1


@dataclasses.dataclass(frozen=True)
class Segment:
    """``size`` bytes of guest physical memory from ``paddr`` on."""

    paddr: int
    size: int


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def core_notes(notes: typing.Iterable[tuple[str, int, bytes]]) -> bytes:
    """``(name, type, descriptor)`` notes as the bytes of a PT_NOTE."""
    out = bytearray()
    for name, ntype, desc in notes:
        raw = name.encode('ascii') + b'\0'
        out += _NHDR.pack(len(raw), len(desc), ntype)
        out += raw + bytes(_pad4(len(raw)) - len(raw))
        out += desc + bytes(_pad4(len(desc)) - len(desc))
    return bytes(out)


def _headers(segments: list[Segment], note: bytes) -> tuple[bytes, int]:
    """The ELF header, program headers (and section header 0 with
    PN_XNUM) and notes; the offset of the first segment's bytes.
    """
    phnum = len(segments) + 1
    xnum = phnum >= elf_core.PN_XNUM
    phoff = elf_core.EHDR.size
    shoff = phoff + phnum * elf_core.PHDR.size if xnum else 0
    note_off = phoff + phnum * elf_core.PHDR.size + (_SHDR.size if xnum
                                                     else 0)
    data_off = note_off + len(note)
    ident = elf_core.ELF_MAGIC + bytes([2, 1, 1]) + bytes(9)
    out = bytearray(elf_core.EHDR.pack(
        ident, elf_core.ET_CORE, elf_core.EM_X86_64, 1, 0, phoff, shoff, 0,
        elf_core.EHDR.size, elf_core.PHDR.size,
        elf_core.PN_XNUM if xnum else phnum,
        _SHDR.size if xnum else 0, 1 if xnum else 0, 0))
    out += elf_core.PHDR.pack(elf_core.PT_NOTE, 0, note_off, 0, 0,
                              len(note), len(note), 0)
    off = data_off
    for s in segments:
        out += elf_core.PHDR.pack(elf_core.PT_LOAD, PF_R | PF_W | PF_X, off,
                                  0, s.paddr, s.size, s.size, 0)
        off += s.size
    if xnum:
        out += _SHDR.pack(0, 0, 0, 0, 0, 0, 0, phnum, 0, 0)
    out += note
    return bytes(out), data_off


def layout_size(segments: list[Segment], note: bytes) -> int:
    """Bytes of the core file :func:`write_core` writes."""
    return _headers(segments, note)[1] + sum(s.size for s in segments)


def write_core(out: typing.BinaryIO, segments: list[Segment],
               notes: bytes,
               copy: typing.Callable[[Segment, typing.BinaryIO], None]
               ) -> None:
    """Write the core file to ``out`` (a binary file at its start).

    :param segments: the guest-physical ranges, in address order, none
        overlapping.
    :param notes: the PT_NOTE bytes (:func:`core_notes`).
    :param copy: ``copy(segment, out)`` writes the segment's
        ``segment.size`` bytes at ``out``'s position.
    """
    head, _ = _headers(segments, notes)
    out.write(head)
    for s in segments:
        copy(s, out)
