"""LUKS: without a key the scrub fails before the appliance starts and
writes nothing; with the key the files inside are scrubbed and the
volume is reported as verified in its decrypted view only.
"""

import os

import pytest

from sparc_nova.engine import disk
from sparc_nova import exception
from tests.functional.engine.disk import checks
from tests.functional.engine.disk import hostcheck
from tests.functional.engine.disk import images


def _rules():
    return disk.Rules(images.EXCLUDE_PATHS, images.PRESETS)


@pytest.mark.slow
def test_no_key_fails_closed(appliance_images, disk_dir):
    """The LUKS header is read in the appliance, not on the host."""
    out_dir = os.path.join(disk_dir, 'luks-nokey')
    os.makedirs(out_dir, exist_ok=True)
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
    """The scrubbed image, its report, and the decrypted views of the
    source and of the result (read in one appliance: this host has no
    dm-crypt).
    """
    dst = os.path.join(disk_dir, 'luks-scrubbed.qcow2')
    report = disk.scrub_image(
        appliance_images['luks'], dst, _rules(),
        images.scrub_options(luks_keys={'/dev/sda1': images.LUKS_KEY}))
    views = hostcheck.decrypted_views([appliance_images['luks'], dst],
                                      images.LUKS_KEY, disk_dir)
    yield dst, report.to_dict(), views
    for view in views:
        os.unlink(view)


@pytest.mark.slow
def test_with_key_scrubbed_in_decrypted_view(scrubbed_luks, disk_tree):
    _, report, (src_view, dst_view) = scrubbed_luks
    checks.assert_report(report, disk_tree, disk_tree.marker)
    roles = {v['role']: v for v in report['volumes']}
    assert roles['luks']['verification'] == 'verified-decrypted-view-only'
    assert roles['filesystem']['verification'] == \
        'verified-decrypted-view-only'
    assert hostcheck.count_marker(src_view, disk_tree.marker) > 0
    assert hostcheck.count_marker(dst_view, disk_tree.marker) == 0


@pytest.mark.slow
def test_with_key_kept_files_identical(scrubbed_luks, disk_tree):
    checks.assert_tree_identical([scrubbed_luks[2][1]], 'ext4', disk_tree)
