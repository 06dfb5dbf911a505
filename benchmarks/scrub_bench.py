"""How much a memory scrub adds to ``virsh save``.

For each guest size: boot a test bed guest (TCG), start workloads holding
secrets (one of them holding a quarter of guest RAM in anonymous pages,
so that the save has real data to write), ``virsh save`` it (timed), then
scrub the save image in a fresh process (timed: wall and CPU seconds,
peak RSS, the report's per-phase timings): in place, and to a new file.
Prints a table and writes JSON.

    python benchmarks/scrub_bench.py --sizes 512,2048,4096 \\
        --out bench.json

``--repeat N`` scrubs N times per mode and reports the median run (the
host may be shared). ``--baseline DIR`` also scrubs the same image with
the sparc_nova found in DIR (e.g. a checkout of an older commit), the
runs alternating, so that before and after are measured in the same
conditions. ``--image FILE --selectors pid:1,pid:2 --save-seconds S``
benchmarks an existing save image instead of booting a guest.

``--overlap`` also restores the saved guest before each run (with
``--image``, its disk must still exist) and times ``virsh save``
against ``sparc checkpoint save`` (the scrub overlapping the save,
:mod:`sparc_nova.engine.live`), ``--repeat`` pairs, alternating:

    python benchmarks/scrub_bench.py --image vm.save --selectors pid:7 \\
        --overlap --repeat 9

``--cli`` times what a user sees instead: the installed commands
``virsh save DOMAIN FILE`` against ``sparc checkpoint save DOMAIN FILE
--exclude-process ...``, each as a new process, wall time until it
returns, ``--repeat`` pairs back to back (nothing synced between them,
as a user saving one guest after another), the guest restored from the
image before each run (untimed). It also times the CLI's start-up
(``sparc checkpoint save --help``) and records the dirty page cache
before each run:

    python benchmarks/scrub_bench.py --image vm.save --selectors pid:7 \\
        --cli --repeat 5

``--sandbox``/``--no-sandbox`` force guest introspection into the
unprivileged sandbox child or into the scrubbing process (default:
``[sparc] sandbox_enabled``); ``--compare-sandbox`` also scrubs each image
to a new file both ways, alternating, and reports the sandbox's overhead:

    python benchmarks/scrub_bench.py --image vm.save --selectors vault \\
        --compare-sandbox --repeat 3

Needs what the functional tests need (libvirtd, qemu-system-x86).
"""

import argparse
import dataclasses
import json
import os
import resource
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

#: How ``--child`` is told about the sandbox (None: the configuration).
SANDBOX_ARG = {None: 'conf', True: 'on', False: 'off'}


