"""Guest memory dumps (ELF cores) as checkpoints: reading, rewriting and
the refusal of hostile files."""

import io
import os
import struct

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import elf_core
from sparc_nova.checkpoint import elf_write
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import rewrite
from sparc_nova.engine import physview
from sparc_nova import exception

SECRET = b'ELF-DUMP-SECRET-0123456789abcdef'
PAGE = 4096
HIGH = 0x100000000
VMCOREINFO = b'OSRELEASE=6.1.0\nKERNELOFFSET=0\n'


def ram(paddr: int, pages: int) -> bytes:
    """Recognisable page contents: each page starts with its address."""
    return b''.join(struct.pack('<Q', paddr + i * PAGE) + bytes([i % 251]) *
                    (PAGE - 8) for i in range(pages))


def core_bytes(ranges=((0, 16), (HIGH, 8)), secret_at=(HIGH + 3 * PAGE,),
               notes=(('CORE', 1, bytes(336)),
                      ('VMCOREINFO', 0, VMCOREINFO))) -> bytes:
    contents = {}
    for paddr, pages in ranges:
        data = bytearray(ram(paddr, pages))
        for at in secret_at:
            if paddr <= at < paddr + pages * PAGE:
                pos = at - paddr + 100
                data[pos:pos + len(SECRET)] = SECRET
        contents[paddr] = bytes(data)
    segs = [elf_write.Segment(p, n * PAGE) for p, n in ranges]
    out = io.BytesIO()
    elf_write.write_core(out, segs, elf_write.core_notes(notes),
                         lambda s, f: f.write(contents[s.paddr]))
    return out.getvalue()


def phdr_offset(data: bytes, i: int) -> int:
    """Offset of program header ``i`` (0 is the PT_NOTE)."""
    phoff, = struct.unpack_from('<Q', data, 32)
    return phoff + i * elf_core.PHDR.size


def set_phdr(data: bytes, i: int, **fields) -> bytes:
    names = ('type', 'flags', 'offset', 'vaddr', 'paddr', 'filesz',
             'memsz', 'align')
    at = phdr_offset(data, i)
    vals = dict(zip(names, elf_core.PHDR.unpack_from(data, at)))
    vals.update(fields)
    out = bytearray(data)
    elf_core.PHDR.pack_into(out, at, *(vals[n] for n in names))
    return bytes(out)


def write(tmp_path, data: bytes, name='guest.core') -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_dump_reads_as_guest_physical_memory(tmp_path):
    path = write(tmp_path, core_bytes())
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.kind == 'elf-dump'
        assert not ck.restorable
        assert [(r.gpa, r.length) for r in ck.memory.ranges] == \
            [(0, 16 * PAGE), (HIGH, 8 * PAGE)]
        assert ck.memory.read(HIGH + 2 * PAGE, 8) == \
            struct.pack('<Q', HIGH + 2 * PAGE)
        assert ck.memory.read(HIGH + 3 * PAGE + 100, len(SECRET)) == SECRET
        with pytest.raises(Exception, match='not RAM'):
            ck.memory.read(16 * PAGE, 1)
        info = ck.info()
        assert info['kind'] == 'elf-dump'
        assert info['elf']['notes'] == {'CORE': 1, 'VMCOREINFO': 1}
        assert info['elf']['vmcoreinfo'] is True
        assert ck.layout.core.vmcoreinfo == VMCOREINFO
        mem = physview.CheckpointMemory(ck)
        try:
            assert mem.count(SECRET)['memory'] == 1
            assert list(mem.find(SECRET)) == [HIGH + 3 * PAGE + 100]
        finally:
            mem.close()


def qemu_cpu_note(cr3: int, gs_base: int) -> bytes:
    """A QEMUCPUState: rsp 0x1000, rip 0xffffffff81000000, CS selector
    0x10 with the 64-bit flag, GS base, cr0..cr4, KERNEL_GS_BASE.
    """
    regs = [0] * 16
    regs[6] = 0x1000
    segs = []
    for name in ('cs', 'ds', 'es', 'fs', 'gs', 'ss', 'ldt', 'tr', 'gdt',
                 'idt'):
        sel, flags, base = 0, 0, 0
        if name == 'cs':
            sel, flags = 0x10, 1 << 21
        if name == 'gs':
            base = gs_base
        segs += [sel, 0xffffffff, flags, 0, base]
    return struct.pack('<II16QQQ' + 'IIIIQ' * 10 + '5QQ', 1, 440, *regs,
                       0xffffffff81000000, 0x2, *segs,
                       0x80050033, 0, 0x7f000, cr3, 0x3506f0, 0xabc)


