"""Killing a page rewrite, or the whole ``sparc checkpoint scrub``
command, anywhere never leaves a broken checkpoint: after ``sparc
checkpoint recover`` the file is byte for byte either the original or the
completely rewritten one, and libvirt restores whichever it is.

Every run proves both sides of the commit point (the rename of the
rewritten file, or of the in-place journal): a timed run locates it, one
kill lands just before the rename and one just after it (the process is
held there, tests/functional/crash.py), and the other kills are random,
half of them around the commit time.

Kills per mode: ``SPARC_CRASH_KILLS`` (see tests/functional/crash.py), at
least the two at the commit point.
"""

import gzip
import multiprocessing
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import rewrite
from sparc_nova.cmd import sparc
from sparc_nova import conf
from tests.functional import crash
from tests.functional.engine import scenario as scen

sha = scen.sha256


def marker_frames(path, marker):
    with checkpoint.open_checkpoint(path) as ck:
        return [pfn for pfn in ck.memory.page_numbers()
                if marker in ck.memory.read_page(int(pfn))]


def new_pages(frames, distinct=False):
    """Zeros for every frame (a scrub), or a page of its own for each
    (an unseal: in place, one PAGES group of the journal).
    """
    return {int(f): (struct.pack('<Q', int(f)) * 512 if distinct
                     else bytes(4096)) for f in frames}


def worker(path, frames, in_place, distinct=False):
    with checkpoint.open_checkpoint(path) as ck:
        rewrite.rewrite_pages(ck, new_pages(frames, distinct),
                              in_place=in_place,
                              journal_key=conf.CONF.sparc.journal_key_file)


def held_worker(path, frames, in_place, when, notify_fd, distinct=False):
    crash.hold_at_commit(commit_path(path, in_place), when, notify_fd)
    worker(path, frames, in_place, distinct)


def commit_path(path, in_place):
    """The rename that commits a rewrite: of the new file over ``path``,
    or, in place, of the journal.
    """
    return journal.journal_path(path) if in_place else path


def run_worker(path, frames, in_place, kill_after=None, distinct=False):
    ctx = multiprocessing.get_context('fork')
    proc = ctx.Process(target=worker, args=(path, frames, in_place,
                                            distinct))
    start = time.monotonic()
    proc.start()
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    return time.monotonic() - start, proc.exitcode


def run_worker_held(path, frames, in_place, when, distinct=False):
    """Run the rewrite held at its commit point (:mod:`crash`); SIGKILL it
    there unless ``when`` is TIME_COMMIT. Returns (seconds to the commit,
    seconds in all, exit code).
    """
    read_fd, write_fd = os.pipe()
    ctx = multiprocessing.get_context('fork')
    proc = ctx.Process(target=held_worker,
                       args=(path, frames, in_place, when, write_fd,
                             distinct))
    start = time.monotonic()
    proc.start()
    os.close(write_fd)
    try:
        reached = crash.wait_for_commit(read_fd, proc.is_alive, 900)
        committed = time.monotonic() - start
        if reached and when != crash.TIME_COMMIT:
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    finally:
        os.close(read_fd)
    assert reached, 'the rewrite of %s never reached its commit point' % path
    return committed, time.monotonic() - start, proc.exitcode


def kill_plan(rng, committed, duration):
    """The kills of one mode: (hold, seconds) pairs. First just before
    and just after the commit point (hold), then random times, every
    other one within 20 % of the commit time.
    """
    plan = [(crash.BEFORE_COMMIT, None), (crash.AFTER_COMMIT, None)]
    for i in range(max(crash.kills_per_mode() - len(plan), 0)):
        if i % 2:
            plan.append((None, rng.uniform(0, duration * 1.05)))
        else:
            plan.append((None, rng.uniform(committed * 0.8,
                                           min(committed * 1.2, duration))))
    return plan


