"""Disk images with marker files, built for the disk scrubber's tests.

Every image holds the same tree (:func:`populate`): files the rules
remove (a marker in their content, one marker only in a file name, a
2 MB file, many small files interleaved with kept small files so that
they share qcow2 clusters) and kept files; plus a marker file deleted
before the snapshot, so that its blocks are free but not empty.

ext4 on a partition is built without the appliance (``mkfs.ext4 -d``,
then debugfs deletes the file whose blocks must stay behind); LVM, LUKS,
xfs and btrfs images are built in one appliance launch.
"""

import dataclasses
import hashlib
import os
import random
import subprocess
import tarfile

from sparc_nova.conf import disk as disk_conf
from sparc_nova.engine.disk import options as disk_options

MIB = 1024 * 1024
PART_OFFSET = MIB

#: Rules that select exactly the removed files of :func:`populate`.
EXCLUDE_PATHS = ('/home/*/.ssh/**', '!**/*.pub', '!**/authorized_keys',
                 '/home/*/projects/note-*', '/home/*/big.bin',
                 '/home/*/cache/small-*')
PRESETS = ('shell-history', 'tmp')
LUKS_KEY = 'correct horse battery staple'
#: Where scrubs configured by default keep the appliance they boot (the
#: CLI tests use it through the configuration, the library tests through
#: :func:`scrub_options`).
APPLIANCE_CACHE = [o.default for o in disk_conf.opts
                   if o.name == 'disk_appliance_cache_dir'][0]


def scrub_options(**fields) -> disk_options.ScrubOptions:
    """ScrubOptions with ``fields``, booting the appliance a configured
    scrub boots (the host's kernel uncompressed).
    """
    return disk_options.ScrubOptions(appliance_cache_dir=APPLIANCE_CACHE,
                                     **fields)


@dataclasses.dataclass
class Tree:
    """The host directory a test image was filled from."""
    root: str
    marker: str
    removed: list[str]
    kept: dict[str, str]          # guest path -> sha256
    deleted: str                  # guest path deleted before the snapshot


def populate(root: str, marker: str, small_files: int = 200) -> Tree:
    """Fill ``root`` with the test tree; ``marker`` is a random ASCII
    string that appears only in removed and deleted files.
    """
    rng = random.Random(marker)
    m = marker.encode()
    removed = []

    def put(path: str, data: bytes, remove: bool) -> None:
        full = os.path.join(root, path.lstrip('/'))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(data)
        if remove:
            removed.append(path)

    put('/home/alice/.ssh/id_rsa',
        b'-----BEGIN OPENSSH PRIVATE KEY-----\n' + m +
        b'\n' + rng.randbytes(400).hex().encode() +
        b'\n-----END OPENSSH PRIVATE KEY-----\n', True)
    put('/home/alice/.ssh/id_rsa.pub', b'ssh-rsa AAAAB3Nza alice@vm\n', False)
    put('/home/alice/.ssh/authorized_keys', b'ssh-ed25519 AAAAC3 ops\n',
        False)
    put('/home/alice/.bash_history',
        b'ls\nexport TOKEN=' + m + b'\nmysql -p' + m + b'\n', True)
    put('/root/.bash_history', b'cat /etc/' + m + b'\n', True)
    put('/home/alice/projects/note-%s.txt' % marker,
        b'nothing secret in here but the name\n', True)
    put('/home/alice/projects/readme.txt', b'kept project readme\n', False)
    big = bytearray(rng.randbytes(2 * MIB))
    for offset in range(4096, len(big) - 64, 256 * 1024):
        big[offset:offset + len(m)] = m
    put('/home/alice/big.bin', bytes(big), True)
    for i in range(small_files):
        put('/home/alice/cache/small-%03d' % i,
            b'entry %d ' % i + m + b' ' + rng.randbytes(60).hex().encode(),
            True)
        put('/home/alice/cache/keep-%03d' % i,
            b'kept %d ' % i + rng.randbytes(60).hex().encode(), False)
    put('/tmp/session-token', m + b'\n', True)
    put('/etc/hostname', b'testvm\n', False)
    put('/srv/data/keep.bin', rng.randbytes(256 * 1024), False)
    put('/var/log/old.log', (b'deleted ' + m + b'\n') * 2000, False)
    kept = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            guest = '/' + os.path.relpath(full, root)
            if guest in removed or guest == '/var/log/old.log':
                continue
            with open(full, 'rb') as f:
                kept[guest] = hashlib.sha256(f.read()).hexdigest()
    return Tree(root, marker, removed, kept, '/var/log/old.log')