def child(argv) -> None:
    """Run one scrub and print its timings and peak RSS as JSON."""
    # The sparc_nova of PYTHONPATH, not the one next to this script.
    if sys.path[0] == ROOT:
        del sys.path[0]
    import inspect

    import sparc_nova
    from sparc_nova import conf
    from sparc_nova.engine import memory
    path, mode, sandbox, sels = argv[0], argv[1], argv[2], argv[3:]
    sandbox = {v: k for k, v in SANDBOX_ARG.items()}[sandbox]
    t = time.monotonic()
    cpu = time.process_time()
    out = None if mode == 'in-place' else path + '.out'
    params = inspect.signature(memory.scrub_checkpoint).parameters
    if 'scrub_free_memory' in params:
        # The engine is handed its configuration, as the CLI does.
        from sparc_nova.engine import sandbox as sandbox_mod
        policy = sandbox_mod.SandboxPolicy.from_conf(conf.CONF)
        if sandbox is not None:
            policy = dataclasses.replace(policy, enabled=sandbox)
        extra = {'sandbox': policy,
                 'buildid_cache_dir': conf.CONF.sparc.buildid_cache_dir}
        if mode == 'in-place':
            extra['journal_key'] = conf.CONF.sparc.journal_key_file
    else:
        # A --baseline tree from before that: it reads [sparc] itself,
        # and may predate the sandbox option.
        extra = {} if sandbox is None else {'sandbox': sandbox}
    rep = memory.scrub_checkpoint(path, sels, in_place=mode == 'in-place',
                                  output=out, **extra)
    wall = time.monotonic() - t
    cpu = time.process_time() - cpu
    out_bytes = os.path.getsize(out or path)
    if out:
        os.unlink(out)
    print(json.dumps({
        'seconds': round(wall, 3),
        'cpu_seconds': round(cpu, 3),
        'peak_rss_mib': round(resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        'sandbox_peak_rss_mib': round(resource.getrusage(
            resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        if getattr(rep, 'sandbox', None) else None,
        'sandbox': getattr(rep, 'sandbox', None),
        'timings': rep.timings,
        'code': os.path.dirname(os.path.dirname(sparc_nova.__file__)),
        'output_bytes': out_bytes,
        'frames_replaced': rep.rewrite.get('frames_replaced'),
        'free_frames': rep.free_pages.get('frames')}))


def run_child(path, mode, sels, code=None, sandbox=None) -> dict:
    """One scrub of ``path`` in a fresh process (in place: of a copy),
    with the sparc_nova of directory ``code`` (default: this tree's).
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = code or ROOT
    target = path
    if mode == 'in-place':
        target = path + '.copy'
        shutil.copyfile(path, target)
        os.sync()
    try:
        res = subprocess.run([sys.executable, os.path.abspath(__file__),
                              '--child', target, mode,
                              SANDBOX_ARG[sandbox]] + sels,
                             capture_output=True, text=True, env=env)
    finally:
        if mode == 'in-place':
            os.unlink(target)
    if res.returncode:
        raise RuntimeError('scrub failed: %s' % res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time, with every run's wall time."""
    best = sorted(runs, key=lambda r: r['seconds'])[len(runs) // 2]
    return dict(best, all_seconds=[r['seconds'] for r in runs])


def compare_sandbox(path, sels, repeat: int) -> dict:
    """Scrub ``path`` to a new file with and without the sandbox,
    alternating, ``repeat`` times each (median runs).
    """
    runs = {True: [], False: []}
    for _ in range(repeat):
        for sandbox in (False, True):
            runs[sandbox].append(run_child(path, 'new-file', sels,
                                           sandbox=sandbox))
    on, off = median_run(runs[True]), median_run(runs[False])
    return {'sandbox': on, 'no_sandbox': off,
            'overhead_seconds': round(on['seconds'] - off['seconds'], 3),
            'overhead_pct': round(100 * (on['seconds'] / off['seconds'] -
                                         1), 1)}


def scrub_image(path, sels, save, repeat, baseline, sandbox=None,
                compare=False) -> dict:
    """Scrub ``path`` in both modes (and with the baseline code)."""
    codes = {'scrub': None}
    if baseline:
        codes['baseline'] = baseline
    runs = {(k, m): [] for k in codes for m in ('in-place', 'new-file')}
    for _ in range(repeat):
        for mode in ('in-place', 'new-file'):
            for key, code in codes.items():
                runs[key, mode].append(run_child(path, mode, sels, code,
                                                 sandbox))
    out = {'save_seconds': round(save, 3),
           'file_bytes': os.path.getsize(path), 'selectors': sels}
    for key in codes:
        for mode, name in (('in-place', 'in_place'),
                           ('new-file', 'new_file')):
            r = median_run(runs[key, mode])
            prefix = '' if key == 'scrub' else 'baseline_'
            out[prefix + 'scrub_' + name] = r
            out[prefix + 'ratio_' + name] = round(r['seconds'] / save, 3)
    if compare:
        out['sandbox_comparison'] = compare_sandbox(path, sels, repeat)
    return out


def bench_size(image, workdir, mib: int, repeat, baseline, sandbox=None,
               compare=False, overlap=False, cli=None) -> dict:
    machine = bench_guest.machine_for(mib)
    g = None
    try:
        g, sels = bench_guest.start_bench_guest(image, mib)
        path = os.path.join(workdir, 'bench-%d.save' % mib)
        t = time.monotonic()
        g.save(path)
        save = time.monotonic() - t
        overlapped = compare_overlap(path, sels, repeat) if overlap \
            else None
        by_cli = compare_cli(path, sels, repeat, cli) if cli else None
    finally:
        if g is not None:
            g.destroy()
    os.sync()
    r = scrub_image(path, sels, save, repeat, baseline, sandbox, compare)
    if overlapped:
        r['overlap'] = overlapped
    if by_cli:
        r['cli'] = by_cli
    return dict(r, guest_mib=mib, machine=machine)


def _timed_save(conn, path, name, target, sels=None) -> tuple:
    """Restore the guest saved in ``path``, then save it to ``target``:
    plainly, or with the scrub overlapping the save when ``sels``
    are given. ``(seconds of the save call, report or None)``.
    """
    from sparc_nova.engine import domain_save
    conn.restore(path)
    dom = conn.lookupByName(name)
    os.sync()
    t = time.monotonic()
    rep = None
    if sels:
        rep = domain_save.save_scrubbed(dom, target, sels)
    else:
        dom.saveFlags(target, None, 0)
    seconds = time.monotonic() - t
    os.unlink(target)
    return seconds, rep


def compare_overlap(path, sels, repeat: int) -> dict:
    """``sparc checkpoint save`` against ``virsh save`` of the same guest
    (restored from ``path`` before each run), ``repeat`` pairs, the order
    alternating: the scrub overlaps the save
    (:mod:`sparc_nova.engine.live`), so what it costs is the difference.
    """
    import libvirt
    from xml.etree import ElementTree
    conn = libvirt.open('qemu:///system')
    name = ElementTree.fromstring(
        conn.saveImageGetXMLDesc(path, 0)).findtext('name')
    target = path + '.run'
    plain, scrubbed, after, complete = [], [], [], []
    try:
        for i in range(repeat):
            order = (None, sels) if i % 2 == 0 else (sels, None)
            for sel in order:
                seconds, rep = _timed_save(conn, path, name, target, sel)
                if rep is None:
                    plain.append(seconds)
                    continue
                scrubbed.append(seconds)
                after.append(rep.timings['after_save'])
                complete.append(rep.during_save['image_complete_after'])
                if rep.verification.get('result') != 'ok':
                    raise RuntimeError('scrub not verified')
    finally:
        conn.close()
    p, s = statistics.median(plain), statistics.median(scrubbed)
    return {'virsh_save_seconds': [round(x, 3) for x in plain],
            'save_and_scrub_seconds': [round(x, 3) for x in scrubbed],
            'after_save_seconds': after,
            'image_complete_after_seconds': complete,
            'median_virsh_save': round(p, 3),
            'median_save_and_scrub': round(s, 3),
            'added_pct': round(100 * (s - p) / p, 1)}


def _dirty_mib() -> float:
    """Dirty plus under-writeback page cache, MiB (/proc/meminfo)."""
    total = 0
    with open('/proc/meminfo') as f:
        for row in f:
            key, value = row.split(':', 1)
            if key in ('Dirty', 'Writeback'):
                total += int(value.split()[0])
    return total / 1024


def _timed_command(argv) -> float:
    t = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def compare_cli(path, sels, repeat: int, sparc: str) -> dict:
    """``sparc checkpoint save`` against ``virsh save`` as a user runs
    them (installed commands, wall time until they return, back to back),
    ``repeat`` pairs, the order alternating; the guest saved in ``path``
    is restored before each run (untimed).
    """
    import libvirt
    from xml.etree import ElementTree
    conn = libvirt.open('qemu:///system')
    try:
        name = ElementTree.fromstring(
            conn.saveImageGetXMLDesc(path, 0)).findtext('name')
    finally:
        conn.close()
    target = path + '.run'
    report = path + '.report.json'
    argv_sparc = [sparc, 'checkpoint', 'save', name, target, '--report',
                  report]
    for sel in sels:
        argv_sparc += ['--exclude-process', sel]
    runs = {'virsh': [], 'sparc': []}
    for i in range(repeat):
        for kind in (('virsh', 'sparc') if i % 2 == 0 else
                     ('sparc', 'virsh')):
            subprocess.run(['virsh', '-q', 'restore', path], check=True,
                           stdout=subprocess.DEVNULL)
            dirty = _dirty_mib()
            if kind == 'virsh':
                seconds = _timed_command(['virsh', '-q', 'save', name,
                                          target])
                run = {'seconds': seconds}
            else:
                seconds = _timed_command(argv_sparc)
                with open(report) as f:
                    rep = json.load(f)
                run = {'seconds': seconds, 'timings': rep['timings'],
                       'during_save': rep.get('during_save')}
            run['dirty_mib_before'] = round(dirty, 1)
            runs[kind].append(run)
            os.unlink(target)
    startup = statistics.median(
        _timed_command([sparc, 'checkpoint', 'save', '--help'])
        for _ in range(3))
    v = statistics.median(r['seconds'] for r in runs['virsh'])
    s = statistics.median(r['seconds'] for r in runs['sparc'])
    return {'runs': runs, 'cli_startup_seconds': round(startup, 3),
            'median_virsh_save': round(v, 3),
            'median_sparc_save': round(s, 3), 'ratio': round(s / v, 3)}


def line(label, r) -> str:
    ph = ', '.join('%s %.2f' % (k, v) for k, v in r['timings'].items()
                   if k != 'total')
    return '  %-9s %5.2fs (cpu %5.2fs, peak %5.0f MiB, output %5d MiB): %s' \
        % (label, r['seconds'], r['cpu_seconds'], r['peak_rss_mib'],
           r['output_bytes'] >> 20, ph)


def show(label, r) -> None:
    print('%s: save %.2fs (%d MiB file)' % (label, r['save_seconds'],
                                            r['file_bytes'] >> 20))
    for prefix, what in (('', 'scrub'), ('baseline_', 'baseline')):
        if prefix + 'scrub_in_place' not in r:
            continue
        print('  %s: in place %.1f%% of the save, to a new file %.1f%%' % (
            what, 100 * r[prefix + 'ratio_in_place'],
            100 * r[prefix + 'ratio_new_file']))
        print(line('in place', r[prefix + 'scrub_in_place']))
        print(line('new file', r[prefix + 'scrub_new_file']))
    o = r.get('overlap')
    if o:
        print('  sparc checkpoint save vs virsh save (median of %d each): '
              '%.2fs vs %.2fs: the scrub adds %+.1f%% (image complete '
              'after %.2fs; scrub time past the save call: %s)' % (
                  len(o['virsh_save_seconds']), o['median_save_and_scrub'],
                  o['median_virsh_save'], o['added_pct'],
                  statistics.median(o['image_complete_after_seconds']),
                  ', '.join('%.2f' % x for x in o['after_save_seconds'])))
    c = r.get('cli')
    if c:
        print('  installed CLIs, back to back (median of %d each): sparc '
              'checkpoint save %.2fs vs virsh save %.2fs (x%.2f); sparc '
              'start-up %.2fs' % (
                  len(c['runs']['virsh']), c['median_sparc_save'],
                  c['median_virsh_save'], c['ratio'],
                  c['cli_startup_seconds']))
        for kind in ('virsh', 'sparc'):
            for run in c['runs'][kind]:
                print('    %-5s %5.2fs (dirty before %6.0f MiB) %s' % (
                    kind, run['seconds'], run['dirty_mib_before'],
                    ', '.join('%s %.2f' % kv for kv in
                              run.get('timings', {}).items())))
    c = r.get('sandbox_comparison')
    if c:
        on, off = c['sandbox'], c['no_sandbox']
        print('  sandbox: %.2fs without, %.2fs with (child peak %.0f MiB; '
              'waited for it after its own parse %.2fs): overhead %+.2fs '
              '(%+.1f%%)' % (off['seconds'], on['seconds'],
                             on['sandbox_peak_rss_mib'] or 0,
                             on['timings'].get('sandbox', 0),
                             c['overhead_seconds'], c['overhead_pct']))
    sys.stdout.flush()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        child(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', default='512,2048,4096',
                   help='Guest sizes in MiB (comma separated).')
    p.add_argument('--workdir', default=None)
    p.add_argument('--out', default=None, help='Write results as JSON.')
    p.add_argument('--repeat', type=int, default=1,
                   help='Scrubs per mode (the median is reported).')
    p.add_argument('--baseline', default=None,
                   help='Directory holding the sparc_nova to compare with.')
    p.add_argument('--image', default=None,
                   help='Benchmark this save image (no guest is booted).')
    p.add_argument('--selectors', default='',
                   help='With --image: comma-separated selectors.')
    p.add_argument('--save-seconds', type=float, default=0.0,
                   help='With --image: how long its save took.')
    p.add_argument('--sandbox', action=argparse.BooleanOptionalAction,
                   default=None, help='Introspect in the sandbox child '
                   '(default: [sparc] sandbox_enabled).')
    p.add_argument('--overlap', action='store_true',
                   help='Also time virsh save against sparc checkpoint '
                        'save (the scrub overlapping the save), restoring '
                        'the saved guest before each run (with --image: '
                        'its disk must still exist).')
    p.add_argument('--cli', action='store_true',
                   help='Also time the installed virsh save against the '
                        'installed sparc checkpoint save, back to back '
                        '(with --image: its disk must still exist).')
    p.add_argument('--sparc', default=os.path.join(
        os.path.dirname(sys.executable), 'sparc'),
        help='The sparc command for --cli (default: beside this '
             'Python).')
    p.add_argument('--compare-sandbox', action='store_true',
                   help='Also scrub each image with and without the '
                        'sandbox and report the overhead.')
    args = p.parse_args()
    baseline = os.path.abspath(args.baseline) if args.baseline else None
    results = []
    if args.image:
        r = scrub_image(args.image, args.selectors.split(','),
                        args.save_seconds or float('nan'), args.repeat,
                        baseline, args.sandbox, args.compare_sandbox)
        if args.overlap:
            r['overlap'] = compare_overlap(args.image,
                                           args.selectors.split(','),
                                           args.repeat)
        if args.cli:
            r['cli'] = compare_cli(args.image, args.selectors.split(','),
                                   args.repeat, args.sparc)
        results.append(r)
        show(args.image, r)
    else:
        guest_mod.ensure_daemons()
        workdir = args.workdir or tempfile.mkdtemp(prefix='sparc-bench-',
                                                   dir='/var/tmp')
        os.chmod(workdir, 0o755)
        image = build.build_guest(os.path.join(workdir, 'image'))
        for mib in [int(x) for x in args.sizes.split(',')]:
            r = bench_size(image, workdir, mib, args.repeat, baseline,
                           args.sandbox, args.compare_sandbox, args.overlap,
                           args.sparc if args.cli else None)
            results.append(r)
            show('%5d MiB %s' % (mib, r['machine']), r)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