@pytest.fixture(scope='module')
def saved(make_guest, module_dir, guest_image):
    g = make_guest(memory_mib=256, vcpus=1)
    pid = g.start_workload('hold 3 --pages 256')
    path = os.path.join(module_dir, 'original.save')
    g.suspend()
    g.save(path)
    marker = guest_image.marker(3).encode()
    frames = marker_frames(path, marker)
    assert len(frames) >= 256
    return g, path, frames, marker, pid


@pytest.mark.slow
@pytest.mark.parametrize('in_place', [False, True],
                         ids=['rewrite', 'in-place'])
def test_kill_anywhere(saved, module_dir, in_place):
    g, original, frames, marker, _ = saved
    target = os.path.join(module_dir, 'target.save')
    shutil.copy(original, target)
    committed, duration, code = run_worker_held(target, frames, in_place,
                                                crash.TIME_COMMIT)
    assert code == 0
    done_hash = sha(target)
    orig_hash = sha(original)
    assert done_hash != orig_hash
    outcomes = {'original': 0, 'scrubbed': 0}
    killed = 0
    plan = kill_plan(random.Random(1234), committed, duration)
    for hold, kill_after in plan:
        shutil.copy(original, target)
        if hold:
            _, _, code = run_worker_held(target, frames, in_place, hold)
        else:
            _, code = run_worker(target, frames, in_place,
                                 kill_after=kill_after)
        killed += code == -signal.SIGKILL
        assert sparc.main(['checkpoint', 'recover', target]) == 0
        h = sha(target)
        assert h in (orig_hash, done_hash), 'broken checkpoint after kill'
        outcome = 'original' if h == orig_hash else 'scrubbed'
        outcomes[outcome] += 1
        if hold:
            # Killed at the commit point: the rename decides.
            assert code == -signal.SIGKILL, code
            assert outcome == ('original' if hold == crash.BEFORE_COMMIT
                               else 'scrubbed'), (hold, outcome)
        leftovers = [n for n in os.listdir(module_dir)
                     if n.startswith('.target.save.')]
        assert leftovers == []
    print('rewriter kills (%s): %d runs, %d killed, %s; commit at %.2f s '
          'of a %.2f s run' % ('in-place' if in_place else 'rewrite',
                               len(plan), killed, outcomes, committed,
                               duration))
    # The kills landed before and after the commit point.
    assert killed >= 2
    assert outcomes['original'] > 0 and outcomes['scrubbed'] > 0, outcomes
    # Whichever remains, libvirt restores it and the guest runs.
    for content in (original, None):
        if content:
            shutil.copy(content, target)
        else:
            shutil.copy(original, target)
            run_worker(target, frames, in_place)
        restores(g, target, module_dir)


@pytest.mark.slow
def test_kill_anywhere_in_place_with_distinct_pages(saved, module_dir):
    """In place, pages that each get their own content (what an unseal
    writes: one PAGES group in the journal) end as the original or the
    complete file whenever the rewriter is killed.
    """
    _, original, frames, _, _ = saved
    target = os.path.join(module_dir, 'distinct.save')
    shutil.copy(original, target)
    committed, duration, code = run_worker_held(
        target, frames, True, crash.TIME_COMMIT, distinct=True)
    assert code == 0
    done_hash, orig_hash = sha(target), sha(original)
    with checkpoint.open_checkpoint(target) as ck:
        assert all(ck.memory.read_page(f) == page
                   for f, page in new_pages(frames, True).items())
    outcomes = {'original': 0, 'patched': 0}
    plan = kill_plan(random.Random(2468), committed, duration)
    for hold, kill_after in plan:
        shutil.copy(original, target)
        if hold:
            _, _, code = run_worker_held(target, frames, True, hold,
                                         distinct=True)
        else:
            _, code = run_worker(target, frames, True, kill_after=kill_after,
                                 distinct=True)
        assert sparc.main(['checkpoint', 'recover', target]) == 0
        h = sha(target)
        assert h in (orig_hash, done_hash), 'broken checkpoint after kill'
        outcomes['original' if h == orig_hash else 'patched'] += 1
    print('in-place kills, distinct pages: %d runs, %s; commit at %.2f s '
          'of a %.2f s run' % (len(plan), outcomes, committed, duration))
    assert outcomes['original'] > 0 and outcomes['patched'] > 0, outcomes