def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, **kwargs)


def partitioned_raw(path: str, size_mib: int) -> None:
    """A sparse raw file with an MBR and one Linux partition from 1 MiB
    to the end.
    """
    with open(path, 'wb') as f:
        f.truncate(size_mib * MIB)
    _run('sfdisk', '-q', path, input=b'label: dos\nstart=2048, type=83\n')


def ext4_image(tree: Tree, path: str, size_mib: int = 256,
               fmt: str = 'qcow2') -> str:
    """ext4 on a partition, filled with ``mkfs.ext4 -d``; the deleted
    file's blocks are freed with debugfs (so they keep their data).
    """
    raw = path + '.raw'
    partitioned_raw(raw, size_mib)
    fs_kib = (size_mib - 1) * 1024
    _run('mkfs.ext4', '-q', '-F', '-E', 'offset=%d' % PART_OFFSET,
         '-d', tree.root, raw, '%dk' % fs_kib)
    _run('debugfs', '-w', '-R', 'rm %s' % tree.deleted,
         '%s?offset=%d' % (raw, PART_OFFSET))
    return _finish(raw, path, fmt)


def _finish(raw: str, path: str, fmt: str) -> str:
    if fmt == 'raw':
        os.rename(raw, path)
    else:
        _run('qemu-img', 'convert', '-f', 'raw', '-O', fmt, raw, path)
        os.unlink(raw)
    return path


def _tarball(tree: Tree, path: str) -> str:
    with tarfile.open(path, 'w') as tar:
        for name in sorted(os.listdir(tree.root)):
            tar.add(os.path.join(tree.root, name), arcname=name)
    return path


#: Size in MiB of each appliance-built image (XFS needs 300 MiB; LUKS is
#: small because every free block of it must be zeroed through the
#: cipher).
APPLIANCE_SIZES = {'lvm': 384, 'xfs': 400, 'btrfs': 256, 'luks': 64,
                   'gpt': 320}
#: GPT type of a BIOS boot partition (no filesystem by design).
BIOS_BOOT = '21686148-6449-6E6F-744E-656564454649'
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian ' \
    b'GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
LVM_FSTAB = b"""/dev/vgsparc/root / ext4 defaults 0 1
/dev/vgsparc/home /home ext4 defaults 0 2
/dev/vgsparc/swap none swap sw 0 0
"""


def _make_os(g, marker: str) -> None:
    """Turn the mounted tree into a minimal Debian root that libguestfs
    inspection recognises (``/etc/fstab``, ``/etc/os-release``,
    ``/bin``).
    """
    g.mkdir_p('/bin')
    g.write('/etc/os-release', OS_RELEASE)
    g.write('/etc/debian_version', b'12.8\n')
    g.write('/etc/fstab', LVM_FSTAB)


