"""Killing ``sparc image scrub`` at random points never leaves a half
image at the destination: it holds what it held before (nothing, or the
previous image) or a complete, valid, scrubbed image. Temporaries of a
killed scrub (the half-written destination, the working copy with the
unscrubbed data) are removed by the next scrub into the same place.

Kills: ``SPARC_CRASH_KILLS`` (see tests/functional/crash.py).
"""

import json
import os
import random
import shutil
import subprocess

import pytest

from tests.functional import crash
from tests.functional.engine.disk import images
from tests.functional.engine import scenario as scen

pytestmark = pytest.mark.slow


def _virtual_size(path: str) -> int:
    info = subprocess.run(['qemu-img', 'info', '--output=json', path],
                          capture_output=True, text=True, check=True)
    return json.loads(info.stdout)['virtual-size']


def assert_complete(dst: str, src: str, marker: str) -> None:
    """``dst`` is a whole qcow2 image of ``src``'s size without the
    marker.
    """
    check = subprocess.run(['qemu-img', 'check', '-f', 'qcow2', dst],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _virtual_size(dst) == _virtual_size(src)
    crash.run_sparc(['image', 'verify', dst, '--marker', marker])


#: Kills of the disk scrub per run of the test.
DISK_KILLS = 6


def test_kill_image_scrub(ext4_qcow2, disk_tree, disk_dir):
    directory = os.path.join(disk_dir, 'crash')
    os.makedirs(directory, exist_ok=True)
    dst = os.path.join(directory, 'out.qcow2')
    previous = os.path.join(directory, 'previous.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', previous,
                    '64M'], check=True)
    previous_hash = scen.sha256(previous)
    args = ['image', 'scrub', ext4_qcow2, '--output', dst]
    args += ['--exclude-path=' + glob for glob in images.EXCLUDE_PATHS]
    for preset in images.PRESETS:
        args += ['--preset', preset]
    duration, _ = crash.run_sparc(args)
    assert_complete(dst, ext4_qcow2, disk_tree.marker)

    outcomes = {'absent': 0, 'previous': 0, 'complete': 0}
    killed = stale = 0
    rng = random.Random(2468)
    # Every run starts the appliance (about 25 s under TCG): the two kills
    # at the commit point, then one random kill in each window below.
    kills = crash.kills_per_mode(default=DISK_KILLS)
    for i in range(kills):
        if os.path.exists(dst):
            os.unlink(dst)
        if i % 2:
            shutil.copy(previous, dst)
        # Half the kills anywhere; a quarter while the destination is
        # written and verified; a quarter around the rename (some runs
        # then end before the kill).
        low, high = ((0, 1), (0, 1), (0.8, 1.05), (0.95, 1.1))[i % 4]
        kill_after = rng.uniform(duration * low, duration * high)
        if i < 2:
            # The first two kills land at the commit point, the rename
            # onto the destination: just before it (nothing there yet),
            # and just after it (over the previous image).
            hold = (crash.BEFORE_COMMIT, crash.AFTER_COMMIT)[i]
            _, code, _ = crash.run_sparc_held(args, dst, hold)
        else:
            _, code = crash.run_sparc(args, kill_after=kill_after)
        killed += code is None
        stale += code is None and any(
            n.startswith('.') for n in os.listdir(directory))
        if not os.path.exists(dst):
            assert not i % 2, 'the previous image was lost'
            outcomes['absent'] += 1
        elif i % 2 and scen.sha256(dst) == previous_hash:
            outcomes['previous'] += 1
        else:
            assert_complete(dst, ext4_qcow2, disk_tree.marker)
            outcomes['complete'] += 1
        if i < 2:
            assert code is None
            assert (os.path.exists(dst) and
                    scen.sha256(dst) != previous_hash) == bool(i), i
    print('image scrub kills: %d runs, %d killed (%d left temporaries), '
          '%s; full run %.1f s' % (kills, killed, stale, outcomes,
                                   duration))
    assert killed >= 2
    assert outcomes['absent'] + outcomes['previous'] > 0, outcomes
    assert outcomes['complete'] > 0, outcomes
    # The next scrub into the same place removes what killed ones left.
    crash.run_sparc(args)
    assert sorted(os.listdir(directory)) == ['out.qcow2', 'previous.qcow2']