def restores(g, path, module_dir):
    """``virsh restore`` ``path``: the guest keeps its heartbeat and shows
    no oops; it is saved again (to a scratch file) for the next restore.
    """
    beat = g.heartbeat()
    g.restore(path)
    g.resume()
    g.wait_for(r'HEARTBEAT %d\b' % (beat + 2), timeout=60, since=0)
    assert g.oopses() == []
    g.suspend()
    g.save(os.path.join(module_dir, 'scratch.save'))


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['output', 'in-place'])
def test_kill_scrub_command(saved, module_dir, mode):
    """SIGKILL ``sparc checkpoint scrub`` (and its sandbox) anywhere:
    with ``--output`` the output is absent or complete and the source
    untouched; ``--in-place`` leaves the original or the scrubbed file
    once ``sparc checkpoint recover`` has run. A sample of the survivors
    (the last of each outcome) is restored by libvirt.
    """
    g, original, _, _, pid = saved
    source = os.path.join(module_dir, 'source.save')
    shutil.copy(original, source)
    orig_hash = sha(original)
    target = os.path.join(module_dir, 'scrub-target.save')

    def args():
        common = ['--exclude-process', 'pid:%d' % pid]
        if mode == 'output':
            return ['checkpoint', 'scrub', source, '--output', target] \
                + common
        shutil.copy(original, target)
        return ['checkpoint', 'scrub', target, '--in-place'] + common

    commit = journal.journal_path(target) if mode == 'in-place' else target
    duration, _, committed = crash.run_sparc_held(args(), commit,
                                                  crash.TIME_COMMIT)
    done_hash = sha(target)
    assert done_hash != orig_hash
    os.unlink(target)
    duration_again, _ = crash.run_sparc(args())
    assert sha(target) == done_hash, 'scrub output is not deterministic'
    outcomes = {'original': 0, 'scrubbed': 0}
    times = {'original': [], 'scrubbed': []}
    killed = journals = 0
    full = min(duration, duration_again)
    plan = kill_plan(random.Random(4321), committed, full)
    for hold, kill_after in plan:
        if os.path.exists(target):
            os.unlink(target)
        if hold:
            _, code, kill_after = crash.run_sparc_held(args(), commit, hold)
        else:
            _, code = crash.run_sparc(args(), kill_after=kill_after)
        killed += code is None
        journals += os.path.exists(journal.journal_path(target))
        assert sparc.main(['checkpoint', 'recover', target]) == 0
        if mode == 'output':
            assert sha(source) == orig_hash, 'source modified'
            h = sha(target) if os.path.exists(target) else orig_hash
        else:
            h = sha(target)
        assert h in (orig_hash, done_hash), 'broken checkpoint after kill'
        outcome = 'original' if h == orig_hash else 'scrubbed'
        outcomes[outcome] += 1
        times[outcome].append(kill_after)
        if hold:
            # Killed at the commit point: the rename decides.
            assert code is None
            assert outcome == ('original' if hold == crash.BEFORE_COMMIT
                               else 'scrubbed'), (hold, outcome)
        if os.path.exists(target):
            os.replace(target, os.path.join(
                module_dir, 'survivor-%s-%s.save' % (mode, outcome)))
        leftovers = [n for n in os.listdir(module_dir)
                     if '.sparc-' in n or n.endswith('.journal')]
        assert leftovers == []
    print('scrub command kills (%s): %d runs, %d killed, %s, %d journals '
          'recovered; commit at %.1f s of a %.1f s run; original up to '
          '%.2f s, scrubbed from %.2f s'
          % (mode, len(plan), killed, outcomes, journals, committed, full,
             max(times['original'] or [0]), min(times['scrubbed'] or [0])))
    assert killed >= 2
    assert outcomes['original'] > 0 and outcomes['scrubbed'] > 0, outcomes
    for outcome in ('original', 'scrubbed'):
        path = os.path.join(module_dir,
                            'survivor-%s-%s.save' % (mode, outcome))
        if os.path.exists(path):
            restores(g, path, module_dir)


