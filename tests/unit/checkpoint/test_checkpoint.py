"""Parsing synthetic libvirt save images and QEMU streams."""

import bz2
import gzip
import lzma
import os

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import ram_index
from tests import streamgen


def write(tmp_path, data, name='save.img'):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_parse_libvirt_save(tmp_path):
    path = write(tmp_path, streamgen.simple_save(ram_pages=64))
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.kind == 'libvirt-save'
        assert ck.header.version == 2
        assert ck.header.compression == 'raw'
        assert 'synthetic' in ck.header.domain_xml
        assert ck.header.cookie_xml == '<cookie/>'
        assert ck.layout.machine == 'pc-i440fx-7.2'
        stats = ck.layout.ram.stats()
        assert stats['pc.ram']['pages'] == 64
        assert stats['pc.ram']['data_pages'] == 32
        assert stats['pc.ram']['zero_pages'] == 32
        assert stats['pc.ram']['missing_pages'] == 0
        assert stats['pc.bios']['records'] == 2
        assert ck.memory.size == 64 * 4096
        assert ck.memory.read_page(2) == streamgen.page_of(2)
        assert ck.memory.read_page(3) == bytes(4096)
        assert ck.memory.read(2 * 4096 + 4090, 12) == (
            streamgen.page_of(2)[4090:] + bytes(6))


def test_vcpu_state_from_vmdesc(tmp_path):
    path = write(tmp_path, streamgen.simple_save(ram_pages=8))
    with checkpoint.open_checkpoint(path) as ck:
        assert len(ck.cpus) == 1
        cpu = ck.cpus[0]
        v = streamgen.CPU_VALUES
        assert cpu.cr3 == v['cr3']
        assert cpu.cr0 == v['cr0']
        assert cpu.cr4 == v['cr4']
        assert cpu.efer == v['efer']
        assert cpu.gs_base == v['gs_base']
        assert cpu.kernel_gs_base == v['kernel_gs_base']
        assert cpu.cpl == 0
        assert cpu.percpu_base == v['gs_base']
        assert cpu.long_mode
        assert cpu.halted is True
        assert cpu.rsp == 4 * 0x1111


def test_bare_qemu_stream(tmp_path):
    data = streamgen.simple_save(ram_pages=8)
    stream = data[data.index(b'QEVM'):]
    path = write(tmp_path, stream, 'stream.bin')
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.kind == 'qemu-stream'
        assert ck.header is None
        assert ck.memory.read_page(0) == streamgen.page_of(0)


def test_last_copy_wins_and_all_copies_indexed(tmp_path):
    path = write(tmp_path, streamgen.simple_save(ram_pages=16,
                                                 twice=(4, 5)))
    with checkpoint.open_checkpoint(path) as ck:
        idx = ck.layout.ram
        assert ck.memory.read_page(4) == streamgen.page_of(4)
        assert ck.memory.read_page(5) == bytes(4096)
        block = idx.block('pc.ram').index
        assert len(idx.copies_of(block, [4])) == 2
        assert idx.stats()['pc.ram']['pages_sent_more_than_once'] == 2


def test_no_vmdesc_keeps_ram(tmp_path):
    b = streamgen.StreamBuilder({'pc.ram': 4 * 4096}, vmdesc=False)
    stream = b.build([[('pc.ram', i, streamgen.page_of(i))
                       for i in range(4)]])
    path = write(tmp_path, stream, 'stream.bin')
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.memory.read_page(3) == streamgen.page_of(3)
        assert 'no vmdesc' in ck.layout.device_state_note
        assert ck.cpus == []


@pytest.mark.parametrize('fmt,opener', [
    (compression.GZIP, gzip.compress),
    (compression.BZIP2, bz2.compress),
    (compression.XZ, lzma.compress),
])
def test_compressed_images(tmp_path, fmt, opener):
    data = streamgen.simple_save(ram_pages=32)
    hdr_end = data.index(b'QEVM')
    header = bytearray(data[:hdr_end])
    header[28:32] = fmt.to_bytes(4, 'little')
    path = write(tmp_path, bytes(header) + opener(data[hdr_end:]))
    with checkpoint.open_checkpoint(path) as ck:
        assert ck.header.compressed == fmt
        assert ck.memory.read_page(6) == streamgen.page_of(6)
    # The decompressed temporary stream is gone after close.
    assert os.listdir(tmp_path) == ['save.img']


def test_machine_layout_above_4g_q35():
    from sparc_nova.checkpoint import machine
    gib = 1024 ** 3
    r = machine.ram_layout('pc-q35-7.2', 4 * gib)
    assert [(x.gpa, x.block_offset, x.length) for x in r] == [
        (0, 0, 2 * gib), (4 * gib, 2 * gib, 2 * gib)]
    r = machine.ram_layout('pc-i440fx-7.2', 4 * gib)
    assert [(x.gpa, x.length) for x in r] == [(0, 3 * gib),
                                              (4 * gib, gib)]
    r = machine.ram_layout('pc-q35-7.2', 2 * gib)
    assert [(x.gpa, x.length) for x in r] == [(0, 2 * gib)]
    r = machine.ram_layout('pc-i440fx-1.6', int(3.75 * gib))
    assert r[0].length == 0xe0000000


def test_read_outside_ram(tmp_path):
    from sparc_nova.checkpoint import physmem
    path = write(tmp_path, streamgen.simple_save(ram_pages=8))
    with checkpoint.open_checkpoint(path) as ck:
        with pytest.raises(physmem.PhysicalAddressError):
            ck.memory.read(8 * 4096, 1)


def test_extract_raw(tmp_path):
    path = write(tmp_path, streamgen.simple_save(ram_pages=600))
    out = tmp_path / 'ram.raw'
    with checkpoint.open_checkpoint(path) as ck, open(out, 'wb') as f:
        ck.memory.write_raw(f)
    raw = out.read_bytes()
    assert len(raw) == 600 * 4096
    for pfn in (0, 1, 2, 598, 599):
        expect = streamgen.page_of(pfn) if pfn % 2 == 0 else bytes(4096)
        assert raw[pfn * 4096:(pfn + 1) * 4096] == expect


def test_header_constants():
    assert libvirt_save.HEADER_SIZE == 92
    assert ram_index.PAGE_SIZE == 4096
