"""How much a memory scrub adds to ``virsh save``.

For each guest size: boot a test bed guest (TCG), start workloads holding
secrets (one of them holding a quarter of guest RAM in anonymous pages,
so that the save has real data to write), ``virsh save`` it (timed), then
scrub the save image in a fresh process (timed, peak RSS measured):
in place, and to a new file. Prints a table and writes JSON.

    python benchmarks/scrub_bench.py --sizes 512,2048,4096 \\
        --out bench.json

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


def child(argv) -> None:
    """Run one scrub and print its timings and peak RSS as JSON."""
    from sparc_nova.engine import memory
    path, mode, sels = argv[0], argv[1], argv[2:]
    t = time.monotonic()
    out = None if mode == 'in-place' else path + '.out'
    rep = memory.scrub_checkpoint(path, sels, in_place=mode == 'in-place',
                                  output=out)
    wall = time.monotonic() - t
    if out:
        os.unlink(out)
    print(json.dumps({
        'seconds': round(wall, 3),
        'peak_rss_mib': round(resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        'timings': rep.timings,
        'frames_replaced': rep.rewrite.get('frames_replaced'),
        'free_frames': rep.free_pages.get('frames')}))


def run_child(path, mode, sels) -> dict:
    res = subprocess.run([sys.executable, os.path.abspath(__file__),
                          '--child', path, mode] + sels,
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError('scrub failed: %s' % res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_size(image, workdir, mib: int) -> dict:
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
        in_place = run_child(copy, 'in-place', sels)
        os.unlink(copy)
        new_file = run_child(path, 'new-file', sels)
        return {'guest_mib': mib, 'machine': machine, 'selectors': sels,
                'save_seconds': round(save, 3), 'file_bytes': size,
                'scrub_in_place': in_place, 'scrub_new_file': new_file,
                'ratio_in_place': round(in_place['seconds'] / save, 3),
                'ratio_new_file': round(new_file['seconds'] / save, 3)}
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
    args = p.parse_args()
    guest_mod.ensure_daemons()
    workdir = args.workdir or tempfile.mkdtemp(prefix='sparc-bench-',
                                               dir='/var/tmp')
    os.chmod(workdir, 0o755)
    image = build.build_guest(os.path.join(workdir, 'image'))
    results = []
    for mib in [int(x) for x in args.sizes.split(',')]:
        r = bench_size(image, workdir, mib)
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
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