def gzip_copy(path, dst):
    """``path`` as a gzip-compressed libvirt save image (what
    save_image_format = "gzip" writes).
    """
    raw = open(path, 'rb').read()
    cut = raw.index(b'QEVM')
    header = bytearray(raw[:cut])
    header[28:32] = (1).to_bytes(4, 'little')
    with open(dst, 'wb') as f:
        f.write(bytes(header) + gzip.compress(raw[cut:], compresslevel=1))
    os.chmod(dst, 0o600)


def kill_when(args, seen, timeout=120):
    """Run ``sparc ARGS`` in its own session and SIGKILL the group as soon
    as ``seen()`` is true. Returns whether it was killed.
    """
    proc = subprocess.Popen(
        [sys.executable, '-m', 'sparc_nova.cmd.sparc'] + list(args),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if seen():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.0005)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def sparc_leftovers(directory):
    return sorted(n for n in os.listdir(directory) if '.sparc-' in n)


@pytest.mark.slow
def test_sweep_after_killed_scrubs(saved, module_dir):
    """Real leftovers of killed scrubs: the decompressed stream of a
    gzip-compressed checkpoint (unscrubbed guest RAM) and the
    half-written output of ``--output`` runs, the journal (or its
    temporary) of ``--in-place`` runs. ``sparc checkpoint recover --sweep
    DIR`` removes or finishes every one; the in-place target ends up the
    original or the scrubbed file.
    """
    g, original, _, marker, pid = saved
    d = os.path.join(module_dir, 'sweep')
    os.mkdir(d, 0o700)
    gz = os.path.join(d, 'gz.save')
    gzip_copy(original, gz)
    out = os.path.join(d, 'out.save')
    common = ['--exclude-process', 'pid:%d' % pid]

    def streams():
        return {n for n in os.listdir(d) if n.startswith('.sparc-stream-')}

    def stream_written(earlier):
        """A new decompressed stream holds more than 32 MiB."""
        return lambda: any(os.path.getsize(os.path.join(d, n)) > 32 << 20
                           for n in streams() - earlier)

    killed_streams = 0
    for _ in range(2):
        killed_streams += kill_when(['checkpoint', 'scrub', gz, '--output',
                                     out] + common,
                                    stream_written(streams()))
    assert killed_streams == 2
    left = streams()
    assert len(left) == 2
    # Unscrubbed guest RAM (the start of the decompressed stream).
    for n in left:
        with open(os.path.join(d, n), 'rb') as f:
            assert f.read(4) == b'QEVM'

    target = os.path.join(d, 'raw.save')
    shutil.copy(original, target)
    os.chmod(target, 0o600)
    crash.run_sparc(['checkpoint', 'scrub', target, '--in-place'] + common)
    done_hash = sha(target)
    shutil.copy(original, target)
    orig_hash = sha(original)

    def journal_written():
        return os.path.lexists(journal.journal_path(target)) or \
            os.path.lexists(journal.temporary_path(target))

    killed_journal = kill_when(['checkpoint', 'scrub', target,
                                '--in-place'] + common, journal_written)
    assert killed_journal, 'the in-place scrub ended before its journal'
    assert journal.pending(target)

    before = sparc_leftovers(d)
    assert len(before) >= 3, before
    res = subprocess.run([sys.executable, '-m', 'sparc_nova.cmd.sparc',
                          'checkpoint', 'recover', '--sweep', d],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert sparc_leftovers(d) == []
    assert not os.path.exists(out)
    # Finished from its journal, or untouched (killed while the journal
    # was still a temporary).
    assert sha(target) in (orig_hash, done_hash)
    print('sweep after kills: %d leftovers (%s); %s' % (
        len(before), ', '.join(n.split('-')[0] + '-...' for n in before),
        res.stdout.strip().splitlines()[-1]))
