"""The layout read in the appliance: one blkid probe of every device (a
stand-in handle with libguestfs' calls and the appliance shell's output).
"""

import pytest

from sparc_nova.engine.disk import layout
from sparc_nova import exception

BIOS_BOOT = '21686148-6449-6e6f-744e-656564454649'
LINUX = '0fc63daf-8483-4772-8e79-3d69d8477de4'


def probe_output(*sections):
    """The probe's output for ``sections``: each a list of blkid lines
    (the kernel's device name first, as blkid prints it).
    """
    lines = []
    for number, section in enumerate(sections):
        lines.append('sparc-probe')
        lines.append('DEVNAME=/dev/sdb%d' % number)
        lines.extend(section)
    return '\n'.join(lines) + '\nsparc-rc=0\n'


def part(scheme, kind, fstype=None):
    lines = ['PART_ENTRY_SCHEME=' + scheme, 'PART_ENTRY_TYPE=' + kind]
    return (['TYPE=' + fstype] if fstype else []) + lines


class Handle:
    def __init__(self, partitions, output, devices=('/dev/sda',),
                 filesystems=None, md=()):
        self.partitions = list(partitions)
        self.devices = list(devices)
        self.output = output
        self.listed = filesystems or {}
        self.md = list(md)
        self.scripts = []
        self.list_calls = 0

    def list_partitions(self):
        return self.partitions

    def list_devices(self):
        return self.devices

    def list_md_devices(self):
        return self.md

    def list_filesystems(self):
        self.list_calls += 1
        return dict(self.listed)

    def get_pid(self):
        raise RuntimeError('no hypervisor is running')

    def debug(self, cmd, args):
        self.scripts.append(args[0])
        return self.output


def test_simple_layout_is_listed_from_the_probe_alone():
    g = Handle(['/dev/sda1', '/dev/sda2', '/dev/sda3', '/dev/sda5'],
               probe_output(part('dos', '0x83', 'ext4'),
                            part('dos', '0x5'),
                            part('dos', '0x82', 'swap'),
                            part('dos', '0x83', 'xfs')))
    found = layout.read(g, 'img')
    assert found.no_filesystem == {'/dev/sda2'}
    assert found.simple
    assert found.filesystems(g) == {'/dev/sda1': 'ext4',
                                    '/dev/sda3': 'swap',
                                    '/dev/sda5': 'xfs'}
    assert g.list_calls == 0
    # One appliance call probes every device, named as arguments.
    (script,) = g.scripts
    assert 'blkid -p' in script
    assert script.count('sparc_dev') >= 4


def test_gpt_bios_boot_partition_holds_no_filesystem():
    g = Handle(['/dev/sda1', '/dev/sda2'],
               probe_output(part('gpt', BIOS_BOOT),
                            part('gpt', LINUX, 'ext4')))
    found = layout.read(g, 'img')
    assert found.no_filesystem == {'/dev/sda1'}
    assert found.filesystems(g) == {'/dev/sda2': 'ext4'}


def test_a_filesystem_on_a_partition_typed_without_one_is_scrubbed():
    # The guest chose the partition's type: a filesystem it holds is
    # listed like any other (skipped, its files would stay unscrubbed).
    g = Handle(['/dev/sda1', '/dev/sda2'],
               probe_output(part('gpt', BIOS_BOOT, 'ext4'),
                            part('gpt', LINUX, 'ext4')))
    found = layout.read(g, 'img')
    assert found.no_filesystem == set()
    assert found.filesystems(g) == {'/dev/sda1': 'ext4', '/dev/sda2': 'ext4'}


def test_unpartitioned_disk_is_probed_whole():
    g = Handle([], probe_output(['TYPE=ext4']), devices=['/dev/sda'])
    found = layout.read(g, 'img')
    assert found.candidates == ['/dev/sda']
    assert found.filesystems(g) == {'/dev/sda': 'ext4'}


@pytest.mark.parametrize('sections,md', [
    ([part('dos', '0x8e', 'LVM2_member')], ()),
    ([part('gpt', LINUX, 'crypto_LUKS')], ()),
    ([part('gpt', LINUX, 'btrfs')], ()),
    ([part('dos', '0xfd', 'linux_raid_member')], ()),
    ([part('dos', '0x83', 'ext4'), part('dos', '0x83')], ()),   # none
    ([part('dos', '0x83', 'ext4')], ('/dev/md127',)),
    # blkid's refusal of ambivalent signatures: unclear.
    ([['blkid: error: /dev/sdb1: ambivalent result (probably more '
       'filesystems on the device, use wipefs(8) to see more details)']],
     ()),
    # Anything but blkid's own tags and plain values: unclear.
    ([part('dos', '0x83', 'ext4') + ['LABEL=home']], ()),
    ([['TYPE=ext4 x', 'PART_ENTRY_SCHEME=dos']], ()),
    ([['TYPE=ext4', 'TYPE=xfs']], ()),
])
def test_other_layouts_are_listed_by_libguestfs(sections, md):
    listed = {'/dev/sda1': 'from-libguestfs'}
    partitions = ['/dev/sda%d' % (n + 1) for n in range(len(sections))]
    g = Handle(partitions, probe_output(*sections), filesystems=listed,
               md=md)
    found = layout.read(g, 'img')
    assert not found.simple
    assert found.filesystems(g) == listed
    assert g.list_calls == 1


def test_unclear_probe_asks_libguestfs_for_the_signature():
    g = Handle(['/dev/sda1', '/dev/sda2'],
               probe_output(['garbage'], part('dos', '0x83', 'ext4')))
    found = layout.read(g, 'img')
    assert found.signature('/dev/sda1') is None
    assert found.signature('/dev/sda2') == 'ext4'
    assert found.signature('/dev/sdz') is None


def test_missing_and_extra_sections():
    assert [p.tags for p in layout.parse_probe(
        'sparc-probe\nTYPE=ext4\n', 2)] == [{'TYPE': 'ext4'}, None]
    with pytest.raises(RuntimeError, match='more devices'):
        layout.parse_probe('sparc-probe\nsparc-probe\n', 1)
    # A section of more lines than blkid prints is unclear.
    assert layout.parse_probe(
        'sparc-probe\n' + 'TYPE=ext4\n' * 20, 1)[0].tags is None


@pytest.mark.parametrize('partitions,sections,fragment', [
    (['/dev/sda1'], [part('dos', '0x83')], 'partitions hold no filesystem'),
    (['/dev/sda1'], [part('dos', '0x5')], 'partitions hold no filesystem'),
    ([], [[]], 'no partition table and no filesystem'),
])
def test_nothing_to_scrub(partitions, sections, fragment):
    g = Handle(partitions, probe_output(*sections))
    with pytest.raises(exception.DiskImageError) as e:
        layout.read(g, 'img.raw')
    assert 'nothing to scrub' in str(e.value)
    assert fragment in str(e.value)


def test_luks_without_key_is_something_to_scrub():
    # libguestfs lists no filesystem for a LUKS volume it has no key
    # for; blkid sees its signature (the scrub then stops with "no key",
    # not "nothing to scrub"). An unclear probe is not "nothing" either.
    for section in (part('dos', '0x83', 'crypto_LUKS'), ['garbage']):
        found = layout.read(Handle(['/dev/sda1'], probe_output(section)),
                            'img')
        assert found.no_filesystem == set()