def test_dump_vcpus_from_qemu_notes(tmp_path):
    notes = (('CORE', 1, bytes(336)), ('QEMU', 0, qemu_cpu_note(0x1000, 7)),
             ('CORE', 1, bytes(336)), ('QEMU', 0, qemu_cpu_note(0x2000, 8)))
    path = write(tmp_path, core_bytes(notes=notes))
    with checkpoint.open_checkpoint(path) as ck:
        cpus = ck.cpus
        info = ck.info()
    assert [(c.index, c.cr3, c.gs_base) for c in cpus] == \
        [(0, 0x1000, 7), (1, 0x2000, 8)]
    c = cpus[0]
    assert (c.rip, c.rsp, c.cr0, c.cr4, c.kernel_gs_base) == \
        (0xffffffff81000000, 0x1000, 0x80050033, 0x3506f0, 0xabc)
    assert c.cpl == 0 and c.long_mode and c.efer is None
    assert info['vcpus'][1]['cr3'] == '0x2000'


def test_dump_is_not_restorable(tmp_path):
    assert not checkpoint.restorable(write(tmp_path, core_bytes()))


@pytest.mark.parametrize('in_place', [False, True])
def test_rewrite_keeps_the_layout(tmp_path, journal_key, in_place):
    before = core_bytes()
    path = write(tmp_path, before)
    out = None if in_place else str(tmp_path / 'scrubbed.core')
    pfn = (HIGH >> 12) + 3
    with checkpoint.open_checkpoint(path) as ck:
        # Two back-to-back frames and one alone.
        res = rewrite.rewrite_pages(
            ck, {pfn: bytes(PAGE), pfn + 1: b'\x01' * PAGE,
                 2: b'ab' * (PAGE // 2)},
            output=out, in_place=in_place, journal_key=journal_key)
    res.verify()
    after = open(res.path, 'rb').read()
    assert len(after) == len(before)
    assert SECRET in before and SECRET not in after
    differ = [i for i in range(0, len(before), PAGE)
              if before[i:i + PAGE] != after[i:i + PAGE]]
    assert len(differ) <= 6      # three pages, unaligned in the file
    with checkpoint.open_checkpoint(res.path) as ck:
        assert ck.memory.read_page(pfn) == bytes(PAGE)
        assert ck.memory.read_page(pfn + 1) == b'\x01' * PAGE
        assert ck.memory.read_page(2) == b'ab' * (PAGE // 2)
        assert ck.memory.read_page(pfn + 2) == \
            ram(HIGH, 8)[5 * PAGE:6 * PAGE]
    if not in_place:
        assert open(path, 'rb').read() == before


def test_many_segments_counted_in_section_header(tmp_path):
    # 70000 one-page segments: PN_XNUM and section header 0's sh_info.
    n = 70000
    segs = [elf_write.Segment(i * 2 * PAGE, PAGE) for i in range(n)]
    page = bytes(PAGE)
    out = io.BytesIO()
    elf_write.write_core(out, segs, b'', lambda s, f: f.write(page))
    with pytest.raises(exception.LimitExceeded, match='70001 program'):
        with open(write(tmp_path, out.getvalue()), 'rb') as f:
            elf_core.read_core(f, 'guest.core')


def test_pn_xnum_within_the_limit(tmp_path):
    segs = [elf_write.Segment(i * 2 * PAGE, PAGE) for i in range(3)]
    out = io.BytesIO()
    elf_write.write_core(out, segs, b'', lambda s, f: f.write(bytes(PAGE)))
    data = bytearray(out.getvalue())
    # Rewrite as PN_XNUM with a section header 0 at the end.
    shoff = len(data)
    data += struct.pack('<IIQQQQIIQQ', 0, 0, 0, 0, 0, 0, 0, 4, 0, 0)
    struct.pack_into('<Q', data, 40, shoff)
    struct.pack_into('<HHHH', data, 56, elf_core.PN_XNUM, 64, 1, 0)
    with open(write(tmp_path, bytes(data)), 'rb') as f:
        core = elf_core.read_core(f, 'guest.core')
    assert [s.paddr for s in core.loads] == [0, 2 * PAGE, 4 * PAGE]


def _refused(tmp_path, data, error, *words):
    path = write(tmp_path, data)
    with pytest.raises(error) as e:
        checkpoint.open_checkpoint(path).close()
    assert e.value.path == path
    assert path in str(e.value)
    for w in words:
        assert w in str(e.value)
    assert open(path, 'rb').read() == data
    assert sorted(os.listdir(tmp_path)) == ['guest.core']
    return e.value


def test_refuses_a_truncated_header(tmp_path):
    _refused(tmp_path, core_bytes()[:40], exception.CheckpointFormatError,
             'ELF header')


def test_refuses_program_headers_past_the_end(tmp_path):
    data = bytearray(core_bytes())
    struct.pack_into('<Q', data, 32, len(data) - 10)
    _refused(tmp_path, bytes(data), exception.CheckpointFormatError,
             'do not fit')


def test_refuses_a_huge_header_count(tmp_path):
    data = bytearray(core_bytes())
    shoff = len(data)
    data += struct.pack('<IIQQQQIIQQ', 0, 0, 0, 0, 0, 0, 0, 2 ** 31, 0, 0)
    struct.pack_into('<Q', data, 40, shoff)
    struct.pack_into('<HHH', data, 56, elf_core.PN_XNUM, 64, 1)
    _refused(tmp_path, bytes(data), exception.LimitExceeded,
             'program headers')


def test_refuses_a_segment_past_the_end(tmp_path):
    data = core_bytes()
    _refused(tmp_path, set_phdr(data, 2, filesz=64 * PAGE, memsz=64 * PAGE),
             exception.CheckpointFormatError, 'past the end of the file')


def test_refuses_segments_overlapping_in_the_file(tmp_path):
    data = core_bytes()
    first = elf_core.PHDR.unpack_from(data, phdr_offset(data, 1))[2]
    _refused(tmp_path, set_phdr(data, 2, offset=first + PAGE),
             exception.CheckpointFormatError, 'overlap in the file')


def test_refuses_a_segment_over_the_notes(tmp_path):
    data = core_bytes()
    note = elf_core.PHDR.unpack_from(data, phdr_offset(data, 0))[2]
    _refused(tmp_path, set_phdr(data, 1, offset=note),
             exception.CheckpointFormatError, 'headers or notes')


def test_refuses_segments_overlapping_in_guest_memory(tmp_path):
    data = core_bytes()
    _refused(tmp_path, set_phdr(data, 2, paddr=8 * PAGE),
             exception.CheckpointFormatError, 'two segments cover')


def test_refuses_a_filtered_segment(tmp_path):
    data = core_bytes()
    _refused(tmp_path, set_phdr(data, 2, memsz=16 * PAGE),
             exception.UnsupportedCheckpoint, 'filtered')


def test_refuses_an_unaligned_segment(tmp_path):
    data = core_bytes()
    _refused(tmp_path, set_phdr(data, 2, paddr=HIGH + 100),
             exception.UnsupportedCheckpoint, 'not page aligned')


def test_refuses_a_segment_beyond_physical_addresses(tmp_path):
    data = core_bytes()
    _refused(tmp_path, set_phdr(data, 2, paddr=1 << 53),
             exception.CheckpointFormatError, 'beyond physical')


def test_refuses_more_memory_than_the_limit(tmp_path):
    path = write(tmp_path, core_bytes())
    small = limits_mod.Limits(max_guest_ram=16 * PAGE)
    with pytest.raises(exception.LimitExceeded, match='guest memory'):
        checkpoint.open_checkpoint(path, limits=small).close()


def test_refuses_a_note_past_its_segment(tmp_path):
    data = bytearray(core_bytes())
    note = elf_core.PHDR.unpack_from(data, phdr_offset(data, 0))[2]
    struct.pack_into('<I', data, note + 4, 1 << 30)   # descsz
    _refused(tmp_path, bytes(data), exception.CheckpointFormatError,
             'past the end of PT_NOTE')


def test_refuses_huge_notes(tmp_path):
    data = core_bytes()
    _refused(tmp_path, set_phdr(data, 0, filesz=elf_core.MAX_NOTE_BYTES + 1),
             exception.CheckpointFormatError)


def test_refuses_other_elf_files(tmp_path):
    data = bytearray(core_bytes())
    struct.pack_into('<H', data, 16, 2)      # ET_EXEC
    _refused(tmp_path, bytes(data), exception.UnsupportedCheckpoint,
             'not a core file')
    data = bytearray(core_bytes())
    struct.pack_into('<H', data, 18, 183)    # aarch64
    os.unlink(tmp_path / 'guest.core')
    _refused(tmp_path, bytes(data), exception.UnsupportedCheckpoint,
             'x86-64')


def test_refuses_no_memory(tmp_path):
    out = io.BytesIO()
    elf_write.write_core(out, [], elf_write.core_notes([]), None)
    _refused(tmp_path, out.getvalue(), exception.CheckpointFormatError,
             'no PT_LOAD')
