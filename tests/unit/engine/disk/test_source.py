"""Source format and the files an image would read (real files made with
qemu-img; no appliance).
"""

import json
import os
import struct
import subprocess

import pytest

from sparc_nova.engine.disk import preflight
from sparc_nova.engine.disk import qemu_img
from sparc_nova.engine.disk import source
from sparc_nova import exception

MIB = 1 << 20


def _qemu_img(*args: str) -> None:
    subprocess.run(['qemu-img'] + list(args), check=True,
                   capture_output=True)


@pytest.fixture
def host_file(tmp_path):
    """A host file holding a marker (what a hostile header names)."""
    path = tmp_path / 'host-secret.raw'
    with open(path, 'wb') as f:
        f.truncate(MIB)
        f.write(b'HOST-MARKER-0123456789')
    return str(path)


@pytest.fixture
def backed(tmp_path, host_file):
    path = str(tmp_path / 'overlay.qcow2')
    _qemu_img('create', '-q', '-f', 'qcow2', '-b', host_file, '-F', 'raw',
              path, '1M')
    return path


@pytest.fixture
def data_file(tmp_path):
    path = str(tmp_path / 'df.qcow2')
    data = str(tmp_path / 'data.raw')
    _qemu_img('create', '-q', '-f', 'qcow2', '-o',
              'data_file=%s,data_file_raw=on' % data, path, '1M')
    return path, data


@pytest.fixture
def vmdk_flat(tmp_path, host_file):
    path = tmp_path / 'desc.vmdk'
    path.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\n'
                    'parentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
                    'RW 2048 FLAT "%s" 0\n' % host_file)
    return str(path)


def _raw_with_header(tmp_path, header_file: str) -> str:
    """A raw disk whose first sectors are the header of another image
    (what a guest can write to its own disk).
    """
    path = str(tmp_path / 'guest.raw')
    with open(header_file, 'rb') as f:
        header = f.read(64 * 1024)
    with open(path, 'wb') as f:
        f.truncate(4 * MIB)
        f.write(header)
    return path


def test_detect_plain_formats(tmp_path, backed):
    raw = tmp_path / 'plain.raw'
    raw.write_bytes(b'\0' * MIB)
    assert source.detect(str(raw)) == 'raw'
    plain = str(tmp_path / 'plain.qcow2')
    _qemu_img('create', '-q', '-f', 'qcow2', plain, '1M')
    assert source.detect(plain) == 'qcow2'
    # The inspector finds qcow2; the safety check is separate.
    assert source.detect(backed) == 'qcow2'


def test_backing_file_refused_and_named(backed, host_file):
    with pytest.raises(exception.DiskImageError) as e:
        source.check(backed, 'qcow2')
    assert 'backing_file' in str(e.value)
    assert "backing file '%s'" % host_file in str(e.value)
    assert '--allow-backing-chain' in str(e.value)
    source.check(backed, 'qcow2', allow_backing_chain=True)


def test_data_file_refused_even_with_backing_chain(data_file):
    path, data = data_file
    with pytest.raises(exception.DiskImageError) as e:
        source.check(path, 'qcow2', allow_backing_chain=True)
    assert "data file '%s'" % data in str(e.value)


def test_vmdk_extent_refused_and_named(vmdk_flat, host_file):
    with pytest.raises(exception.DiskImageError) as e:
        source.check(vmdk_flat, 'vmdk')
    assert "extent '%s'" % host_file in str(e.value)


def test_json_backing_refused(tmp_path, host_file):
    path = str(tmp_path / 'json.qcow2')
    spec = 'json:{"file.driver": "file", "file.filename": "%s"}' % host_file
    _qemu_img('create', '-q', '-f', 'qcow2', '-u', '-b', spec, '-F', 'raw',
              path, '1M')
    with pytest.raises(exception.DiskImageError) as e:
        source.check(path, 'qcow2')
    assert 'json:' in str(e.value)
    with pytest.raises(exception.DiskImageError, match='json: spec'):
        preflight.inspect_source(path, 'qcow2', allow_backing_chain=True)


