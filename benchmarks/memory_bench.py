"""How much memory a scrub takes, as the guest grows.

For each guest size: boot a test bed guest (TCG), have the excluded
process hold a share of guest RAM in pages of data (``--hold``, a
fraction of RAM), ``virsh save`` it (timed), then scrub the save image
to a new file with the installed CLI (``sparc checkpoint scrub FILE
--output OUT --report R``; the ``sparc_nova`` of ``PYTHONPATH``) while
this script samples, every ``--interval`` seconds, ``/proc/PID/status``
and ``/proc/PID/smaps_rollup`` of the CLI process and of its sandbox
child. Prints one row per size:

* ``RSS``: peak resident set (``VmHWM``), MiB; it includes the pages of
  the mapped checkpoint, which are page cache, shared and reclaimable;
* ``anon``: peak anonymous memory (``RssAnon``), MiB: the private
  memory the process holds beyond the page cache (what target 3 of the
  speed issue bounds);
* ``USS``: peak unique set (``Private_Clean + Private_Dirty`` of
  ``smaps_rollup``), MiB; it counts the checkpoint's page-cache pages
  mapped by this process alone, so it is close to RSS here.

Peaks of sampled values (``anon``, ``USS``) can miss a spike shorter
than the interval; ``VmHWM`` cannot. When the scrub's report carries
its own memory figures (``timings.*_mib``) they are printed too.

``--baseline DIR`` scrubs every image with the ``sparc_nova`` found in
DIR as well (e.g. ``git worktree add DIR COMMIT``), alternating, so that
before and after are measured in the same run. ``--keep`` keeps the
save images in ``--workdir``; ``--images`` scrubs kept images again
(``DIR/mem-MIB.save`` with ``DIR/mem-MIB.json``) without booting.

    python benchmarks/memory_bench.py --sizes 2048,4096,8192 \\
        --baseline /var/tmp/base --out mem.json

Needs what the functional tests need (libvirtd, qemu-system-x86).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.functional.testbed import bench as bench_guest  # noqa: E402
from tests.functional.testbed import build  # noqa: E402
from tests.functional.testbed import guest as guest_mod  # noqa: E402

#: The CLI as installed (its sparc_nova is the one of PYTHONPATH).
SPARC = os.environ.get('SPARC_CLI', '/opt/sparc/venv/bin/sparc')
#: ``/proc/PID/status`` fields sampled (kB).
STATUS_FIELDS = ('VmHWM', 'VmRSS', 'RssAnon', 'RssFile', 'VmPTE')


def status(pid: int) -> dict | None:
    """``/proc/PID/status``'s memory fields in kB, or None once the
    process is gone (or holds no memory: a zombie).
    """
    try:
        with open('/proc/%d/status' % pid) as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for ln in text.splitlines():
        key, _, value = ln.partition(':')
        if key in STATUS_FIELDS:
            out[key] = int(value.split()[0])
    return out if 'VmHWM' in out else None


def uss(pid: int) -> int | None:
    """``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps_rollup``
    in kB (None when unreadable).
    """
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            text = f.read()
    except OSError:
        return None
    total = 0
    for ln in text.splitlines():
        key, _, value = ln.partition(':')
        if key in ('Private_Clean', 'Private_Dirty'):
            total += int(value.split()[0])
    return total


def sandbox_children(pid: int) -> list[int]:
    """The descendants of ``pid`` running the sandbox child's program
    (a child between fork and exec still shows its parent's memory).
    """
    out = []
    for kid in children(pid):
        try:
            with open('/proc/%d/cmdline' % kid, 'rb') as f:
                cmd = f.read()
        except OSError:
            continue
        if b'sparc_nova.engine.sandbox' in cmd:
            out.append(kid)
    return out


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (``/proc/PID/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir('/proc/%d/task' % p)
        except OSError:
            continue
        for tid in tids:
            try:
                with open('/proc/%d/task/%s/children' % (p, tid)) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


class Peaks:
    """Peaks of one process's sampled memory figures, in kB."""

    def __init__(self):
        self.rss = self.anon = self.uss = self.pte = 0
        self.samples = 0

    def add(self, st: dict, u: int | None) -> None:
        self.samples += 1
        self.rss = max(self.rss, st['VmHWM'])
        self.anon = max(self.anon, st.get('RssAnon', 0))
        self.pte = max(self.pte, st.get('VmPTE', 0))
        if u is not None:
            self.uss = max(self.uss, u)

    def to_dict(self) -> dict:
        return {'peak_rss_mib': round(self.rss / 1024, 1),
                'peak_anon_mib': round(self.anon / 1024, 1),
                'peak_uss_mib': round(self.uss / 1024, 1),
                'peak_page_tables_mib': round(self.pte / 1024, 1),
                'samples': self.samples}


def scrub(path: str, sels: list[str], code: str, interval: float) -> dict:
    """Scrub ``path`` to a new file with the CLI and ``code``'s
    sparc_nova, sampling its memory and its child's.
    """
    out, report = path + '.out', path + '.report.json'
    env = dict(os.environ, PYTHONPATH=code)
    cmd = [SPARC, 'checkpoint', 'scrub', path, '--output', out,
           '--report', report, '--format', 'json']
    for s in sels:
        cmd += ['--exclude-process', s]
    parent, child = Peaks(), Peaks()
    t = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    n = 0
    while proc.poll() is None:
        deep = n % 5 == 0     # smaps_rollup walks the page tables
        st = status(proc.pid)
        if st:
            parent.add(st, uss(proc.pid) if deep else None)
        for kid in sandbox_children(proc.pid):
            st = status(kid)
            if st:
                child.add(st, uss(kid) if deep else None)
        n += 1
        time.sleep(interval)
    wall = time.monotonic() - t
    err = proc.stderr.read().decode('utf-8', 'replace')
    proc.stderr.close()
    if proc.returncode:
        raise RuntimeError('scrub failed (%d): %s' % (proc.returncode,
                                                      err[-3000:]))
    with open(report) as f:
        rep = json.load(f)
    os.unlink(report)
    out_bytes = os.path.getsize(out)
    os.unlink(out)
    if rep.get('verification', {}).get('result') != 'ok':
        raise RuntimeError('scrub not verified')
    return {'seconds': round(wall, 3), 'output_bytes': out_bytes,
            'parent': parent.to_dict(), 'child': child.to_dict(),
            'reported': {k: v for k, v in rep.get('timings', {}).items()
                         if k.endswith('_mib')},
            'timings': {k: v for k, v in rep.get('timings', {}).items()
                        if not k.endswith('_mib')}}


def boot_and_save(image, workdir: str, mib: int, hold: float,
                  hold_mib: int | None = None) -> dict:
    """Boot a ``mib`` MiB guest, hold ``hold`` of its RAM (or
    ``hold_mib`` MiB) in the excluded process, save it (timed): the
    image's description.
    """
    pages = int(mib * 256 * hold) if hold_mib is None else hold_mib * 256
    timings = {}
    g, selectors = bench_guest.start_bench_guest(
        image, mib, held_pages=pages, spray=False, timeout=900,
        timings=timings)
    try:
        path = os.path.join(workdir, 'mem-%d.save' % mib)
        t = time.monotonic()
        g.save(path)
        save = time.monotonic() - t
    finally:
        g.destroy()
    meta = dict(timings, guest_mib=mib,
                machine=bench_guest.machine_for(mib), path=path,
                held_pages=pages, save_seconds=round(save, 3),
                file_bytes=os.path.getsize(path), selectors=selectors)
    with open(path[:-len('.save')] + '.json', 'w') as f:
        json.dump(meta, f)
    return meta


def bench_image(meta: dict, codes: dict, repeat: int,
                interval: float) -> dict:
    """Scrub one saved image with every tree of ``codes``, alternating,
    ``repeat`` times each; the median run of each.
    """
    os.sync()
    runs = {k: [] for k in codes}
    for i in range(repeat):
        order = list(codes.items())
        if i % 2:
            order.reverse()
        for key, code in order:
            runs[key].append(scrub(meta['path'], meta['selectors'], code,
                                   interval))
    out = dict(meta)
    for key, rs in runs.items():
        best = sorted(rs, key=lambda r: r['seconds'])[len(rs) // 2]
        out[key] = dict(best, all_seconds=[r['seconds'] for r in rs],
                        median_seconds=statistics.median(
                            r['seconds'] for r in rs))
    return out


HEADER = ('%-8s %6s %8s %7s | %8s %8s %8s | %8s %8s %8s'
          % ('code', 'guest', 'image', 'scrub', 'P RSS', 'P anon', 'P USS',
             'C RSS', 'C anon', 'C USS'))


def row(key: str, r: dict) -> str:
    s = r[key]
    p, c = s['parent'], s['child']
    return ('%-8s %5dM %7dM %6.2fs | %7.0fM %7.0fM %7.0fM | %7.0fM %7.0fM '
            '%7.0fM' % (key, r['guest_mib'], r['file_bytes'] >> 20,
                        s['seconds'], p['peak_rss_mib'], p['peak_anon_mib'],
                        p['peak_uss_mib'], c['peak_rss_mib'],
                        c['peak_anon_mib'], c['peak_uss_mib']))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', default='2048,4096,8192',
                   help='Guest sizes in MiB (comma separated).')
    p.add_argument('--hold', type=float, default=0.25,
                   help='Share of guest RAM the excluded process fills.')
    p.add_argument('--hold-mib', type=int, default=None,
                   help='MiB the excluded process fills, whatever the '
                        'guest size (instead of --hold).')
    p.add_argument('--workdir', default=None)
    p.add_argument('--keep', action='store_true',
                   help='Keep the save images in --workdir.')
    p.add_argument('--images', default=None,
                   help='Scrub the images kept in this directory.')
    p.add_argument('--baseline', default=None,
                   help='Directory holding the sparc_nova to compare with.')
    p.add_argument('--repeat', type=int, default=1)
    p.add_argument('--interval', type=float, default=0.01,
                   help='Sampling interval in seconds.')
    p.add_argument('--out', default=None, help='Write results as JSON.')
    args = p.parse_args()
    codes = {'scrub': os.environ.get('PYTHONPATH') or ROOT}
    if args.baseline:
        codes['baseline'] = os.path.abspath(args.baseline)
    sizes = [int(x) for x in args.sizes.split(',')]
    results = []
    print(HEADER)
    if args.images:
        metas = []
        for mib in sizes:
            with open(os.path.join(args.images, 'mem-%d.json' % mib)) as f:
                metas.append(json.load(f))
        workdir = None
    else:
        guest_mod.ensure_daemons()
        workdir = args.workdir or tempfile.mkdtemp(prefix='sparc-mem-',
                                                   dir='/var/tmp')
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)
        image = build.build_guest(os.path.join(workdir, 'image'))
        metas = None
    for i, mib in enumerate(sizes):
        meta = metas[i] if metas else boot_and_save(
            image, workdir, mib, args.hold, args.hold_mib)
        r = bench_image(meta, codes, args.repeat, args.interval)
        if not metas and not args.keep:
            os.unlink(meta['path'])
        results.append(r)
        print('# %d MiB guest, %d MiB held: boot %.0fs, fill %.0fs, '
              'virsh save %.2fs' % (mib, meta['held_pages'] >> 8,
                                    meta['boot_seconds'],
                                    meta['fill_seconds'],
                                    meta['save_seconds']))
        for key in codes:
            print(row(key, r))
            if r[key]['reported']:
                print('%8s reported: %s' % ('', r[key]['reported']))
        sys.stdout.flush()
    if workdir and not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
