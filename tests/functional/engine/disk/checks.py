"""Assertions shared by the scrub tests: what every scrubbed image must
show.
"""

import json
import os

from sparc_nova.engine.disk import report as disk_report
from tests.functional.engine.disk import hostcheck


def assert_no_marker(src: str, dst: str, marker: str, workdir: str) -> None:
    """The source holds the marker (so the check can fail) and the
    destination holds it nowhere in its raw bytes.
    """
    src_raw = hostcheck.to_raw(src, workdir)
    dst_raw = hostcheck.to_raw(dst, workdir)
    try:
        assert hostcheck.count_marker(src_raw, marker) > 0
        assert hostcheck.count_marker(dst_raw, marker) == 0
    finally:
        os.unlink(src_raw)
        os.unlink(dst_raw)


def assert_kept_identical(dst: str, kind: str, fstype: str, tree,
                          workdir: str) -> None:
    """Every kept file is byte-identical, no removed file is left, and
    the filesystems pass a read-only fsck. ``kind``: plain or lvm.
    """
    raw = hostcheck.to_raw(dst, workdir)
    try:
        with hostcheck.attached(raw, kind) as by_name:
            devices = [by_name['root'], by_name['home']] \
                if kind == 'lvm' else [by_name['fs']]
            assert_tree_identical(devices, fstype, tree)
    finally:
        os.unlink(raw)


def assert_tree_identical(devices: list[str], fstype: str, tree) -> None:
    """:func:`assert_kept_identical` for filesystems already on block
    devices or in raw files (root first, then /home).
    """
    for device in devices:
        result = hostcheck.fsck(device, fstype)
        assert result.returncode == 0, result.stdout[-2000:]
    with hostcheck.mounted(devices, fstype) as mountpoint:
        found = hostcheck.tree_hashes(mountpoint)
    missing = [p for p in tree.kept if p not in found]
    changed = [p for p in tree.kept if p in found
               and found[p] != tree.kept[p]]
    assert not missing and not changed, (missing[:5], changed[:5])
    assert not [p for p in tree.removed if p in found]
    assert tree.deleted not in found


def assert_report(report: dict, tree, marker: str) -> None:
    """The report is JSON, counts what was removed, names no path and
    quotes no marker.
    """
    text = json.dumps(report)
    assert marker not in text
    assert report['residual'] == 0
    assert report['canaries'] > len(tree.removed)
    assert report['kept_files_identical'] is True
    assert report['kept_files_checked'] > 0
    removed_files = [r for r in report['removed'] if r['kind'] == 'file']
    assert len(removed_files) == len(tree.removed)
    assert all(r['path'].startswith('sha256:') for r in report['removed'])
    # Caller globs are digested like paths; presets keep their names.
    assert report['rules'][
        'sha256:' + disk_report.path_digest('/home/*/cache/small-*')] == 200
    assert report['rules']['preset:tmp'] == 1
    assert set(report['unmatched_rules']) <= {'preset:browser-profiles'}
