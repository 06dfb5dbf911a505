"""Temporaries of killed disk scrubs are removed; live ones are kept."""

import os

from sparc_nova.checkpoint import tempfiles
from sparc_nova.engine.disk import temporaries


def test_remove_stale(tmp_path):
    dst = tmp_path / 'out.qcow2'
    dead_dir = tmp_path / '.sparc-scrub-999999999-abc'
    dead_dir.mkdir()
    (dead_dir / 'work.raw').write_bytes(b'secret')
    live_dir = tmp_path / (temporaries.work_prefix() + 'abc')
    live_dir.mkdir()
    dead_dst = tmp_path / '.out.qcow2.sparc-999999999-abc'
    dead_dst.write_bytes(b'half')
    live_dst = tmp_path / (tempfiles.temp_prefix(str(dst)) + 'x')
    live_dst.write_bytes(b'half')
    other = tmp_path / '.other.qcow2.sparc-999999999-abc'
    other.write_bytes(b'')
    removed = temporaries.remove_stale(str(dst), str(tmp_path))
    assert sorted(removed) == sorted([str(dead_dir), str(dead_dst)])
    assert sorted(os.listdir(tmp_path)) == sorted(
        [live_dir.name, live_dst.name, other.name])
