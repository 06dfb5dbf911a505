"""Read QEMU's own memory dump (``virsh dump --memory-only``, ELF64) for
comparison with what sparc-nova reconstructs."""

import re
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
                     ram: list[tuple[int, int]],
                     page_size: int = 4096) -> dict:
    """Compare every page of the dump's segments that lie inside guest RAM
    (``ram``: (guest physical address, length) ranges) with the flat image
    ``raw_path`` (byte N = guest physical N).

    Returns the segments, the number of pages compared, the guest physical
    addresses of differing pages and the number of dump pages outside the
    image (ROM and other non-RAM regions QEMU also dumps).
    """
    segs = load_segments(dump_path)
    compared = 0
    differ = []
    outside = 0
    chunk = 256 * page_size
    with open(dump_path, 'rb') as d, open(raw_path, 'rb') as r:
        for paddr, off, size in segs:
            inside = 0
            for gpa, length in ram:
                lo = max(paddr, gpa)
                hi = min(paddr + size, gpa + length)
                if lo >= hi:
                    continue
                inside += hi - lo
                for p in range(lo, hi, chunk):
                    n = min(chunk, hi - p)
                    d.seek(off + p - paddr)
                    a = d.read(n)
                    r.seek(p)
                    b = r.read(n)
                    compared += n // page_size
                    if a == b:
                        continue
                    for q in range(0, n, page_size):
                        if a[q:q + page_size] != b[q:q + page_size]:
                            differ.append(p + q)
            outside += (size - inside) // page_size
    return {'segments': segs, 'compared_pages': compared,
            'differing_pages': differ, 'pages_outside_raw': outside}


def compare_cores(ours_path: str, theirs_path: str) -> dict:
    """Find every PT_LOAD of core ``theirs_path`` (QEMU's dump) inside a
    PT_LOAD of core ``ours_path`` and compare the bytes.

    Returns the bytes compared, the segments of ``theirs`` that no
    segment of ``ours`` covers, and the guest physical addresses of the
    first differing 16 MiB pieces.
    """
    ours = load_segments(ours_path)
    theirs = load_segments(theirs_path)
    compared = 0
    uncovered = []
    differ = []
    piece = 1 << 24
    with open(ours_path, 'rb') as a, open(theirs_path, 'rb') as b:
        for paddr, off, size in theirs:
            seg = [s for s in ours
                   if s[0] <= paddr and paddr + size <= s[0] + s[2]]
            if not seg:
                uncovered.append((paddr, size))
                continue
            o_paddr, o_off, _ = seg[0]
            for pos in range(0, size, piece):
                n = min(piece, size - pos)
                b.seek(off + pos)
                a.seek(o_off + paddr - o_paddr + pos)
                if a.read(n) != b.read(n):
                    differ.append(paddr + pos)
                compared += n
    return {'ours': ours, 'theirs': theirs, 'compared_bytes': compared,
            'uncovered': uncovered, 'differing': differ}


def drgn_reads_release(path: str):
    """Open the ELF core ``path`` with drgn (``drgn -c PATH``), check it is
    taken for a Linux kernel and read ``init_uts_ns`` at the address of
    the core's VMCOREINFO note: ``Linux`` and the note's ``OSRELEASE``.
    Returns the drgn program.
    """
    import drgn

    from sparc_nova.checkpoint import elf_core
    with open(path, 'rb') as f:
        core = elf_core.read_core(f, path)
    assert core.vmcoreinfo, 'no VMCOREINFO note in %s' % path
    text = core.vmcoreinfo.decode()
    release = re.search(r'^OSRELEASE=(.*)$', text, re.M).group(1)
    uts = int(re.search(r'^SYMBOL\(init_uts_ns\)=([0-9a-f]+)$', text,
                        re.M).group(1), 16)
    prog = drgn.Program()
    prog.set_core_dump(path)
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    # struct uts_namespace starts with struct new_utsname (65-byte
    # sysname, nodename, release).
    name = prog.read(uts, 65 * 3)
    assert name[:6] == b'Linux\0', name[:6]
    assert name[130:130 + len(release)].decode() == release
    return prog