@pytest.mark.parametrize('kind', ['backing', 'data-file', 'vmdk'])
def test_hostile_first_sector_read_as_raw(tmp_path, kind, backed,
                                          data_file, vmdk_flat):
    header = {'backing': backed, 'data-file': data_file[0],
              'vmdk': vmdk_flat}[kind]
    guest = _raw_with_header(tmp_path, header)
    # Given as raw, it is raw: its header is guest data.
    source.check(guest, 'raw')
    image = preflight.inspect_source(guest, 'raw')
    assert (image.format, image.files_read) == ('raw', [guest])
    assert image.virtual_size == 4 * MIB
    # Without a format it is refused, naming what the header points at.
    with pytest.raises(exception.DiskImageError) as e:
        preflight.inspect_source(guest)
    assert 'refused' in str(e.value)


def test_vmdk_text_before_a_partition_table_refused(tmp_path, host_file):
    """qemu probes a vmdk descriptor from its version= line; the
    inspector wants a whole sector of text. A boot sector with the
    descriptor and an MBR partition table after it is refused.
    """
    path = str(tmp_path / 'mbr.raw')
    descriptor = ('# Disk DescriptorFile\nversion=1\ncreateType='
                  '"monolithicFlat"\nRW 2048 FLAT "%s" 0\n' % host_file)
    with open(path, 'wb') as f:
        f.truncate(4 * MIB)
        f.write(descriptor.encode())
        f.seek(446)
        f.write(struct.pack('<B3sB3sII', 0, b'\0\x02\0', 0x83,
                            b'\xff\xff\xff', 2048, 4096))
        f.seek(510)
        f.write(b'\x55\xaa')
    with pytest.raises(exception.DiskImageError) as e:
        source.detect(path)
    assert "extent '%s'" % host_file in str(e.value)


def test_format_mismatch_refused(tmp_path, backed):
    raw = tmp_path / 'plain.raw'
    raw.write_bytes(b'\0' * MIB)
    with pytest.raises(exception.DiskImageError, match='not a qcow2'):
        source.check(str(raw), 'qcow2')
    with pytest.raises(exception.DiskImageError, match='unknown source'):
        source.check(str(raw), 'qed')


def test_backing_chain_lists_every_file(tmp_path, backed, host_file):
    top = str(tmp_path / 'top.qcow2')
    _qemu_img('create', '-q', '-f', 'qcow2', '-b', backed, '-F', 'qcow2',
              top, '1M')
    with pytest.raises(exception.DiskImageError, match='backing file'):
        preflight.inspect_source(top, 'qcow2')
    image = preflight.inspect_source(top, 'qcow2',
                                     allow_backing_chain=True)
    assert image.files_read == [top, backed, host_file]


def test_missing_backing_file(tmp_path, backed, host_file):
    os.unlink(host_file)
    with pytest.raises(exception.DiskImageError, match='missing'):
        preflight.inspect_source(backed, 'qcow2', allow_backing_chain=True)


def test_qemu_img_runs_under_limits(tmp_path):
    raw = tmp_path / 'plain.raw'
    raw.write_bytes(b'\0' * MIB)
    ok = qemu_img.run('info', ['--output=json', '-f', 'raw'], [str(raw)],
                      qemu_img.Limits())
    assert ok.returncode == 0
    assert json.loads(ok.stdout)['format'] == 'raw'
    # 8 MiB of address space is too little for qemu-img to start: the
    # limit is in force.
    tight = qemu_img.run('info', ['--output=json', '-f', 'raw'],
                         [str(raw)], qemu_img.Limits(
                             inspect_address_space_mib=8))
    assert tight.returncode != 0


def test_limits_per_command():
    limits = qemu_img.Limits(inspect_cpu_s=30, inspect_address_space_mib=1,
                             convert_cpu_s=0, convert_address_space_mib=2)
    info = limits.for_command('info')
    assert (info.cpu_time, info.address_space) == (30, MIB)
    convert = limits.for_command('convert')
    assert (convert.cpu_time, convert.address_space) == (None, 2 * MIB)


def test_paths_are_absolute(tmp_path, monkeypatch):
    """A relative name with a colon is a file, never a protocol."""
    monkeypatch.chdir(tmp_path)
    name = 'json:{"file.filename":"x"}'
    (tmp_path / name).write_bytes(b'\0' * MIB)
    result = qemu_img.run('info', ['--output=json', '-f', 'raw'], [name],
                          qemu_img.Limits())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['filename'] == str(tmp_path / name)
