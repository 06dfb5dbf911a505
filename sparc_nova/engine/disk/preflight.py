"""Checks made on the host before the appliance starts: is the source an
image qemu can read in full, does it hold anything to scrub, can the
destination be written.

Every failure raises :class:`~sparc_nova.exception.DiskImageError` and
leaves nothing behind. The layout probe reads a raw file with util-linux
(``sfdisk``, ``blkid``) rather than parsing partition tables by hand.
"""

import dataclasses
import json
import os
import re
import subprocess
import tempfile

from sparc_nova import exception

#: Formats whose metadata ``qemu-img check`` can verify.
_CHECKABLE = ('qcow2', 'qed', 'vdi', 'vhdx', 'vmdk', 'parallels')

#: ``qemu-img check`` exit codes that mean the image is usable
#: (0 clean, 3 leaked clusters only).
_CHECK_OK = (0, 3)

#: Partition types that hold no filesystem by design: GPT BIOS boot,
#: MBR extended containers.
_NO_FS_TYPES = ('21686148-6449-6e6f-744e-656564454649', '5', 'f', '85')

OUTPUT_FORMATS = ('qcow2', 'raw')


@dataclasses.dataclass
class SourceImage:
    """What ``qemu-img info`` says about the source.

    ``virtual_size`` is in bytes; ``backing_chain`` lists the backing
    files below ``path`` (flattened into the working copy).
    """
    path: str
    format: str
    virtual_size: int
    backing_chain: list[str]


@dataclasses.dataclass
class Region:
    """A partition (or the whole disk) of the working copy and the
    signature blkid finds on it (``''`` when none). Offsets in bytes.
    """
    name: str
    offset: int
    size: int
    part_type: str
    signature: str
    uuid: str = ''
    #: Partition number (1-based), 0 for the whole disk.
    number: int = 0

    @property
    def appliance_name(self) -> str:
        """The device name the appliance gives this region (the image is
        its first disk).
        """
        return '/dev/sda' if self.name == 'whole disk' else \
            '/dev/sda%d' % self.number


def _run(argv: list[str], path: str, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              check=False)
    except OSError as e:
        raise exception.DiskImageError(
            path, 'cannot run %s (%s): install it (see bindep.txt)'
            % (what, e.strerror)) from e


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else 'no message'


def inspect_source(path: str) -> SourceImage:
    """Refuse a source that is missing, not a regular file, unreadable by
    qemu, or whose metadata is corrupt or truncated.
    """
    if not os.path.exists(path):
        raise exception.DiskImageError(path, 'no such file')
    if not os.path.isfile(path):
        raise exception.DiskImageError(path, 'not a regular file')
    if not os.access(path, os.R_OK):
        raise exception.DiskImageError(path, 'not readable')
    result = _run(['qemu-img', 'info', '--output=json', '--backing-chain',
                   path], path, 'qemu-img')
    if result.returncode != 0:
        raise exception.DiskImageError(
            path, 'not an image qemu can open: %s'
            % _last_line(result.stderr))
    chain = json.loads(result.stdout)
    top = chain[0]
    fmt = top['format']
    if fmt in _CHECKABLE:
        check = _run(['qemu-img', 'check', '--output=json', '-f', fmt,
                      path], path, 'qemu-img')
        if check.returncode not in _CHECK_OK:
            try:
                detail = json.loads(check.stdout)
                why = '%d corruptions, %d check errors' % (
                    detail.get('corruptions', 0),
                    detail.get('check-errors', 0))
            except ValueError:
                why = _last_line(check.stderr)
            truncated = 'exceeding the end of the file' in check.stderr
            raise exception.DiskImageError(
                path, '%s image is %s (%s)' % (
                    fmt, 'truncated' if truncated else 'corrupt', why))
    return SourceImage(path=path, format=fmt,
                       virtual_size=int(top['virtual-size']),
                       backing_chain=[c['filename'] for c in chain[1:]])


