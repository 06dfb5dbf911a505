"""scrub_image on XFS, btrfs, a Debian-like OS on LVM (root and /home
logical volumes mounted as its fstab says, a swap LV, free extents), and
a GPT disk whose guest put its files on a partition typed BIOS boot;
images built in one appliance launch per session, one scrub per kind.
"""

import os

import pytest

from sparc_nova.engine import disk
from tests.functional.engine.disk import checks
from tests.functional.engine.disk import hostcheck
from tests.functional.engine.disk import images

pytestmark = pytest.mark.slow

KINDS = {'xfs': 'xfs', 'btrfs': 'btrfs', 'lvm': 'ext4', 'gpt': 'ext4'}


@pytest.fixture(scope='module')
def scrubs(appliance_images, disk_dir):
    """Scrub each kind once, on first use."""
    done = {}

    def scrub(kind):
        if kind not in done:
            dst = os.path.join(disk_dir, '%s-scrubbed.qcow2' % kind)
            rules = disk.Rules(images.EXCLUDE_PATHS, images.PRESETS)
            # XFS also exercises hashing every kept file.
            options = images.scrub_options(
                verify_kept='all' if kind == 'xfs' else 'sample')
            report = disk.scrub_image(appliance_images[kind], dst, rules,
                                      options)
            done[kind] = (dst, report.to_dict())
        return done[kind]
    return scrub


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_no_marker_left(kind, scrubs, appliance_images, disk_tree,
                        disk_dir):
    dst, _ = scrubs(kind)
    checks.assert_no_marker(appliance_images[kind], dst, disk_tree.marker,
                            disk_dir)


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_kept_files_identical_and_fsck_clean(kind, scrubs, disk_tree,
                                             disk_dir):
    dst, _ = scrubs(kind)
    checks.assert_kept_identical(dst, 'lvm' if kind == 'lvm' else 'plain',
                                 KINDS[kind], disk_tree, disk_dir)


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_report(kind, scrubs, disk_tree):
    _, report = scrubs(kind)
    checks.assert_report(report, disk_tree, disk_tree.marker)
    filesystems = [v for v in report['volumes'] if v['role'] == 'filesystem']
    assert {v['fstype'] for v in filesystems} == {KINDS[kind]}
    assert all(v['verification'] == 'verified' for v in report['volumes'])
    assert report['verified'] is True


def test_xfs_directories_rebuilt_and_every_kept_file_hashed(scrubs,
                                                            disk_tree):
    _, report = scrubs('xfs')
    assert report['kept_files_checked'] >= len(disk_tree.kept)
    # One filesystem, not inspected: the OS is named from os-release.
    assert report['operating_system'] == \
        'debian Debian GNU/Linux 12 (bookworm)'
    (volume,) = report['volumes']
    assert any(s.startswith('directory rebuilt') for s in volume['steps'])
    assert 'log zeroed' in volume['steps']


def test_btrfs_rebuilt(scrubs):
    _, report = scrubs('btrfs')
    (volume,) = report['volumes']
    assert any(s.startswith('rebuilt') for s in volume['steps'])


def test_lvm_os_layout(scrubs):
    """The OS was found and its fstab followed: /home is its own LV."""
    _, report = scrubs('lvm')
    assert report['operating_system'].startswith('debian')
    by_device = {v['device']: v for v in report['volumes']}
    assert by_device['/dev/vgsparc/root']['mountpoint'] == '/'
    assert by_device['/dev/vgsparc/home']['mountpoint'] == '/home'
    assert by_device['/dev/vgsparc/home']['removed'] > 200
    assert by_device['/dev/vgsparc']['action'] == 'wiped'


def test_lvm_swap_wiped_and_recreated(scrubs, appliance_images, disk_dir):
    dst, report = scrubs('lvm')
    swap = [v for v in report['volumes'] if v['role'] == 'swap']
    assert [v['action'] for v in swap] == ['wiped']
    uuids = []
    for image in (appliance_images['lvm'], dst):
        raw = hostcheck.to_raw(image, disk_dir)
        try:
            with hostcheck.attached(raw, 'lvm') as devices:
                uuids.append(hostcheck.blkid(devices['swap']))
        finally:
            os.unlink(raw)
    assert uuids[0]['TYPE'] == uuids[1]['TYPE'] == 'swap'
    assert uuids[0]['UUID'] == uuids[1]['UUID']


def test_filesystem_on_a_partition_typed_bios_boot_is_scrubbed(scrubs):
    # The partition's type is the guest's word: a BIOS boot partition
    # holds no filesystem by design, but this one does, with the files
    # the rules remove. Skipping it would leave them in the output.
    _, report = scrubs('gpt')
    volumes = {v['device']: v for v in report['volumes']}
    assert volumes['/dev/sda1']['role'] == 'filesystem'
    assert volumes['/dev/sda1']['action'] == 'scrubbed'
    assert volumes['/dev/sda1']['removed'] > 0
    assert volumes['/dev/sda2']['role'] == 'filesystem'
