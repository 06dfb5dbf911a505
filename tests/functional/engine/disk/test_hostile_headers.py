"""A raw disk snapshot whose first sector a guest turned into a qcow2
header with a backing file, a qcow2 header with an external data file,
or a vmdk descriptor with a flat extent, each naming a host file (here:
another disk holding a host marker).

Read as raw, as Nova wrote it, the snapshot is scrubbed like any disk
and no byte of the host file reaches the output: through the Nova path
(the scrubber glue, real engine, real qemu-img and appliance) and
through ``sparc image scrub --source-format raw``. Without
``--source-format`` the CLI refuses it, names the host file, exits 2
and writes nothing (no appliance needed).

On code that lets qemu-img probe the format, the scrub reads the host
disk instead of the snapshot and the host marker is in the output. The
tests without ``slow`` check the working copy the appliance would be
given (the appliance is replaced by a check that stops the scrub): the
same hole, found in seconds.
"""

import os
import secrets
import subprocess
import sys
from unittest import mock

import pytest

from sparc_nova.cmd import sparc
from sparc_nova.engine import disk
from sparc_nova.engine.disk import appliance
from sparc_nova import exception
from sparc_nova import notifications
from sparc_nova.virt import scrubber
from tests.functional.engine.disk import hostile
from tests.functional.engine.disk import images
from tests.unit.virt import fakes

GUEST_SECRET = '/home/alice/.ssh/id_rsa'
GUEST_KEPT = '/home/alice/notes.txt'
RULES = ('/home/*/.ssh/**',)


def _sparc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'sparc_nova.cmd.sparc']
                          + list(args), capture_output=True, text=True,
                          check=False)


@pytest.fixture(scope='module', params=hostile.KINDS)
def hostile_disk(request, disk_dir):
    """(snapshot path, guest marker, host marker, host file) for one
    kind of header.
    """
    kind = request.param
    directory = os.path.join(disk_dir, 'hostile-' + kind)
    os.makedirs(directory, exist_ok=True)
    host_marker = 'HOST' + secrets.token_hex(8).upper()
    guest_marker = 'GST' + secrets.token_hex(8).upper()
    host = hostile.host_disk(os.path.join(directory, 'host.raw'),
                             host_marker)
    tree = os.path.join(directory, 'tree')
    for path, data in ((GUEST_SECRET, 'key %s\n' % guest_marker),
                       (GUEST_KEPT, 'kept notes\n')):
        os.makedirs(os.path.dirname(tree + path), exist_ok=True)
        with open(tree + path, 'w') as f:
            f.write(data)
    snap = os.path.join(directory, 'snapshot.raw')
    images.partitioned_raw(snap, 64)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-E',
                    'offset=%d' % images.PART_OFFSET, '-d', tree, snap,
                    '%dk' % (63 * 1024)], check=True, capture_output=True)
    hostile.build(kind, snap, host, directory)
    return snap, guest_marker, host_marker, host


def _out_dir(snap: str, name: str) -> str:
    path = os.path.join(os.path.dirname(snap), name)
    os.makedirs(path, exist_ok=True)
    return path


def _assert_clean(path: str, fmt: str, guest_marker: str,
                  host_marker: str) -> None:
    hits = disk.scan_image(path, fmt, [guest_marker.encode(),
                                       host_marker.encode()])
    assert host_marker.encode() not in hits, 'the host file was read'
    assert guest_marker.encode() not in hits, 'the guest file survived'


class _Stop(exception.DiskScrubError):
    """Raised instead of launching the appliance."""


@pytest.fixture
def working_copy(monkeypatch):
    """Replace the appliance: record the bytes of the drives it would be
    given, then stop the scrub.
    """
    seen = []

    def launch(path, drives, *args, **kwargs):
        for drive, _ in drives:
            with open(drive, 'rb') as f:
                seen.append(f.read())
        raise _Stop(path, 'stopped before the appliance')
    monkeypatch.setattr(appliance, 'launch', launch)
    return seen


def _snapshot_file(snap: str):
    notifier = mock.Mock(spec=notifications.ScrubNotifier, host='compute1')
    effective = fakes.effective(exclude_paths=','.join(RULES))
    return scrubber.Scrubber(notifier).snapshot_file(
        'ctx', fakes.instance(), effective, 'img-1', snap, 'raw')


def test_nova_path_working_copy_holds_no_host_byte(hostile_disk,
                                                   working_copy):
    snap, guest_marker, host_marker, _ = hostile_disk
    with pytest.raises(Exception):
        _snapshot_file(snap)
    assert len(working_copy) == 1
    assert host_marker.encode() not in working_copy[0]
    assert guest_marker.encode() in working_copy[0]


def test_cli_source_format_raw_working_copy_holds_no_host_byte(
        hostile_disk, working_copy):
    snap, guest_marker, host_marker, _ = hostile_disk
    out = _out_dir(snap, 'cli-stopped')
    assert sparc.main(['image', 'scrub', snap, '-o',
                       os.path.join(out, 'dst.qcow2'), '--source-format',
                       'raw', '--exclude-path', RULES[0]]) == 2
    assert len(working_copy) == 1
    assert host_marker.encode() not in working_copy[0]
    assert guest_marker.encode() in working_copy[0]
    assert os.listdir(out) == []


def test_cli_without_source_format_refuses(hostile_disk):
    snap, _, _, host = hostile_disk
    out = _out_dir(snap, 'refused')
    dst = os.path.join(out, 'dst.qcow2')
    result = _sparc('image', 'scrub', snap, '-o', dst, '--report',
                    os.path.join(out, 'r.json'),
                    *['--exclude-path=' + r for r in RULES])
    assert result.returncode == 2, result.stderr
    assert 'refused' in result.stderr
    assert host in result.stderr, 'the error names what it points at'
    assert os.listdir(out) == []


@pytest.mark.slow
def test_cli_source_format_raw_reads_no_host_byte(hostile_disk):
    snap, guest_marker, host_marker, _ = hostile_disk
    out = _out_dir(snap, 'cli')
    dst = os.path.join(out, 'dst.qcow2')
    result = _sparc('image', 'scrub', snap, '-o', dst,
                    '--source-format', 'raw',
                    *['--exclude-path=' + r for r in RULES])
    assert result.returncode == 0, result.stderr
    _assert_clean(dst, 'qcow2', guest_marker, host_marker)


@pytest.mark.slow
def test_nova_path_reads_no_host_byte(hostile_disk):
    """The scrubber glue as the driver calls it: a raw snapshot file."""
    snap, guest_marker, host_marker, _ = hostile_disk
    outcome = _snapshot_file(snap)
    try:
        assert outcome.scrubbed, outcome.summary
        _assert_clean(outcome.path, 'raw', guest_marker, host_marker)
        # The hostile header is guest data: it is still there.
        with open(outcome.path, 'rb') as f:
            head = f.read(4)
        assert head in (b'QFI\xfb', b'# Di')
    finally:
        scrubber.remove_quietly(outcome.path)
