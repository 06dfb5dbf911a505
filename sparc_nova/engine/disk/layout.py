"""The partition table and signatures of the working copy, read inside
the appliance.

The guest wrote every byte of them: they are parsed by the appliance's
kernel and blkid, never on the host. One blkid run probes every
partition and unpartitioned disk (:func:`read`); libguestfs'
``list_filesystems`` is asked only for a layout the probe cannot list
on its own (LVM, LUKS, md, btrfs subvolumes, unknown signatures), the
way a scrub needs it (:meth:`Layout.filesystems`).
"""

import dataclasses
import re

from sparc_nova.engine.disk import appliance
from sparc_nova import exception

__all__ = ['SIMPLE_TYPES', 'Probe', 'Layout', 'read', 'parse_probe']

#: MBR partition ids of extended partitions (containers of logical
#: partitions, no filesystem by design), as blkid prints them.
_NO_FS_MBR_IDS = ('0x5', '0xf', '0x85')
#: GPT partition types that hold no filesystem by design: BIOS boot.
_NO_FS_GPT_TYPES = ('21686148-6449-6e6f-744e-656564454649',)
#: Signatures that are the whole story of their device: it is listed
#: as that filesystem (or swap) and nothing else, exactly as
#: ``list_filesystems`` lists it. Any other signature (LVM and LUKS
#: containers, md members, btrfs and its subvolumes, unknown types) or
#: none at all sends the layout to ``list_filesystems``.
SIMPLE_TYPES = ('ext2', 'ext3', 'ext4', 'xfs', 'vfat', 'swap')

_PROBE_MARK = 'sparc-probe'
#: The tags asked of blkid: values from libblkid's own vocabulary (type
#: names, a partition table's scheme, a partition's type id), never the
#: guest's labels.
_TAGS = ('TYPE', 'PART_ENTRY_SCHEME', 'PART_ENTRY_TYPE')
_VALUE_RE = re.compile(r'[A-Za-z0-9_.-]{1,64}')
#: Most lines one device's probe may print (three tags; an error line).
_MAX_LINES = 8


@dataclasses.dataclass
class Probe:
    """What blkid said of one device: its tags, or None for a device
    it could not describe (an error such as ambivalent signatures, or
    output not in the expected form).
    """
    tags: dict[str, str] | None

    @property
    def type(self) -> str:
        """The signature's type ('' none); '' for an unclear probe."""
        return (self.tags or {}).get('TYPE', '')


@dataclasses.dataclass
class Layout:
    """The appliance's block devices as one probe found them.

    :ivar probes: :attr:`candidates` -> :class:`Probe`, in their order.
    :ivar no_filesystem: partitions that hold no filesystem by design
        (extended partitions, BIOS boot partitions).
    :ivar md_devices: ``g.list_md_devices()``.
    """
    probes: dict[str, Probe]
    no_filesystem: set[str]
    md_devices: list[str]

    @property
    def candidates(self) -> list[str]:
        """Partitions, then whole devices with no partition (the devices
        a volume can start on).
        """
        return list(self.probes)

    @property
    def simple(self) -> bool:
        """Whether the probe alone lists the filesystems: no md device,
        and every candidate that may hold one carries one of
        :data:`SIMPLE_TYPES`.
        """
        return not self.md_devices and all(
            self.probes[d].type in SIMPLE_TYPES
            for d in self.candidates if d not in self.no_filesystem)

    def signature(self, device: str) -> str | None:
        """blkid's type for ``device`` ('' none), None when it was not
        probed or the probe was unclear (ask ``g.vfs_type``).
        """
        probe = self.probes.get(device)
        if probe is None or probe.tags is None:
            return None
        return probe.type

    def filesystems(self, g) -> dict[str, str]:
        """Every mountable filesystem, swap area and unknown volume, as
        ``g.list_filesystems()`` names them: from the probe for a
        :attr:`simple` layout (what ``list_filesystems`` would return,
        without the seconds it takes under TCG: it runs parted, sfdisk
        and blkid once per device, each after a udev settle), from
        libguestfs otherwise.
        """
        if not self.simple:
            return g.list_filesystems()
        return {d: self.probes[d].type for d in self.candidates
                if d not in self.no_filesystem}


def read(g, image: str) -> Layout:
    """Probe the appliance's disks once.

    :raises DiskImageError: no partition or disk carries any signature
        (a non-image, or a disk with no filesystem, LVM, LUKS or swap);
        ``image`` is the path named in the error.
    :raises RuntimeError: a libguestfs call failed.
    """
    partitions = g.list_partitions()
    whole = [d for d in g.list_devices()
             if not any(re.fullmatch(re.escape(d) + r'p?\d+', p)
                        for p in partitions)]
    candidates = partitions + whole
    output = appliance.run(g, [
        'sh', '-c', 'for d; do echo %s; blkid -p %s -o export -- "$d"; '
        'done; exit 0' % (_PROBE_MARK, ' '.join('-s ' + t for t in _TAGS)),
        'sh'] + candidates)
    probes = dict(zip(candidates, parse_probe(output, len(candidates))))
    no_fs = {p for p in partitions if _holds_no_filesystem(probes[p])}
    layout = Layout(probes, no_fs, g.list_md_devices())
    if not any(probes[d].tags is None or probes[d].type
               for d in candidates if d not in no_fs):
        what = ('a partition table whose partitions hold no filesystem'
                if partitions else 'no partition table and no filesystem')
        raise exception.DiskImageError(
            image, 'nothing to scrub: the disk has %s, LVM, LUKS or swap '
                   'signature (%s)' % (what, 'empty disk?' if partitions
                                       else 'not a disk image?'))
    return layout


def parse_probe(output: str, count: int) -> list[Probe]:
    """The :class:`Probe` of each of ``count`` devices from the probe's
    output (a mark line, then blkid's ``KEY=value`` lines, per device).

    A device whose lines are not all expected tags with plain values
    (blkid's error for ambivalent signatures, anything else) gets an
    unclear probe; missing devices too.

    :raises RuntimeError: more device sections than devices.
    """
    sections = []
    for line in output.splitlines():
        if line == _PROBE_MARK:
            if len(sections) == count:
                raise RuntimeError('blkid probe: more devices than asked')
            sections.append([])
        elif sections:
            sections[-1].append(line)
    probes = [_parse_section(lines) for lines in sections]
    return probes + [Probe(None)] * (count - len(probes))


def _parse_section(lines: list[str]) -> Probe:
    # blkid names the device it probed first (the appliance kernel's
    # name for it: not the API's).
    lines = [line for line in lines
             if line.strip() and not line.startswith('DEVNAME=/dev/')]
    if len(lines) > _MAX_LINES:
        return Probe(None)
    tags = {}
    for line in lines:
        key, sep, value = line.partition('=')
        if not sep or key not in _TAGS or key in tags or \
                not _VALUE_RE.fullmatch(value):
            return Probe(None)
        tags[key] = value
    return Probe(tags)


def _holds_no_filesystem(probe: Probe) -> bool:
    """Whether the partition table says so and blkid finds nothing on
    it: a guest's filesystem on a partition typed BIOS boot is still
    listed, and scrubbed.
    """
    if probe.tags is None or probe.type:
        return False
    tags = probe.tags
    scheme = tags.get('PART_ENTRY_SCHEME')
    kind = tags.get('PART_ENTRY_TYPE', '').lower()
    if scheme == 'dos':
        return kind in _NO_FS_MBR_IDS
    if scheme == 'gpt':
        return kind in _NO_FS_GPT_TYPES
    return False
