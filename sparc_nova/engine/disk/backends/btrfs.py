"""Btrfs.

Btrfs never overwrites in place, and deleting a small (inline) file
leaves its bytes in the unused middle of the live metadata leaf that held
it: neither overwriting, unlinking, balancing nor trimming removes them.
What is proven to remove every old extent is a rebuild: the kept tree is
copied out (with xattrs, ACLs, SELinux labels and numeric owners), the
device is discarded and re-created with the same UUID, label, node size,
sector size and checksum type, its subvolumes are re-created at the same
paths (and the same default), and the tree is copied back.

Limits: one device per filesystem; read-only snapshots are refused (they
cannot be re-created as snapshots); subvolume IDs, inode numbers and
extent sharing between snapshots are not preserved.
"""

import os
import re

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk.backends import base
from sparc_nova.i18n import _P

__all__ = ['BtrfsBackend']

_TOP_LEVEL = 'subvolid=5'


class BtrfsBackend(base.Backend):
    """Btrfs: removed files' extents are made unrecoverable by a
    rebuild of the filesystem (see the module docstring).
    """

    fstypes = ('btrfs',)
    overwrites_in_place = False

    def clean(self, g, device: str) -> list[str]:
        members = [d for d in g.btrfs_filesystem_show(device)
                   if d.strip().startswith('devid')]
        if len(members) > 1:
            raise RuntimeError('a btrfs filesystem on %d devices cannot '
                               'be rebuilt' % len(members))
        geometry = _geometry(appliance.run(
            g, ['btrfs', 'inspect-internal', 'dump-super', device]))
        g.mount_options(_TOP_LEVEL, device, '/')
        try:
            subvolumes = _subvolumes(g)
            default_id = g.btrfs_subvolume_get_default('/')
            tarball = os.path.join(self.workdir, 'btrfs-tree.tar')
            g.tar_out('/', tarball, numericowner=True, xattrs=True,
                      selinux=True, acls=True)
        finally:
            g.umount('/')
        try:
            g.blkdiscard(device)
            if not g.blkdiscardzeroes(device):
                g.zero_device(device)
            appliance.run(g, ['mkfs.btrfs', '-q', '-f',
                              '-U', geometry['fsid'],
                              '-L', geometry['label'],
                              '-n', geometry['nodesize'],
                              '-s', geometry['sectorsize'],
                              '--csum', geometry['csum'], device])
            g.mount_options(_TOP_LEVEL, device, '/')
            try:
                new_ids = {}
                for sv_id, path in sorted(subvolumes.items(),
                                          key=lambda kv: kv[1].count('/')):
                    g.btrfs_subvolume_create('/' + path)
                    new_ids[sv_id] = _subvolume_id(g, path)
                if default_id in new_ids:
                    g.btrfs_subvolume_set_default(new_ids[default_id], '/')
                g.tar_in(tarball, '/', xattrs=True, selinux=True,
                         acls=True)
                g.sync()
                g.fstrim('/')
            finally:
                g.umount('/')
        finally:
            os.unlink(tarball)
        return ['rebuilt (kept tree copied out and back; old extents and '
                'metadata leaves discarded)',
                _P('%d subvolume re-created', '%d subvolumes re-created',
                   len(subvolumes)) % len(subvolumes)]

    def trim(self, g, mountpoint: str) -> None:
        """Nothing to do before the rebuild."""

    def check(self, g, device: str) -> None:
        appliance.run(g, ['btrfs', 'check', '--readonly', device])


def _geometry(dump_super: str) -> dict[str, str]:
    fields = {}
    for key in ('fsid', 'label', 'nodesize', 'sectorsize', 'csum_type'):
        m = re.search(r'^%s\s+(.*)$' % key, dump_super, re.M)
        fields[key] = m.group(1).strip() if m else ''
    csum = re.search(r'\((\w+)\)', fields['csum_type'])
    return {'fsid': fields['fsid'], 'label': fields['label'],
            'nodesize': fields['nodesize'] or '16384',
            'sectorsize': fields['sectorsize'] or '4096',
            'csum': csum.group(1) if csum else 'crc32c'}


def _subvolumes(g) -> dict[int, str]:
    """Subvolume ID -> path below the top level; refuses read-only
    snapshots.
    """
    found = {}
    for sv in g.btrfs_subvolume_list('/'):
        path = sv['btrfssubvolume_path']
        flags = dict(g.btrfs_subvolume_show('/' + path)).get('Flags', '')
        if 'readonly' in flags:
            raise RuntimeError('read-only subvolume %s cannot be rebuilt'
                               % path)
        found[int(sv['btrfssubvolume_id'])] = path
    return found


def _subvolume_id(g, path: str) -> int:
    for sv in g.btrfs_subvolume_list('/'):
        if sv['btrfssubvolume_path'] == path:
            return int(sv['btrfssubvolume_id'])
    raise RuntimeError('re-created subvolume %s not found' % path)
