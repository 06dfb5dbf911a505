"""The volumes of an image as the appliance sees them, and the trees they
are mounted as.

Order of discovery: LUKS volumes are opened with the caller's keys, then
LVM is (re)scanned so that volume groups inside LUKS appear; then every
filesystem, swap area and unknown volume is classified. When libguestfs
inspection finds an operating system, its filesystems are mounted as the
guest's fstab arranges them (parents first) and form one tree; every
other filesystem is a tree of its own, mounted at ``/``.
"""

import dataclasses

from sparc_nova.engine.disk import layout as layout_mod
from sparc_nova.engine.disk import report as report_mod
from sparc_nova import exception

__all__ = ['CONTAINERS', 'ROLE_FILESYSTEM', 'ROLE_FOREIGN', 'ROLE_SWAP',
           'ROLE_LUKS', 'ROLE_OTHER', 'Volume', 'Tree', 'open_luks',
           'one_line', 'encrypting_mappers', 'classify', 'trees']

#: vfs types that contain other volumes rather than files.
CONTAINERS = ('crypto_LUKS', 'LVM2_member')

ROLE_FILESYSTEM = 'filesystem'
ROLE_FOREIGN = 'foreign-filesystem'
ROLE_SWAP = 'swap'
ROLE_LUKS = 'luks'
ROLE_OTHER = 'other'


@dataclasses.dataclass
class Volume:
    """A device and what the scrub does with it."""
    device: str
    fstype: str
    role: str
    report: report_mod.VolumeReport
    #: The LUKS mapper device this volume lives in, if any.
    encrypted_by: str = ''


@dataclasses.dataclass
class Tree:
    """Filesystems mounted together: ``mounts`` are (mountpoint,
    mountable, device) triples, parents first.
    """
    mounts: list[tuple[str, str, str]]
    os_root: str = ''
    #: Whether libguestfs inspection was run (see :func:`trees`): when it
    #: was not, the operating system is read from the mounted tree.
    inspected: bool = True

    def device_of(self, path: str) -> str:
        """The device holding ``path`` (longest mountpoint prefix)."""
        best = ('', '')
        for mountpoint, _, device in self.mounts:
            prefix = mountpoint.rstrip('/') + '/'
            if (path == mountpoint or path.startswith(prefix)
                    or mountpoint == '/') and len(mountpoint) >= len(
                    best[0]):
                best = (mountpoint, device)
        return best[1]


def _key_for(g, device: str, keys: dict[str, str]) -> str | None:
    if device in keys:
        return keys[device]
    try:
        uuid = g.vfs_uuid(device)
    except RuntimeError:
        uuid = ''
    for name in (uuid and 'UUID=' + uuid, uuid):
        if name and name in keys:
            return keys[name]
    return None


def _vfs_type(g, device: str, found: layout_mod.Layout) -> str:
    signature = found.signature(device)
    if signature is not None:
        return signature
    try:
        return g.vfs_type(device)
    except RuntimeError:
        return ''


def open_luks(g, image: str, keys: dict[str, str],
              allow_unverified: bool,
              found: layout_mod.Layout) -> list[Volume]:
    """Open every LUKS volume the caller has a key for, among the
    devices of ``found`` (:func:`.layout.read`).

    :raises DiskScrubError: a LUKS volume without a key (unless
        ``allow_unverified``) or a key the volume rejects.
    """
    opened = []
    for index, device in enumerate(found.candidates):
        if _vfs_type(g, device, found) != 'crypto_LUKS':
            continue
        volume = Volume(device, 'crypto_LUKS', ROLE_LUKS,
                        report_mod.VolumeReport(device, ROLE_LUKS,
                                                'crypto_LUKS'))
        key = _key_for(g, device, keys)
        if key is None:
            if not allow_unverified:
                raise exception.DiskScrubError(
                    image, 'LUKS volume has no key: its files cannot be '
                           'read or scrubbed (give a key for this device '
                           'or UUID=%s, or allow unverified volumes)'
                    % _safe_uuid(g, device), device=device)
            volume.report.action = 'skipped'
            volume.report.verification = report_mod.UNVERIFIED
            volume.report.reason = 'no key'
        else:
            mapper = 'sparc-luks%d' % index
            try:
                g.cryptsetup_open(device, key, mapper)
            except RuntimeError as e:
                raise exception.DiskScrubError(
                    image, 'LUKS volume could not be opened with the '
                           'given key (%s)' % one_line(e),
                    device=device) from e
            volume.encrypted_by = '/dev/mapper/' + mapper
            volume.report.action = 'opened'
            volume.report.verification = report_mod.VERIFIED_DECRYPTED
        opened.append(volume)
    if any(v.encrypted_by for v in opened):
        g.lvm_scan(True)
    return opened


def _safe_uuid(g, device: str) -> str:
    try:
        return g.vfs_uuid(device) or '?'
    except RuntimeError:
        return '?'