def check_destination(dst: str, src: str, output_format: str) -> None:
    """Refuse a destination that is the source, a directory, or in a
    directory that cannot be written (a file is created and removed there
    to find out: permission bits say nothing for root or read-only
    mounts).
    """
    if output_format not in OUTPUT_FORMATS:
        raise exception.DiskImageError(
            dst, 'unknown output format %r (choose from %s)'
            % (output_format, ', '.join(OUTPUT_FORMATS)))
    if os.path.isdir(dst):
        raise exception.DiskImageError(dst, 'destination is a directory')
    if os.path.exists(dst) and os.path.samefile(dst, src):
        raise exception.DiskImageError(
            dst, 'destination is the source (the source is never '
                 'modified)')
    directory = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(directory):
        raise exception.DiskImageError(
            dst, 'destination directory %s does not exist' % directory)
    try:
        fd, probe = tempfile.mkstemp(prefix='.sparc-probe-', dir=directory)
    except OSError as e:
        raise exception.DiskImageError(
            dst, 'destination directory %s is not writable (%s)'
            % (directory, e.strerror)) from e
    os.close(fd)
    os.unlink(probe)


def _blkid(path: str, offset: int, size: int) -> tuple[str, str]:
    """(TYPE, UUID) of what blkid finds at ``offset``; ('', '') if
    nothing.
    """
    result = _run(['blkid', '-p', '-o', 'export', '-O', str(offset),
                   '-S', str(size), path], path, 'blkid')
    found = dict(line.partition('=')[::2]
                 for line in result.stdout.splitlines())
    return found.get('TYPE', ''), found.get('UUID', '')


def probe_layout(raw_path: str, display_path: str) -> list[Region]:
    """The partitions of a raw disk file and their signatures.

    :raises DiskImageError: when no partition carries any signature
        (a non-image, or a disk with no filesystem, LVM, LUKS or swap).
    """
    size = os.path.getsize(raw_path)
    result = _run(['sfdisk', '--json', raw_path], raw_path, 'sfdisk')
    regions = []
    if result.returncode == 0 and result.stdout.strip():
        table = json.loads(result.stdout)['partitiontable']
        sector = int(table.get('sectorsize', 512))
        for part in table.get('partitions', []):
            offset = int(part['start']) * sector
            length = int(part['size']) * sector
            signature, uuid = _blkid(raw_path, offset, length)
            number = int(re.search(r'(\d+)$', part['node']).group(1))
            regions.append(Region(
                name=part['node'], offset=offset, size=length,
                part_type=str(part.get('type', '')).lower(),
                signature=signature, uuid=uuid, number=number))
    else:
        signature, uuid = _blkid(raw_path, 0, size)
        regions.append(Region(name='whole disk', offset=0, size=size,
                              part_type='', signature=signature, uuid=uuid))
    if not any(r.signature for r in regions):
        what = ('a partition table whose partitions hold no filesystem'
                if regions[0].name != 'whole disk' else
                'no partition table and no filesystem')
        raise exception.DiskImageError(
            display_path, 'nothing to scrub: the disk has %s, LVM, LUKS '
                          'or swap signature (%s)' % (
                              what, 'not a disk image?'
                              if regions[0].name == 'whole disk' else
                              'empty disk?'))
    return regions


def holds_no_filesystem(region: Region) -> bool:
    """True for partitions that carry no filesystem by design."""
    return region.part_type in _NO_FS_TYPES


def check_luks_keys(regions: list[Region], keys, display_path: str) -> None:
    """Refuse, before the appliance starts, a LUKS partition for which
    ``keys`` (by ``/dev/sdaN``, ``UUID=...`` or bare UUID) has no key.
    LUKS volumes nested deeper (inside LVM) are checked in the appliance.
    """
    for region in regions:
        if region.signature != 'crypto_LUKS':
            continue
        names = (region.appliance_name, 'UUID=' + region.uuid, region.uuid)
        if not any(n in keys for n in names if n and n != 'UUID='):
            raise exception.DiskScrubError(
                display_path, 'LUKS volume has no key: its files cannot be '
                              'read or scrubbed (give a key for %s or '
                              'UUID=%s, or allow unverified volumes)'
                % (region.appliance_name, region.uuid or '?'),
                device=region.appliance_name)
