"""Checks of scrubbed images made on the host, independently of the
scrubber: raw marker counts, read-only loop devices (LVM volumes mapped
by their extents: the host needs no device-mapper) for fsck and file
hashes, and decrypted LUKS views.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile

from tests.functional.engine.disk import images


def run(*argv: str, check: bool = True, **kwargs):
    return subprocess.run(argv, check=check, capture_output=True, **kwargs)


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


def _loop(raw: str, offset: int, size: int | None = None) -> str:
    argv = ['losetup', '-f', '--show', '-r', '-o', str(offset)]
    if size is not None:
        argv += ['--sizelimit', str(size)]
    return run(*(argv + [raw])).stdout.decode().strip()


def _lv_extents(pv: str) -> dict[str, tuple[int, int]]:
    """LV name -> (byte offset in the PV, byte size), read from the LVM
    metadata (linear LVs; no device-mapper needed).
    """
    pe_start = int(json.loads(run(
        'pvs', '--reportformat', 'json', '--units', 'b', '--nosuffix',
        '-o', 'pe_start', pv).stdout)['report'][0]['pv'][0]['pe_start'])
    report = json.loads(run(
        'lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix',
        '-o', 'lv_name,seg_pe_ranges,vg_extent_size', 'vgsparc').stdout)
    extents = {}
    for lv in report['report'][0]['lv']:
        extent = int(lv['vg_extent_size'])
        first, last = lv['seg_pe_ranges'].rsplit(':', 1)[1].split('-')
        extents[lv['lv_name']] = (pe_start + int(first) * extent,
                                  (int(last) - int(first) + 1) * extent)
    return extents


@contextlib.contextmanager
def attached(raw: str, kind: str):
    """Read-only loop devices for the filesystems of a plain or LVM test
    image (LVM volumes are mapped by offset: this host has no
    device-mapper). Yields {name: device}: ``fs`` for a plain image,
    the LV names for LVM.
    """
    offset = partition_offset(raw)
    loops = [_loop(raw, offset)]
    try:
        if kind != 'lvm':
            yield {'fs': loops[0]}
            return
        devices = {}
        for name, (start, size) in _lv_extents(loops[0]).items():
            devices[name] = _loop(raw, offset + start, size)
            loops.append(devices[name])
        yield devices
    finally:
        for loop in loops:
            run('losetup', '-d', loop, check=False)


@contextlib.contextmanager
def mounted(devices: list[str], fstype: str):
    """Mount ``devices`` read-only, the first at the root and the second
    (if any) at /home; yields the mount point.
    """
    mountpoint = tempfile.mkdtemp(prefix='sparc-check-')
    options = {'xfs': 'ro,norecovery', 'btrfs': 'ro'}.get(fstype,
                                                          'ro,noload')
    done = []
    try:
        for device, target in zip(devices, (mountpoint,
                                            mountpoint + '/home')):
            run('mount', '-t', fstype, '-o', options, device, target)
            done.insert(0, target)
        yield mountpoint
    finally:
        for target in done:
            run('umount', target, check=False)
        os.rmdir(mountpoint)


def decrypted_views(images: list[str], key: str, workdir: str) -> list[str]:
    """The decrypted contents of the LUKS partition of each image, as raw
    files (one read-only appliance for all: this host has no dm-crypt).
    """
    import guestfs

    from sparc_nova.engine.disk import appliance

    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    g.set_backend('direct')
    g.set_backend_settings(appliance.backend_settings('auto'))
    for image in images:
        g.add_drive_opts(image, readonly=True)
    g.launch()
    views = []
    try:
        for index, device in enumerate(g.list_devices()):
            mapper = 'view%d' % index
            g.cryptsetup_open(device + '1', key, mapper, readonly=True)
            views.append(os.path.join(workdir, 'luks-view-%d-%d.raw'
                                      % (os.getpid(), index)))
            g.download('/dev/mapper/' + mapper, views[-1])
        g.shutdown()
    finally:
        g.close()
    return views


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
    """Read-only consistency check of an unmounted filesystem;
    returncode 0 means clean.
    """
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