def appliance_images(tree: Tree, directory: str) -> dict[str, str]:
    """qcow2 images built in one appliance launch. Returns kind -> path:

    * ``lvm``: a Debian-like OS on LVM: root and /home on their own ext4
      logical volumes (the tree's /home on the second), a swap LV whose
      pages hold the marker, and free extents;
    * ``xfs``, ``btrfs``: the tree on one partition (``xfs`` with an
      ``/etc/os-release`` and nothing else an inspection would know);
    * ``luks``: the tree on ext4 inside LUKS (key :data:`LUKS_KEY`);
    * ``gpt``: the tree on ext4 on the first partition of a GPT disk,
      typed BIOS boot by the guest (a type that holds no filesystem by
      design), and a second ext4 partition with an ``/etc/os-release``.
    """
    import guestfs

    from sparc_nova.engine.disk import appliance

    kinds = tuple(APPLIANCE_SIZES)
    tar = _tarball(tree, os.path.join(directory, 'tree.tar'))
    raws = {}
    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    g.set_backend('direct')
    g.set_backend_settings(appliance.backend_settings('auto'))
    for kind in kinds:
        raws[kind] = os.path.join(directory, kind + '.raw')
        with open(raws[kind], 'wb') as f:
            f.truncate(APPLIANCE_SIZES[kind] * MIB)
        g.add_drive_opts(raws[kind], format='raw')
    g.launch()
    try:
        for kind, disk in zip(kinds, g.list_devices()):
            part = disk + '1'
            if kind == 'gpt':
                g.part_init(disk, 'gpt')
                g.part_add(disk, 'p', 2048, 200 * 2048 - 1)
                g.part_add(disk, 'p', 200 * 2048, -34)
                g.part_set_gpt_type(disk, 1, BIOS_BOOT)
                g.mkfs('ext4', disk + '2')
                g.mount(disk + '2', '/')
                g.mkdir('/etc')
                g.write('/etc/os-release', OS_RELEASE)
                g.umount_all()
            else:
                g.part_disk(disk, 'mbr')
            if kind == 'lvm':
                g.pvcreate(part)
                g.vgcreate('vgsparc', [part])
                g.lvcreate('root', 'vgsparc', 128)
                g.lvcreate('home', 'vgsparc', 128)
                g.lvcreate('swap', 'vgsparc', 32)
                g.mkswap('/dev/vgsparc/swap')
                page = (b'swapped out ' + tree.marker.encode() + b' ') * 64
                for offset in range(MIB, 8 * MIB, 512 * 1024):
                    g.pwrite_device('/dev/vgsparc/swap', page, offset)
                g.mkfs('ext4', '/dev/vgsparc/root')
                g.mkfs('ext4', '/dev/vgsparc/home')
                g.mount('/dev/vgsparc/root', '/')
                g.mkdir('/home')
                g.mount('/dev/vgsparc/home', '/home')
                g.tar_in(tar, '/')
                _make_os(g, tree.marker)
            else:
                if kind == 'luks':
                    # PBKDF2 with few iterations: every unlock under TCG
                    # (builds, scrubs, checks) is instant, where the
                    # default Argon2 costs seconds and memory each time.
                    appliance.run(g, [
                        'sh', '-c', 'printf %s "$1" | cryptsetup luksFormat '
                        '--batch-mode --type luks2 --pbkdf pbkdf2 '
                        '--pbkdf-force-iterations 1000 --key-file=- "$2"',
                        'sh', LUKS_KEY, part])
                    g.cryptsetup_open(part, LUKS_KEY, 'sparcluks')
                    fs_dev, fstype = '/dev/mapper/sparcluks', 'ext4'
                else:
                    fs_dev, fstype = part, {'gpt': 'ext4'}.get(kind, kind)
                g.mkfs(fstype, fs_dev)
                g.mount(fs_dev, '/')
                g.tar_in(tar, '/')
                if kind == 'xfs':
                    # A single filesystem, so not inspected: its report
                    # names the OS from this file alone.
                    g.write('/etc/os-release', OS_RELEASE)
            g.sync()
            g.rm(tree.deleted)
            g.sync()
            g.umount_all()
            if kind == 'luks':
                g.cryptsetup_close('/dev/mapper/sparcluks')
        g.shutdown()
    finally:
        g.close()
    os.unlink(tar)
    return {kind: _finish(raws[kind], os.path.join(directory,
                                                   kind + '.qcow2'),
                          'qcow2') for kind in kinds}
