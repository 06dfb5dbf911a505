"""``sparc image scrub`` end to end on ext4 in a partition (image built
without the appliance): one scrub, several checks.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from sparc_nova.engine import disk
from sparc_nova.engine.disk.backends import base
from sparc_nova.engine.disk.backends import ext
from sparc_nova import exception
from tests.functional.engine.disk import checks
from tests.functional.engine.disk import images

pytestmark = pytest.mark.slow


def _sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def _sparc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'sparc_nova.cmd.sparc']
                          + list(args), capture_output=True, text=True,
                          check=False)


@pytest.fixture(scope='module')
def scrubbed(ext4_qcow2, disk_dir):
    dst = os.path.join(disk_dir, 'ext4-scrubbed.qcow2')
    report = os.path.join(disk_dir, 'ext4-report.json')
    before = _sha256(ext4_qcow2)
    argv = ['image', 'scrub', ext4_qcow2, '--output', dst,
            '--report', report]
    for glob in images.EXCLUDE_PATHS:
        argv += ['--exclude-path=' + glob]
    for preset in images.PRESETS:
        argv += ['--preset', preset]
    argv += ['--preset', 'browser-profiles']
    result = _sparc(*argv)
    assert result.returncode == 0, result.stderr
    with open(report) as f:
        data = json.load(f)
    return dict(result=result, dst=dst, report=data, src_sha=before)


def test_scrub_succeeds_with_progress(scrubbed):
    result = scrubbed['result']
    assert result.returncode == 0, result.stderr
    assert '[9/9] verifying the destination' in result.stderr
    assert 'verified' in result.stdout


def test_no_marker_left(scrubbed, ext4_qcow2, disk_tree, disk_dir):
    checks.assert_no_marker(ext4_qcow2, scrubbed['dst'], disk_tree.marker,
                            disk_dir)


def test_kept_files_identical_and_fsck_clean(scrubbed, disk_tree,
                                             disk_dir):
    checks.assert_kept_identical(scrubbed['dst'], 'plain', 'ext4', disk_tree,
                                 disk_dir)


def test_report(scrubbed, disk_tree):
    report = scrubbed['report']
    checks.assert_report(report, disk_tree, disk_tree.marker)
    (volume,) = report['volumes']
    assert volume['fstype'] == 'ext4'
    assert volume['verification'] == 'verified'
    assert any(s.startswith('free blocks read as zeros (')
               for s in volume['steps']), volume['steps']


def test_unmatched_preset_reported(scrubbed):
    assert scrubbed['report']['unmatched_rules'] == [
        'preset:browser-profiles']
    assert scrubbed['report']['rules']['preset:browser-profiles'] == 0


def test_source_untouched(scrubbed, ext4_qcow2):
    assert _sha256(ext4_qcow2) == scrubbed['src_sha']


def test_verify_command(scrubbed, ext4_qcow2, disk_tree):
    clean = _sparc('image', 'verify', scrubbed['dst'], '--marker',
                   disk_tree.marker)
    assert clean.returncode == 0, clean.stderr
    dirty = _sparc('image', 'verify', ext4_qcow2, '--marker',
                   disk_tree.marker, '--format', 'json')
    assert dirty.returncode == 1
    assert json.loads(dirty.stdout)['found'] > 0


def test_verification_catches_what_a_weaker_scrub_leaves(
        ext4_qcow2, disk_dir, monkeypatch):
    """With overwriting and free-space cleaning switched off, the removed
    files' bytes stay in free blocks: the self-verification must find
    them, fail, and leave no output.
    """
    monkeypatch.setattr(base.Backend, 'overwrite', lambda *a: None)
    monkeypatch.setattr(ext.ExtBackend, 'clean', lambda *a: [])
    out_dir = os.path.join(disk_dir, 'weak')
    os.makedirs(out_dir, exist_ok=True)
    with pytest.raises(exception.DiskVerificationError) as e:
        disk.scrub_image(ext4_qcow2, os.path.join(out_dir, 'out.qcow2'),
                         disk.Rules(images.EXCLUDE_PATHS, images.PRESETS))
    assert re.search(r'\d+ canar(y|ies) of \d+ removed files? (is|are) '
                     r'still readable', str(e.value)), str(e.value)
    assert os.listdir(out_dir) == []
