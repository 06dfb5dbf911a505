"""How much a seal costs against a scrub, and an unseal beyond its
rewrite.

The [sealed] targets: ``sparc checkpoint seal`` of a save image takes at
most 10 % more than ``sparc checkpoint scrub`` of the same image (same
selection, both to a new file), and ``sparc checkpoint unseal`` of it
takes under one second beyond its own rewrite (the report's ``rewrite``
phase: what any checkpoint rewrite costs).

Each round runs the installed CLI (wall time until the command returns,
a new process each time, as a user runs it): scrub and seal in
alternating order, then the unseal of the sealed copy. The sealing key
is a fresh 32-byte file per run.

    python benchmarks/seal_bench.py --size 4096 --repeat 5 \
        --keep-image /var/tmp/bench-4096.save
    python benchmarks/seal_bench.py --image vm.save --selectors pid:7,pid:9
    python benchmarks/seal_bench.py --image vm.save --selectors ... \
        --baseline /var/tmp/old-tree

The commands run the ``sparc_nova`` of this tree (``PYTHONPATH``).
``--baseline DIR`` also runs every round with the ``sparc_nova`` of
another tree, the two alternating (this tree first in even rounds), so
that before and after are measured in the same conditions.

Needs what the functional tests need (libvirtd, qemu-system-x86) when a
guest is booted.
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


def _run(argv, code: str) -> tuple[float, dict]:
    """Run ``argv`` (a sparc command printing its JSON report) with the
    ``sparc_nova`` of tree ``code``: ``(wall seconds until it returned,
    the report)``.
    """
    env = dict(os.environ, PYTHONPATH=code)
    t = time.monotonic()
    res = subprocess.run(argv, check=True, capture_output=True, text=True,
                         env=env)
    seconds = time.monotonic() - t
    return seconds, json.loads(res.stdout)


def _remove(*paths) -> None:
    for path in paths:
        if os.path.exists(path):
            os.unlink(path)


def one_round(sparc: str, image: str, sels: list[str], workdir: str,
              seal_first: bool, code: str = ROOT) -> dict:
    """Scrub and seal ``image`` to new files (in the given order), then
    unseal the sealed copy; the seconds of each and the unseal's phases.
    """
    excl = [a for sel in sels for a in ('--exclude-process', sel)]
    scrubbed = os.path.join(workdir, 'scrubbed.save')
    sealed_copy = os.path.join(workdir, 'sealed.save')
    unsealed = os.path.join(workdir, 'unsealed.save')
    key = os.path.join(workdir, 'seal.key')
    _remove(key)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(os.urandom(32))
    commands = {
        'scrub': [sparc, 'checkpoint', 'scrub', image, '--output', scrubbed,
                  '--format', 'json'] + excl,
        'seal': [sparc, 'checkpoint', 'seal', image, '--output',
                 sealed_copy, '--key-file', key, '--format', 'json'] + excl}
    out = {}
    for name in (('seal', 'scrub') if seal_first else ('scrub', 'seal')):
        out[name], report = _run(commands[name], code)
        out[name + '_phases'] = report['timings']
    out['unseal'], report = _run(
        [sparc, 'checkpoint', 'unseal', sealed_copy, '--key-file', key,
         '--output', unsealed, '--format', 'json'], code)
    out['unseal_phases'] = report['timings']
    out['unseal_rewrite'] = report['timings']['rewrite']
    out['unseal_beyond_rewrite'] = out['unseal'] - out['unseal_rewrite']
    _remove(scrubbed, sealed_copy, sealed_copy + '.sparc-sealed', unsealed,
            key)
    return out


def bench(sparc: str, image: str, sels: list[str], repeat: int,
          baseline: str | None = None) -> dict:
    """``repeat`` rounds of this tree's code (and of ``baseline``'s,
    alternating) on ``image``: the rounds and their medians, under
    ``'new'`` (and ``'baseline'``).
    """
    codes = {'new': ROOT}
    if baseline:
        codes['baseline'] = baseline
    workdir = tempfile.mkdtemp(prefix='sparc-seal-bench-',
                               dir=os.path.dirname(os.path.abspath(image)))
    rounds = {name: [] for name in codes}
    try:
        for i in range(repeat):
            order = list(codes) if i % 2 == 0 else list(codes)[::-1]
            for name in order:
                rounds[name].append(one_round(sparc, image, sels, workdir,
                                              i % 2 == 1, codes[name]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {'image_bytes': os.path.getsize(image)}
    for name, rs in rounds.items():
        def med(key):
            return round(statistics.median(r[key] for r in rs), 3)
        out[name] = {
            'code': codes[name], 'rounds': rs,
            'median_scrub': med('scrub'), 'median_seal': med('seal'),
            'seal_over_scrub': round(med('seal') / med('scrub'), 3),
            'median_unseal': med('unseal'),
            'median_unseal_beyond_rewrite': med('unseal_beyond_rewrite')}
    return out


def show(r: dict) -> None:
    for name in ('new', 'baseline'):
        if name not in r:
            continue
        c = r[name]
        print('%s (%s):' % (name, c['code']))
        for i, x in enumerate(c['rounds']):
            print('  round %d: scrub %.2fs, seal %.2fs, unseal %.2fs '
                  '(rewrite %.2fs, beyond it %.2fs)' % (
                      i, x['scrub'], x['seal'], x['unseal'],
                      x['unseal_rewrite'], x['unseal_beyond_rewrite']))
            for what in ('scrub', 'seal', 'unseal'):
                print('    %-6s %s' % (what, ', '.join(
                    '%s %.2f' % kv for kv in x[what + '_phases'].items())))
        print('  median: seal %.2fs vs scrub %.2fs (x%.3f, target <= '
              '1.10); unseal %.2fs, %.2fs beyond its rewrite (target < '
              '1 s)' % (c['median_seal'], c['median_scrub'],
                        c['seal_over_scrub'], c['median_unseal'],
                        c['median_unseal_beyond_rewrite']))
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=4096,
                   help='Guest size in MiB when no --image is given.')
    p.add_argument('--image', help='Benchmark this save image.')
    p.add_argument('--selectors', default='',
                   help='With --image: comma-separated selectors.')
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--sparc', default=os.path.join(
        os.path.dirname(sys.executable), 'sparc'),
        help='The sparc command (default: beside this Python).')
    p.add_argument('--baseline', default=None,
                   help='Also run every round with the sparc_nova of this '
                        'tree, alternating.')
    p.add_argument('--keep-image', default=None,
                   help='Without --image: save the booted guest here and '
                        'keep it (its selectors are printed).')
    p.add_argument('--out', help='Write the results as JSON.')
    args = p.parse_args()
    baseline = os.path.abspath(args.baseline) if args.baseline else None
    if args.image:
        r = bench(args.sparc, args.image, args.selectors.split(','),
                  args.repeat, baseline)
    else:
        guest_mod.ensure_daemons()
        workdir = tempfile.mkdtemp(prefix='sparc-seal-bench-',
                                   dir='/var/tmp')
        os.chmod(workdir, 0o755)
        try:
            image = build.build_guest(os.path.join(workdir, 'image'))
            g, sels = bench_guest.start_bench_guest(image, args.size)
            path = args.keep_image or os.path.join(
                workdir, 'bench-%d.save' % args.size)
            try:
                g.save(path)
            finally:
                g.destroy()
            if args.keep_image:
                print('%s kept; --selectors %s' % (path, ','.join(sels)))
            r = bench(args.sparc, path, sels, args.repeat, baseline)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    r['guest_mib'] = None if args.image else args.size
    print('%s: %d MiB image' % (args.image or '%d MiB guest' % args.size,
                                r['image_bytes'] >> 20))
    show(r)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
