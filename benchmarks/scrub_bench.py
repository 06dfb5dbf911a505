"""How much a memory scrub adds to ``virsh save``.

For each guest size: boot a test bed guest (TCG), start workloads holding
secrets (one of them holding a quarter of guest RAM in anonymous pages,
so that the save has real data to write), ``virsh save`` it (timed), then
scrub the save image in a fresh process (timed, peak RSS measured):
in place, and to a new file. Prints a table and writes JSON.

    python benchmarks/scrub_bench.py --sizes 512,2048,4096 \\
        --out bench.json

``--sandbox``/``--no-sandbox`` force guest introspection into the
unprivileged sandbox child or into the scrubbing process (default: ``[sparc]
sandbox_enabled``); ``--compare-sandbox`` scrubs each image to a new file
both ways and reports the sandbox's overhead. ``--checkpoint FILE
--exclude-process SEL`` measures an existing save image (never modified)
instead of booting guests (the scrub is written next to it and removed):

    python benchmarks/scrub_bench.py --checkpoint vm.save \\
        --exclude-process vault --compare-sandbox --repeat 3

Needs what the functional tests need (libvirtd, qemu-system-x86).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from tests.functional.testbed import build  # noqa: E402
from tests.functional.testbed import guest as guest_mod  # noqa: E402


SANDBOX_ARG = {None: 'conf', True: 'on', False: 'off'}


def child(argv) -> None:
    """Run one scrub and print its timings and peak RSS as JSON."""
    from sparc_nova.engine import memory
    path, mode, sandbox, sels = argv[0], argv[1], argv[2], argv[3:]
    sandbox = {v: k for k, v in SANDBOX_ARG.items()}[sandbox]
    t = time.monotonic()
    out = None if mode == 'in-place' else path + '.out'
    rep = memory.scrub_checkpoint(path, sels, in_place=mode == 'in-place',
                                  output=out, sandbox=sandbox)
    wall = time.monotonic() - t
    if out:
        os.unlink(out)
    print(json.dumps({
        'seconds': round(wall, 3),
        'peak_rss_mib': round(resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        'sandbox_peak_rss_mib': round(resource.getrusage(
            resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        if rep.sandbox else None,
        'sandbox': rep.sandbox,
        'timings': rep.timings,
        'frames_replaced': rep.rewrite.get('frames_replaced'),
        'free_frames': rep.free_pages.get('frames')}))


def run_child(path, mode, sels, sandbox=None) -> dict:
    res = subprocess.run([sys.executable, os.path.abspath(__file__),
                          '--child', path, mode, SANDBOX_ARG[sandbox]] +
                         sels, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError('scrub failed: %s' % res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare_sandbox(path, sels, repeat: int = 1) -> dict:
    """Scrub ``path`` to a new file with and without the sandbox,
    alternating, ``repeat`` times each; the best run of each counts.
    """
    runs = {True: [], False: []}
    for _ in range(repeat):
        for sandbox in (False, True):
            runs[sandbox].append(run_child(path, 'new-file', sels, sandbox))
    best = {k: min(v, key=lambda r: r['seconds']) for k, v in runs.items()}
    on, off = best[True], best[False]
    return {'sandbox': on, 'no_sandbox': off,
            'all_seconds': {'sandbox': [r['seconds'] for r in runs[True]],
                            'no_sandbox': [r['seconds']
                                           for r in runs[False]]},
            'overhead_seconds': round(on['seconds'] - off['seconds'], 3),
            'overhead_pct': round(100 * (on['seconds'] / off['seconds'] -
                                         1), 1)}


def print_comparison(label, c) -> None:
    on, off = c['sandbox'], c['no_sandbox']
    print('%s: no sandbox %5.2fs (peak %5.0f MiB) | sandbox %5.2fs '
          '(parent peak %5.0f MiB, child peak %5.0f MiB; start, encode '
          'and validate %.2fs) | overhead %+.2fs (%+.1f%%)' % (
              label, off['seconds'], off['peak_rss_mib'], on['seconds'],
              on['peak_rss_mib'], on['sandbox_peak_rss_mib'] or 0,
              on['timings'].get('sandbox', 0), c['overhead_seconds'],
              c['overhead_pct']), flush=True)


def bench_size(image, workdir, mib: int, sandbox=None,
               compare=False) -> dict:
    machine = 'q35' if mib > 2048 else 'pc'
    g = guest_mod.Guest(image, memory_mib=mib, machine=machine)
    try:
        g.start(timeout=600)
        pids = [g.start_workload('hold 1 --pages %d' % (mib * 256 // 4)),
                g.start_workload('hold 2 --threads 4'),
                g.start_workload('hold 3 --wait pipe')]
        g.run('/bin/workload spray 6 4096; echo SPRAY""-END', 'SPRAY-END',
              timeout=300)
        path = os.path.join(workdir, 'bench-%d.save' % mib)
        t = time.monotonic()
        g.save(path)
        save = time.monotonic() - t
        size = os.path.getsize(path)
        sels = ['pid:%d' % p for p in pids]
        copy = path + '.copy'
        shutil.copyfile(path, copy)
        os.sync()
        in_place = run_child(copy, 'in-place', sels, sandbox)
        os.unlink(copy)
        new_file = run_child(path, 'new-file', sels, sandbox)
        out = {'guest_mib': mib, 'machine': machine,
               'save_seconds': round(save, 3), 'file_bytes': size,
               'scrub_in_place': in_place, 'scrub_new_file': new_file,
               'ratio_in_place': round(in_place['seconds'] / save, 3),
               'ratio_new_file': round(new_file['seconds'] / save, 3)}
        if compare:
            out['sandbox_comparison'] = compare_sandbox(path, sels)
        return out
    finally:
        g.destroy()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        child(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', default='512,2048,4096',
                   help='Guest sizes in MiB (comma separated).')
    p.add_argument('--workdir', default=None)
    p.add_argument('--out', default=None, help='Write results as JSON.')
    p.add_argument('--sandbox', action=argparse.BooleanOptionalAction,
                   default=None, help='Introspect in the sandbox child '
                   '(default: [sparc] sandbox_enabled).')
    p.add_argument('--compare-sandbox', action='store_true',
                   help='Also scrub each image with and without the '
                        'sandbox and report the overhead.')
    p.add_argument('--checkpoint', default=None,
                   help='Measure this save image instead of booting '
                        'guests (it is only read).')
    p.add_argument('--exclude-process', action='append', default=[],
                   help='Selector for --checkpoint (repeatable).')
    p.add_argument('--repeat', type=int, default=1,
                   help='Runs of each mode with --checkpoint.')
    args = p.parse_args()
    if args.checkpoint:
        return bench_file(args)
    guest_mod.ensure_daemons()
    workdir = args.workdir or tempfile.mkdtemp(prefix='sparc-bench-',
                                               dir='/var/tmp')
    os.chmod(workdir, 0o755)
    image = build.build_guest(os.path.join(workdir, 'image'))
    results = []
    for mib in [int(x) for x in args.sizes.split(',')]:
        r = bench_size(image, workdir, mib, args.sandbox,
                       args.compare_sandbox)
        results.append(r)
        print('%5d MiB %-4s save %6.2fs (%5d MiB file) | scrub in place '
              '%5.2fs (%4.1f%%, peak %5.0f MiB) | to new file %5.2fs '
              '(%5.1f%%, peak %5.0f MiB)' % (
                  mib, r['machine'], r['save_seconds'],
                  r['file_bytes'] >> 20, r['scrub_in_place']['seconds'],
                  100 * r['ratio_in_place'],
                  r['scrub_in_place']['peak_rss_mib'],
                  r['scrub_new_file']['seconds'],
                  100 * r['ratio_new_file'],
                  r['scrub_new_file']['peak_rss_mib']), flush=True)
        if 'sandbox_comparison' in r:
            print_comparison('%5d MiB' % mib, r['sandbox_comparison'])
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def bench_file(args) -> int:
    """``--checkpoint``: one existing image, no guest."""
    size = os.path.getsize(args.checkpoint)
    if args.compare_sandbox:
        r = compare_sandbox(args.checkpoint, args.exclude_process,
                            args.repeat)
        print_comparison('%s (%d MiB)' % (args.checkpoint, size >> 20), r)
    else:
        r = run_child(args.checkpoint, 'new-file', args.exclude_process,
                      args.sandbox)
        print('%s (%d MiB): %.2fs %s' % (args.checkpoint, size >> 20,
                                         r['seconds'], r['timings']))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(r, checkpoint=args.checkpoint, file_bytes=size),
                      f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
