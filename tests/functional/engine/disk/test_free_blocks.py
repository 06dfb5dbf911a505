"""The ext free-space cleaning that zeroes only what the working copy's
allocation map says can hold data (sparc_nova/engine/disk/free_blocks.py)
against free blocks the trim never discarded.

The trim is switched off: the blocks of the file deleted before the
snapshot (marker lines), of the removed files and of the old journal
(names) stay free but hold data in the working copy, exactly as on a host
whose filesystem cannot punch holes or a kernel that skips block groups.
The scrub must still leave 0 markers, without zerofree; and if the
zeroing did not reach the file, the host's check must fail the scrub.
"""

import os

import pytest

from sparc_nova.engine import disk
from sparc_nova.engine.disk.backends import ext
from sparc_nova.engine.disk import free_blocks
from sparc_nova import exception
from tests.functional.engine.disk import checks
from tests.functional.engine.disk import images

pytestmark = pytest.mark.slow


def _rules():
    return disk.Rules(images.EXCLUDE_PATHS, images.PRESETS)


def test_untrimmed_free_blocks_are_zeroed(ext4_qcow2, disk_tree,
                                          disk_dir, monkeypatch):
    monkeypatch.setattr(ext.ExtBackend, 'trim', lambda *a: None)
    out_dir = os.path.join(disk_dir, 'untrimmed')
    os.makedirs(out_dir, exist_ok=True)
    dst = os.path.join(out_dir, 'out.qcow2')
    report = disk.scrub_image(ext4_qcow2, dst, _rules(),
                              images.scrub_options())
    checks.assert_no_marker(ext4_qcow2, dst, disk_tree.marker, out_dir)
    (volume,) = report.volumes
    (note,) = [s for s in volume.steps if s.startswith('free blocks')]
    assert note.startswith('free blocks read as zeros ('), note
    # the deleted file alone holds 2000 marker lines in free blocks
    assert int(note.split('(')[1].split()[0]) >= 64 * 1024, note
    assert report.residual == 0


def test_a_zeroing_that_misses_fails_closed(ext4_qcow2, disk_dir,
                                            monkeypatch):
    monkeypatch.setattr(ext.ExtBackend, 'trim', lambda *a: None)
    monkeypatch.setattr(free_blocks, 'zero_ranges', lambda *a: None)
    out_dir = os.path.join(disk_dir, 'missed')
    os.makedirs(out_dir, exist_ok=True)
    with pytest.raises(exception.DiskScrubError,
                       match='free blocks still hold data'):
        disk.scrub_image(ext4_qcow2, os.path.join(out_dir, 'out.qcow2'),
                         _rules())
    assert os.listdir(out_dir) == []
