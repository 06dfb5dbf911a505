"""Checks of scrubbed images made on the host, independently of the
scrubber: raw marker counts, and read-only mounts through loop devices
(plus device-mapper for LVM and LUKS) for file hashes and fsck.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile

from tests.functional.engine.disk import images

_ENV = dict(os.environ, DM_DISABLE_UDEV='1')
_LVM_CONFIG = 'activation { udev_sync = 0 udev_rules = 0 }'


def run(*argv: str, check: bool = True, **kwargs):
    return subprocess.run(argv, check=check, capture_output=True, env=_ENV,
                          **kwargs)


def to_raw(path: str, directory: str) -> str:
    """The guest view of an image as a raw file (sparse)."""
    raw = os.path.join(directory, os.path.basename(path) + '.check.raw')
    run('qemu-img', 'convert', '-O', 'raw', path, raw)
    return raw


def count_marker(raw: str, marker: str) -> int:
    """Occurrences of ``marker`` in a raw file, read in 16 MiB chunks with
    an overlap so that none straddling a boundary is missed.
    """
    needle = marker.encode()
    total = 0
    tail = b''
    with open(raw, 'rb') as f:
        while True:
            chunk = f.read(16 * images.MIB)
            if not chunk:
                return total
            data = tail + chunk
            total += data.count(needle)
            tail = data[-(len(needle) - 1):]
            # an occurrence inside ``tail`` was counted already and cannot
            # be counted again: tail is shorter than the needle.


@contextlib.contextmanager
def mounted(raw: str, kind: str):
    """Mount the filesystems of a test image read-only (the LVM image's
    /home LV at /home); yields ``(devices, mountpoint)``, devices being
    the filesystems' block devices, root first.
    """
    loop = run('losetup', '-f', '--show', '-r', '-o',
               str(partition_offset(raw)), raw).stdout.decode().strip()
    devices = [loop]
    mapper = None
    mountpoint = tempfile.mkdtemp(prefix='sparc-check-')
    mounted_at = []
    try:
        if kind == 'lvm':
            run('vgscan', '--config', _LVM_CONFIG, check=False)
            run('vgchange', '-ay', '--config', _LVM_CONFIG, 'vgsparc')
            devices = ['/dev/mapper/vgsparc-root', '/dev/mapper/vgsparc-home']
        elif kind == 'luks':
            mapper = 'sparc-check-%d' % os.getpid()
            run('cryptsetup', 'open', '--readonly', '--key-file=-', loop,
                mapper, input=images.LUKS_KEY.encode())
            devices = ['/dev/mapper/' + mapper]
        options = {'xfs': 'ro,norecovery',
                   'btrfs': 'ro'}.get(kind, 'ro,noload')
        for device, target in zip(devices, (mountpoint,
                                            mountpoint + '/home')):
            run('mount', '-o', options, device, target)
            mounted_at.insert(0, target)
        yield devices, mountpoint
    finally:
        for target in mounted_at:
            run('umount', target, check=False)
        if kind == 'lvm':
            run('vgchange', '-an', '--config', _LVM_CONFIG, 'vgsparc',
                check=False)
        if mapper:
            run('cryptsetup', 'close', mapper, check=False)
        run('losetup', '-d', loop, check=False)
        os.rmdir(mountpoint)


def partition_offset(raw: str) -> int:
    """Byte offset of the first partition of a raw disk."""
    table = json.loads(run('sfdisk', '--json', raw).stdout)
    part = table['partitiontable']['partitions'][0]
    return int(part['start']) * int(table['partitiontable'].get(
        'sectorsize', 512))


def blkid(device: str) -> dict[str, str]:
    out = run('blkid', '-p', '-o', 'export', device,
              check=False).stdout.decode()
    return dict(line.partition('=')[::2] for line in out.splitlines())


def fsck(device: str, fstype: str) -> subprocess.CompletedProcess:
    """Read-only consistency check; returncode 0 means clean."""
    argv = {'ext4': ['e2fsck', '-f', '-n', device],
            'xfs': ['xfs_repair', '-n', device],
            'btrfs': ['btrfs', 'check', '--readonly', device]}[fstype]
    return run(*argv, check=False)


def tree_hashes(mountpoint: str) -> dict[str, str]:
    """Guest path -> sha256 of every regular file below mountpoint."""
    found = {}
    for dirpath, _, files in os.walk(mountpoint):
        for name in files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            with open(full, 'rb') as f:
                found['/' + os.path.relpath(full, mountpoint)] = \
                    hashlib.sha256(f.read()).hexdigest()
    return found
