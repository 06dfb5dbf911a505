"""A guest with secrets, checkpointed: the fixture the engine tests share.

One guest per module runs:

* ``simple``: ``workload hold 1`` (sleeps with a timeout);
* ``threads``: ``hold 2 --threads 4 --pages 8``;
* ``pipe``: ``hold 3 --wait pipe`` (untimed ``read()`` on an idle pipe);
* ``futex``: ``hold 5 --wait futex`` (untimed futex wait);
* ``thp``: ``hold 8 --pages 2048`` (8 MiB of anonymous memory: with
  transparent huge pages on, partly PMD-mapped huge pages);
* ``control``: ``hold 4`` (never selected: its marker must survive);
* ``spray``: ``spray 6 1024`` (wrote its marker into 1024 pages and
  exited: the copies are in free memory).

The guest's own view (process list, pagemap frames) is captured just
before ``virsh save``.
"""

import dataclasses
import hashlib
import os
import subprocess
import sys
import time

SELECTED = ('simple', 'threads', 'pipe', 'futex', 'thp')
MARKERS = {'simple': 1, 'threads': 2, 'pipe': 3, 'control': 4, 'futex': 5,
           'spray': 6, 'thp': 8}


@dataclasses.dataclass
class Scenario:
    guest: object
    image: object
    save_path: str
    workdir: str
    pids: dict
    processes: list
    frames: dict
    save_seconds: float

    def marker(self, name: str) -> str:
        return self.image.marker(MARKERS[name])

    def selectors(self, names=SELECTED) -> list[str]:
        return ['pid:%d' % self.pids[n] for n in names]


def build(make_guest, image, workdir, **guest_kwargs) -> Scenario:
    g = make_guest(**guest_kwargs)
    pids = {
        'simple': g.start_workload('hold 1 --pages 16'),
        'threads': g.start_workload('hold 2 --threads 4 --pages 8'),
        'pipe': g.start_workload('hold 3 --wait pipe'),
        'futex': g.start_workload('hold 5 --wait futex'),
        'thp': g.start_workload('hold 8 --pages 2048'),
        'control': g.start_workload('hold 4'),
    }
    g.run('/bin/workload spray 6 1024; echo SPRAY""-END', 'SPRAY-END')
    time.sleep(1)
    procs = g.processes()
    frames = g.anon_frames([pids[n] for n in SELECTED + ('control',)])
    path = os.path.join(workdir, 'guest.save')
    t = time.monotonic()
    g.save(path)
    return Scenario(guest=g, image=image, save_path=path, workdir=workdir,
                    pids=pids, processes=procs, frames=frames,
                    save_seconds=time.monotonic() - t)


def sparc(*args, check=None) -> subprocess.CompletedProcess:
    """Run the ``sparc`` CLI; ``check`` is the expected exit code."""
    proc = subprocess.run([sys.executable, '-m', 'sparc_nova.cmd.sparc']
                          + [str(a) for a in args],
                          capture_output=True, text=True, timeout=600)
    if check is not None and proc.returncode != check:
        raise AssertionError('sparc %s exited %d (expected %d)\nstdout:\n%s'
                             '\nstderr:\n%s' % (' '.join(map(str, args)),
                                                proc.returncode, check,
                                                proc.stdout[-3000:],
                                                proc.stderr[-3000:]))
    return proc


def buildid_cache_entry(root: str, build_id: str) -> str:
    """``ROOT/BUILD_ID``, created readable by everyone: the sandboxed
    introspection reads the cache as the unprivileged sandbox user
    (pytest's tmp_path is private to root). Returns the entry's path.
    """
    entry = os.path.join(root, build_id)
    os.makedirs(entry, exist_ok=True)
    for d in (root, entry):
        os.chmod(d, 0o755)
    return entry


def wait_gone(guest, pids, timeout=20.0) -> list[dict]:
    """Poll the guest's process list until none of ``pids`` is left."""
    deadline = time.monotonic() + timeout
    while True:
        procs = guest.processes()
        alive = {p['pid'] for p in procs} & set(pids)
        if not alive or time.monotonic() > deadline:
            return procs
        time.sleep(1)


def end_to_end(sc, selected=SELECTED) -> dict:
    """Scrub ``sc`` through the CLI and check everything the issue asks
    of a scrub: no marker of a selected process or of the spray left,
    the control's marker intact, frames scrubbed == the guest's own
    pagemap, and after ``virsh restore`` the selected processes gone, the
    control alive, the guest healthy. Returns the report.
    """
    import json
    out = os.path.join(sc.workdir, 'scrubbed.save')
    report_path = os.path.join(sc.workdir, 'report.json')
    args = ['checkpoint', 'scrub', sc.save_path, '--output', out,
            '--report', report_path]
    for sel in sc.selectors(selected):
        args += ['--exclude-process', sel]
    sparc(*args, check=0)
    with open(report_path) as f:
        report = json.load(f)
    args = ['checkpoint', 'verify', out, '--format', 'json']
    for name in tuple(selected) + ('spray',):
        args += ['--marker', sc.marker(name)]
    res = sparc(*args, check=0)
    assert not json.loads(res.stdout)['found']
    res = sparc('checkpoint', 'verify', out, '--format', 'json',
                '--marker', sc.marker('control'), check=1)
    assert json.loads(res.stdout)['markers'][0]['in_memory'] > 0
    assert_frames_match(sc, report, selected)
    restore_and_check(sc, out, selected)
    return report


def assert_frames_match(sc, report, selected=SELECTED,
                        none_refused=False) -> None:
    """The frames a scrub report lists per selected process are the
    anonymous frames the guest's own pagemap showed (and, with
    ``none_refused``, none was refused).
    """
    by_pid = {p['pid']: p for p in report['processes']}
    for name in selected:
        pid = sc.pids[name]
        frames = {int(f, 16) for fl in by_pid[pid]['frames'].values()
                  for f in fl}
        assert frames == sc.frames[pid], name
        if none_refused:
            assert frames and not by_pid[pid]['refused'], name


def restore_and_check(sc, path, selected=SELECTED) -> None:
    """``virsh restore`` ``path``: the selected processes die (all
    threads, whatever they wait on), the control runs on, the guest keeps
    its heartbeat, can use its (scrubbed) free memory and shows no oops.
    """
    g = sc.guest
    g.restore(path)
    beat = g.heartbeat()
    pids = [sc.pids[n] for n in selected]
    procs = wait_gone(g, pids)
    alive = {p['pid'] for p in procs}
    assert not alive & set(pids), [p for p in procs if p['pid'] in pids]
    assert sc.pids['control'] in alive
    g.run('/bin/workload spray 7 2000; echo SPRAY""-END', 'SPRAY-END',
          timeout=120)
    time.sleep(2)
    assert g.heartbeat() > beat
    assert g.oopses() == []
    assert 'memory corruption' not in g.console_text()


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()
