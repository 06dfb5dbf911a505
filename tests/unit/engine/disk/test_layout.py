"""The layout read in the appliance (a stand-in handle with libguestfs'
calls).
"""

import pytest

from sparc_nova.engine.disk import layout
from sparc_nova import exception


class Handle:
    def __init__(self, table, types, filesystems, signatures=None):
        self.table = table
        self.types = types              # partnum -> mbr id or gpt guid
        self.filesystems = filesystems
        self.signatures = signatures or {}  # what blkid finds

    def vfs_type(self, device):
        return self.signatures.get(device, '')

    def list_partitions(self):
        return ['/dev/sda%d' % n for n in sorted(self.types)]

    def part_to_dev(self, partition):
        return '/dev/sda'

    def part_to_partnum(self, partition):
        return int(partition[len('/dev/sda'):])

    def part_get_parttype(self, disk):
        return self.table

    def part_get_mbr_id(self, disk, number):
        return self.types[number]

    def part_get_gpt_type(self, disk, number):
        return self.types[number]

    def list_filesystems(self):
        return dict(self.filesystems)


def test_extended_and_bios_boot_partitions_hold_no_filesystem():
    g = Handle('msdos', {1: 0x83, 2: 0x05, 5: 0x83},
               {'/dev/sda1': 'ext4', '/dev/sda5': 'xfs'})
    assert layout.no_filesystem_partitions(g, 'img') == {'/dev/sda2'}
    bios = '21686148-6449-6e6f-744e-656564454649'
    g = Handle('gpt', {1: bios, 2: '0FC63DAF-8483-4772-8E79-3D69D8477DE4'},
               {'/dev/sda1': 'unknown', '/dev/sda2': 'ext4'})
    assert layout.no_filesystem_partitions(g, 'img') == {'/dev/sda1'}


@pytest.mark.parametrize('types,filesystems,fragment', [
    ({1: 0x83}, {'/dev/sda1': 'unknown'}, 'partitions hold no filesystem'),
    ({}, {'/dev/sda': 'unknown'}, 'no partition table and no filesystem'),
])
def test_nothing_to_scrub(types, filesystems, fragment):
    with pytest.raises(exception.DiskImageError) as e:
        layout.no_filesystem_partitions(Handle('msdos', types, filesystems),
                                        'img.raw')
    assert 'nothing to scrub' in str(e.value)
    assert fragment in str(e.value)


def test_luks_without_key_is_something_to_scrub():
    # libguestfs lists no filesystem for a LUKS volume it has no key
    # for; blkid still sees its signature (the scrub then stops with "no
    # key", not "nothing to scrub").
    g = Handle('msdos', {1: 0x83}, {}, {'/dev/sda1': 'crypto_LUKS'})
    assert layout.no_filesystem_partitions(g, 'img') == set()
    with pytest.raises(exception.DiskImageError, match='nothing to scrub'):
        layout.no_filesystem_partitions(Handle('msdos', {1: 0x83}, {}),
                                        'img')
