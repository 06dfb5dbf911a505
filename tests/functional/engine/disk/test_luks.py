"""LUKS: without a key the scrub fails before the appliance starts and
writes nothing; with the key the files inside are scrubbed and the
volume is reported as verified in its decrypted view only.
"""

import os

import pytest

from sparc_nova.engine import disk
from sparc_nova.engine.disk import appliance
from sparc_nova import exception
from tests.functional.engine.disk import checks
from tests.functional.engine.disk import hostcheck
from tests.functional.engine.disk import images


def _rules():
    return disk.Rules(images.EXCLUDE_PATHS, images.PRESETS)


@pytest.mark.slow
def test_no_key_fails_closed(appliance_images, disk_dir, monkeypatch):
    out_dir = os.path.join(disk_dir, 'luks-nokey')
    os.makedirs(out_dir, exist_ok=True)

    def no_launch(*args, **kwargs):
        raise AssertionError('the appliance must not start')
    monkeypatch.setattr(appliance, 'launch', no_launch)
    with pytest.raises(exception.DiskScrubError) as e:
        disk.scrub_image(appliance_images['luks'],
                         os.path.join(out_dir, 'out.qcow2'), _rules())
    assert e.value.device == '/dev/sda1'
    assert 'LUKS volume has no key' in str(e.value)
    assert os.listdir(out_dir) == []


@pytest.mark.slow
def test_wrong_key_fails_closed(appliance_images, disk_dir):
    out_dir = os.path.join(disk_dir, 'luks-wrongkey')
    os.makedirs(out_dir, exist_ok=True)
    with pytest.raises(exception.DiskScrubError) as e:
        disk.scrub_image(appliance_images['luks'],
                         os.path.join(out_dir, 'out.qcow2'), _rules(),
                         disk.ScrubOptions(
                             luks_keys={'/dev/sda1': 'not the key'}))
    assert e.value.device == '/dev/sda1'
    assert 'could not be opened' in str(e.value)
    assert os.listdir(out_dir) == []


@pytest.fixture(scope='module')
def scrubbed_luks(appliance_images, disk_dir):
    dst = os.path.join(disk_dir, 'luks-scrubbed.qcow2')
    report = disk.scrub_image(
        appliance_images['luks'], dst, _rules(),
        disk.ScrubOptions(luks_keys={'/dev/sda1': images.LUKS_KEY}))
    return dst, report.to_dict()


@pytest.mark.slow
def test_with_key_scrubbed_in_decrypted_view(scrubbed_luks, disk_tree,
                                             disk_dir, appliance_images):
    dst, report = scrubbed_luks
    checks.assert_report(report, disk_tree, disk_tree.marker)
    roles = {v['role']: v for v in report['volumes']}
    assert roles['luks']['verification'] == 'verified-decrypted-view-only'
    assert roles['filesystem']['verification'] == \
        'verified-decrypted-view-only'
    # The decrypted view, read through the host's dm-crypt: the marker is
    # there before and gone after.
    counts = []
    for image in (appliance_images['luks'], dst):
        raw = hostcheck.to_raw(image, disk_dir)
        try:
            with hostcheck.mounted(raw, 'luks') as (devices, _):
                counts.append(hostcheck.count_marker(devices[0],
                                                     disk_tree.marker))
        finally:
            os.unlink(raw)
    assert counts[0] > 0 and counts[1] == 0


@pytest.mark.slow
def test_with_key_kept_files_identical(scrubbed_luks, disk_tree, disk_dir):
    checks.assert_kept_identical(scrubbed_luks[0], 'luks', 'ext4',
                                 disk_tree, disk_dir)
