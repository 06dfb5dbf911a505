"""Read QEMU's own memory dump (``virsh dump --memory-only``, ELF64) for
comparison with what sparc-nova reconstructs."""

import struct


def load_segments(path: str) -> list[tuple[int, int, int]]:
    """PT_LOAD segments as (guest physical address, file offset, size)."""
    with open(path, 'rb') as f:
        ehdr = f.read(64)
        assert ehdr[:4] == b'\x7fELF' and ehdr[4] == 2, 'not an ELF64 dump'
        phoff, = struct.unpack_from('<Q', ehdr, 32)
        phentsize, phnum = struct.unpack_from('<HH', ehdr, 54)
        if phnum == 0xffff:     # PN_XNUM: real count in section 0's sh_info
            shoff, = struct.unpack_from('<Q', ehdr, 40)
            f.seek(shoff)
            sh = f.read(64)
            phnum, = struct.unpack_from('<I', sh, 44)
        f.seek(phoff)
        segs = []
        for _ in range(phnum):
            ph = f.read(phentsize)
            p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz = \
                struct.unpack_from('<IIQQQQ', ph)
            if p_type == 1 and p_filesz:
                segs.append((p_paddr, p_offset, p_filesz))
        return segs


def compare_with_raw(dump_path: str, raw_path: str,
                     page_size: int = 4096) -> dict:
    """Compare every page of the dump's RAM segments with the flat image
    ``raw_path`` (byte N = guest physical N). Returns counts and the
    first differing pages.
    """
    segs = load_segments(dump_path)
    compared = 0
    differ = []
    outside = 0
    with open(dump_path, 'rb') as d, open(raw_path, 'rb') as r:
        raw_size = r.seek(0, 2)
        for paddr, off, size in segs:
            for p in range(0, size, page_size):
                gpa = paddr + p
                if gpa + page_size > raw_size:
                    outside += 1
                    continue
                d.seek(off + p)
                a = d.read(page_size)
                r.seek(gpa)
                b = r.read(page_size)
                compared += 1
                if a != b:
                    differ.append(gpa)
    return {'segments': segs, 'compared_pages': compared,
            'differing_pages': differ, 'pages_outside_raw': outside}
