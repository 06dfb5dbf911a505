"""``sparc checkpoint info`` / ``extract-ram`` on synthetic images."""

import json

from sparc_nova.checkpoint import checkpoint
from sparc_nova.cmd import sparc
from tests import streamgen


def test_info_json(tmp_path, capsys):
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=16))
    assert sparc.main(['checkpoint', 'info', str(path), '--format',
                       'json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['kind'] == 'libvirt-save'
    assert info['machine'] == 'pc-i440fx-7.2'
    assert info['ram_blocks']['pc.ram']['pages'] == 16
    assert info['ram_index']['storage'] in ('runs', 'columns')
    assert info['ram_index']['records'] >= 16
    assert info['domain']['name'] == 'synthetic'
    assert info['vcpus'][0]['cr3'] == '0x%x' % streamgen.CPU_VALUES['cr3']


def test_info_text(tmp_path, capsys):
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=16))
    assert sparc.main(['checkpoint', 'info', str(path)]) == 0
    out = capsys.readouterr().out
    assert 'Machine:   pc-i440fx-7.2' in out
    assert 'pc.ram' in out
    assert 'KERNEL_GS_BASE' in out


def test_extract_ram(tmp_path, capsys):
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=16))
    out = tmp_path / 'ram.raw'
    assert sparc.main(['checkpoint', 'extract-ram', str(path),
                       str(out)]) == 0
    raw = out.read_bytes()
    assert len(raw) == 16 * 4096
    assert raw[8192:12288] == streamgen.page_of(2)


def test_extract_ram_as_elf_core(tmp_path, capsys):
    """One PT_LOAD for RAM and one for the BIOS ROM below 4 GiB; the core
    reads back as a checkpoint with the same pages. The synthetic guest
    has no kernel: no VMCOREINFO note, and a warning says so.
    """
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=16))
    out = tmp_path / 'ram.elf'
    assert sparc.main(['checkpoint', 'extract-ram', str(path), str(out),
                       '--format', 'elf']) == 0
    assert 'no VMCOREINFO note' in capsys.readouterr().err
    with checkpoint.open_checkpoint(str(out)) as ck:
        assert ck.kind == 'elf-dump'
        assert [(r.gpa, r.length) for r in ck.memory.ranges] == \
            [(0, 16 * 4096), (0x100000000 - 8192, 8192)]
        assert ck.memory.read_page(2) == streamgen.page_of(2)
        assert ck.memory.read_page(3) == bytes(4096)
        assert ck.memory.read_page((0x100000000 - 8192) >> 12) == \
            streamgen.page_of(0, b'BIOS')
        assert ck.memory.read_page((0x100000000 - 4096) >> 12) == \
            b'\xff' * 4096
        assert ck.layout.core.note_counts() == {}
    assert sparc.main(['checkpoint', 'info', str(out)]) == 0
    text = capsys.readouterr().out
    assert 'ELF core:  2 segments; notes: none; VMCOREINFO: no' in text
    assert 'Restore:   none' in text


def test_error_exit_code(tmp_path, capsys):
    path = tmp_path / 'junk'
    path.write_bytes(b'junk' * 10)
    assert sparc.main(['checkpoint', 'info', str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('sparc: error: %s: at offset 0:' % path)


def _qcow2(tmp_path):
    from tests.unit.checkpoint import qcow2_image
    data = streamgen.simple_save(ram_pages=16)
    vm = data[len(streamgen.libvirt_header(16 * 4)):]
    path = tmp_path / 'disk.qcow2'
    path.write_bytes(qcow2_image.build({'before-upgrade': vm, 'b': vm}))
    return str(path)


def test_qcow2_info_lists_snapshots(tmp_path, capsys):
    path = _qcow2(tmp_path)
    assert sparc.main(['checkpoint', 'info', path]) == 0
    out = capsys.readouterr().out
    assert 'Snapshots: 2 hold memory; name one with --snapshot NAME' in out
    assert 'before-upgrade' in out and '2023-11-14' in out
    assert sparc.main(['checkpoint', 'info', path, '--format', 'json']) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [s['id'] for s in listing['snapshots']] == ['1', '2']


def test_qcow2_snapshot_commands(tmp_path, capsys):
    path = _qcow2(tmp_path)
    assert sparc.main(['checkpoint', 'info', path, '--snapshot',
                       'before-upgrade']) == 0
    out = capsys.readouterr().out
    assert 'Kind:      qcow2-snapshot' in out
    assert "Snapshot:  before-upgrade (ID 1) of a qcow2 v3 image" in out
    assert 'Restore:   virsh snapshot-revert DOMAIN before-upgrade' in out
    assert 'at file offset' not in out
    raw = tmp_path / 'ram.raw'
    assert sparc.main(['checkpoint', 'extract-ram', path, str(raw),
                       '--snapshot', '2']) == 0
    assert raw.read_bytes()[8192:12288] == streamgen.page_of(2)
    marker = streamgen.page_of(2)[:24].decode('latin-1')
    assert sparc.main(['checkpoint', 'verify', path, '--snapshot', 'b',
                       '--marker', marker]) == 1
    # Without --snapshot, the commands that need one say which exist.
    assert sparc.main(['checkpoint', 'extract-ram', path, str(raw)]) == 2
    assert 'snapshots with memory: before-upgrade, b' in \
        capsys.readouterr().err
