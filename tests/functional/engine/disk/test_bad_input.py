"""Bad input: clear errors, nothing written next to the destination.
What the host can tell without parsing guest data (format, references
to other files, size, destination) is refused before the appliance
starts; a disk without partitions or filesystems is refused by the
appliance, which reads them.
"""

import os
import subprocess
import sys

import pytest

from sparc_nova.engine import disk
from sparc_nova.engine.disk import appliance
from sparc_nova import exception
from tests.functional.engine.disk import images


@pytest.fixture
def no_appliance(monkeypatch):
    def launch(*args, **kwargs):
        raise AssertionError('the appliance must not start')
    monkeypatch.setattr(appliance, 'launch', launch)


@pytest.fixture
def out_dir(tmp_path):
    path = tmp_path / 'out'
    path.mkdir()
    return path


def _scrub(src, out_dir):
    return disk.scrub_image(str(src), str(out_dir / 'dst.qcow2'),
                            disk.Rules(['/tmp/**']))


def _fails(src, out_dir, fragment, error=exception.DiskImageError):
    with pytest.raises(error) as e:
        _scrub(src, out_dir)
    assert fragment in str(e.value)
    assert os.listdir(out_dir) == []
    return e.value


def test_missing_source(tmp_path, out_dir, no_appliance):
    _fails(tmp_path / 'nope.qcow2', out_dir, 'no such file')


def test_not_an_image(tmp_path, out_dir, no_appliance):
    src = tmp_path / 'notes.txt'
    src.write_text('just some text, not a disk\n' * 100)
    _fails(src, out_dir, 'too small to hold a filesystem')


@pytest.mark.slow
def test_text_is_not_a_disk_image(tmp_path, out_dir):
    """Partition tables and signatures are read in the appliance."""
    src = tmp_path / 'notes.txt'
    src.write_text('just some text, not a disk\n' * 100000)
    _fails(src, out_dir, 'not a disk image')


def test_truncated_qcow2(tmp_path, out_dir, ext4_qcow2, no_appliance):
    src = tmp_path / 'truncated.qcow2'
    with open(ext4_qcow2, 'rb') as f:
        data = f.read()
    src.write_bytes(data[:len(data) // 2])
    _fails(src, out_dir, 'qcow2 image is truncated')


def test_backing_file(tmp_path, out_dir, ext4_qcow2, no_appliance):
    """A backing file is refused unless the chain is allowed; a missing
    one is refused either way.
    """
    base = tmp_path / 'base.qcow2'
    subprocess.run(['cp', ext4_qcow2, str(base)], check=True)
    src = tmp_path / 'overlay.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F',
                    'qcow2', '-b', str(base), str(src)], check=True)
    error = _fails(src, out_dir, 'refused')
    assert str(base) in str(error)
    base.unlink()
    with pytest.raises(exception.DiskImageError, match='missing'):
        disk.scrub_image(str(src), str(out_dir / 'dst.qcow2'),
                         disk.Rules(['/tmp/**']),
                         disk.ScrubOptions(allow_backing_chain=True))
    assert os.listdir(out_dir) == []


@pytest.mark.slow
def test_image_without_filesystem(tmp_path, out_dir):
    raw = str(tmp_path / 'empty.raw')
    images.partitioned_raw(raw, 64)
    src = tmp_path / 'empty.qcow2'
    subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', raw, str(src)],
                   check=True)
    _fails(src, out_dir, 'partitions hold no filesystem')


@pytest.mark.slow
def test_blank_image(tmp_path, out_dir):
    src = tmp_path / 'blank.raw'
    with open(src, 'wb') as f:
        f.truncate(64 << 20)
    _fails(src, out_dir, 'no partition table and no filesystem')


def test_destination_is_source(ext4_qcow2, no_appliance):
    with pytest.raises(exception.DiskImageError) as e:
        disk.scrub_image(ext4_qcow2, ext4_qcow2, disk.Rules(['/tmp/**']))
    assert 'destination is the source' in str(e.value)


def test_read_only_destination_directory(tmp_path, ext4_qcow2,
                                         no_appliance):
    """Permission bits do not stop root: the directory is made immutable
    (or read-only for other users).
    """
    ro = tmp_path / 'ro'
    ro.mkdir()
    if os.geteuid() == 0:
        subprocess.run(['chattr', '+i', str(ro)], check=True)
    else:
        ro.chmod(0o555)
    try:
        with pytest.raises(exception.DiskImageError) as e:
            disk.scrub_image(ext4_qcow2, str(ro / 'dst.qcow2'),
                             disk.Rules(['/tmp/**']))
        assert 'is not writable' in str(e.value)
        assert os.listdir(ro) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(['chattr', '-i', str(ro)], check=True)
        ro.chmod(0o755)


def test_unknown_output_format(ext4_qcow2, out_dir, no_appliance):
    with pytest.raises(exception.DiskImageError) as e:
        disk.scrub_image(ext4_qcow2, str(out_dir / 'x.vmdk'),
                         disk.Rules(['/tmp/**']),
                         disk.ScrubOptions(output_format='vmdk'))
    assert 'unknown output format' in str(e.value)


def test_cli_reports_error_with_exit_2(tmp_path, out_dir):
    src = tmp_path / 'notes.txt'
    src.write_text('not a disk\n')
    result = subprocess.run(
        [sys.executable, '-m', 'sparc_nova.cmd.sparc', 'image', 'scrub',
         str(src), '--output', str(out_dir / 'dst.qcow2'),
         '--exclude-path', '/tmp/**'],
        capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert 'sparc: error:' in result.stderr
    assert 'not a disk image' in result.stderr
    assert os.listdir(out_dir) == []


def test_cli_refuses_a_backing_file_with_exit_2(tmp_path, out_dir,
                                                ext4_qcow2):
    src = tmp_path / 'overlay.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F',
                    'qcow2', '-b', ext4_qcow2, str(src)], check=True)
    result = subprocess.run(
        [sys.executable, '-m', 'sparc_nova.cmd.sparc', 'image', 'scrub',
         str(src), '--output', str(out_dir / 'dst.qcow2'),
         '--exclude-path', '/tmp/**'],
        capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "backing file '%s'" % ext4_qcow2 in result.stderr
    assert os.listdir(out_dir) == []