def one_line(error: Exception) -> str:
    """An error message on one line, at most 400 characters."""
    text = ' '.join(str(error).split())
    return (text[:397] + '...' if len(text) > 400 else text) or \
        error.__class__.__name__


def encrypting_mappers(g, luks: list[Volume]) -> dict[str, str]:
    """Device -> the LUKS mapper it lives in, for the mappers themselves
    and the logical volumes of volume groups whose PVs are mappers.
    """
    mappers = [v.encrypted_by for v in luks if v.encrypted_by]
    inside = {m: m for m in mappers}
    if not mappers:
        return inside
    pv_uuid = {}
    for mapper in mappers:
        try:
            pv_uuid[g.pvuuid(mapper)] = mapper
        except RuntimeError:
            continue
    for lv in g.lvs():
        vg = lv.split('/')[2]
        for uuid in g.vgpvuuids(vg):
            if uuid in pv_uuid:
                inside[lv] = pv_uuid[uuid]
    return inside


def classify(g, image: str, luks: list[Volume], no_filesystem: set[str],
             supported: set[str], allow_unverified: bool,
             filesystems: dict[str, str] | None = None) -> list[Volume]:
    """Every volume but the LUKS containers, with its role.

    ``no_filesystem`` names devices that hold no filesystem by design
    (BIOS boot partitions); ``supported`` are the vfs types a backend
    scrubs; ``filesystems`` are the filesystems as
    ``g.list_filesystems()`` names them (:meth:`.layout.Layout.filesystems`)
    when the caller has them and opened nothing since (None: listed here).

    :raises DiskScrubError: an unknown or unformatted volume (unless
        ``allow_unverified``).
    """
    inside = encrypting_mappers(g, luks)
    volumes = []
    if filesystems is None:
        filesystems = g.list_filesystems()
    for device, fstype in sorted(filesystems.items()):
        if fstype in CONTAINERS or device in no_filesystem:
            continue
        if fstype in supported:
            role = ROLE_FILESYSTEM
        elif fstype == 'swap':
            role = ROLE_SWAP
        elif fstype and fstype != 'unknown':
            role = ROLE_FOREIGN
        else:
            role = ROLE_OTHER
        volume = Volume(device, fstype, role,
                        report_mod.VolumeReport(device, role, fstype),
                        encrypted_by=inside.get(device, ''))
        if volume.encrypted_by:
            volume.report.verification = report_mod.VERIFIED_DECRYPTED
        if role == ROLE_OTHER:
            if not allow_unverified:
                raise exception.DiskScrubError(
                    image, 'unknown filesystem or unformatted volume: '
                           'cannot tell what it holds (allow unverified '
                           'volumes to skip it)', device=device)
            volume.report.action = 'skipped'
            volume.report.verification = report_mod.UNVERIFIED
            volume.report.reason = 'unknown content'
        volumes.append(volume)
    return volumes


def trees(g, volumes: list[Volume]) -> list[Tree]:
    """The operating systems' trees (fstab layout, parents first), then
    one tree per filesystem that no OS mounts.

    An image with one filesystem (not btrfs) is not inspected: its one
    tree mounts that filesystem at ``/`` whatever its fstab says (another
    entry can only name a device the image does not hold), and
    libguestfs' inspection costs 5-6 s under TCG (a udev settle before
    every probe, augeas reading fstab), a fifth of a scrub. A btrfs
    filesystem is inspected: its fstab mounts subvolumes.
    """
    mountable = {v.device for v in volumes
                 if v.role in (ROLE_FILESYSTEM, ROLE_FOREIGN)}
    if len(mountable) == 1 and not any(
            v.fstype == 'btrfs' for v in volumes if v.device in mountable):
        (device,) = mountable
        return [Tree([('/', device, device)], inspected=False)]
    result = []
    claimed = set()
    for root in g.inspect_os():
        mounts = []
        points = dict(g.inspect_get_mountpoints(root))
        for mountpoint in sorted(points, key=lambda m: (m.count('/'),
                                                        len(m))):
            if mountpoint != '/' and not mountpoint.startswith('/'):
                continue
            device = _device_of_mountable(points[mountpoint], mountable)
            if device not in mountable:
                continue
            mounts.append((mountpoint, points[mountpoint], device))
            claimed.add(device)
        if mounts and mounts[0][0] == '/':
            result.append(Tree(mounts, os_root=root))
    for device in sorted(mountable - claimed):
        result.append(Tree([('/', device, device)]))
    return result


def _device_of_mountable(mountable: str, devices: set[str]) -> str:
    """``btrfsvol:/dev/sda2/@home`` -> ``/dev/sda2`` (the longest known
    device the subvolume path starts with).
    """
    if not mountable.startswith('btrfsvol:'):
        return mountable
    rest = mountable[len('btrfsvol:'):]
    owners = [d for d in devices if rest.startswith(d + '/')]
    return max(owners, key=len) if owners else rest
