"""Killing a page rewrite at random points never leaves a broken
checkpoint: after ``sparc checkpoint recover`` the file is byte for byte
either the original or the completely rewritten one, and libvirt restores
whichever it is."""

import hashlib
import multiprocessing
import os
import random
import shutil
import signal
import time

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import rewrite
from sparc_nova.cmd import sparc

KILLS_PER_MODE = 100


def sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 22), b''):
            h.update(chunk)
    return h.hexdigest()


def marker_frames(path, marker):
    with checkpoint.open_checkpoint(path) as ck:
        return [pfn for pfn in ck.memory.page_numbers()
                if marker in ck.memory.read_page(int(pfn))]


def worker(path, frames, in_place):
    with checkpoint.open_checkpoint(path) as ck:
        rewrite.rewrite_pages(ck, {int(f): bytes(4096) for f in frames},
                              in_place=in_place)


def run_worker(path, frames, in_place, kill_after=None):
    ctx = multiprocessing.get_context('fork')
    proc = ctx.Process(target=worker, args=(path, frames, in_place))
    start = time.monotonic()
    proc.start()
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    return time.monotonic() - start, proc.exitcode


@pytest.fixture(scope='module')
def saved(make_guest, module_dir, guest_image):
    g = make_guest(memory_mib=256, vcpus=1)
    g.start_workload('hold 3 --pages 256')
    path = os.path.join(module_dir, 'original.save')
    g.suspend()
    g.save(path)
    marker = guest_image.marker(3).encode()
    frames = marker_frames(path, marker)
    assert len(frames) >= 256
    return g, path, frames, marker


@pytest.mark.slow
@pytest.mark.parametrize('in_place', [False, True],
                         ids=['rewrite', 'in-place'])
def test_kill_anywhere(saved, module_dir, in_place):
    g, original, frames, marker = saved
    target = os.path.join(module_dir, 'target.save')
    shutil.copy(original, target)
    duration, code = run_worker(target, frames, in_place)
    assert code == 0
    done_hash = sha(target)
    orig_hash = sha(original)
    assert done_hash != orig_hash
    outcomes = {'original': 0, 'scrubbed': 0}
    rng = random.Random(1234)
    for _ in range(KILLS_PER_MODE):
        shutil.copy(original, target)
        run_worker(target, frames, in_place,
                   kill_after=rng.uniform(0, duration * 1.2))
        assert sparc.main(['checkpoint', 'recover', target]) == 0
        h = sha(target)
        assert h in (orig_hash, done_hash), 'broken checkpoint after kill'
        outcomes['original' if h == orig_hash else 'scrubbed'] += 1
        leftovers = [n for n in os.listdir(module_dir)
                     if n.startswith('.target.save.')]
        assert leftovers == []
    print('kills (%s): %s' % ('in-place' if in_place else 'rewrite', outcomes))
    # Both outcomes happen: the kills landed before and after the commit
    # point.
    assert outcomes['original'] > 0 and outcomes['scrubbed'] > 0, outcomes
    # Whichever remains, libvirt restores it and the guest runs.
    for content in (original, None):
        if content:
            shutil.copy(content, target)
        else:
            shutil.copy(original, target)
            run_worker(target, frames, in_place)
        beat = g.heartbeat()
        g.restore(target)
        g.resume()
        g.wait_for(r'HEARTBEAT %d\b' % (beat + 2), timeout=60, since=0)
        assert g.oopses() == []
        g.suspend()
        g.save(os.path.join(module_dir, 'scratch.save'))
