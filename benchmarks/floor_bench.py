"""What a scrub of a finished save image cannot do without, against the
``virsh save`` that wrote it.

Boots one test bed guest (TCG) whose excluded process holds ``--hold-mib``
MiB of data, then alternates, ``--rounds`` times: ``virsh restore`` of
the image (not timed), ``virsh save`` to it (timed, wall time until the
command returns). Against the same image, in the same run, it times
(medians of ``--repeat``):

* ``scrub``: the installed CLI, ``sparc checkpoint scrub IMAGE --output
  OUT`` with the excluded process's selectors, wall time until it
  returns (the ``sparc_nova`` of ``PYTHONPATH``);
* the parts any scrub of a finished file needs, each measured alone in a
  fresh interpreter of the same virtual environment:

  - ``start``: the interpreter and the two libraries that read guest
    memory and hold page arrays (``import drgn, numpy``);
  - ``index``: reading the stream's record headers (the RAM index);
  - ``model``: modelling the guest kernel: finding vmcoreinfo, loading
    kallsyms and BTF (``open_kernel``), on the index just built;
  - ``copy``: copying as many bytes as the scrub writes to its new file
    with ``copy_file_range`` (the kernel copies; no user-space pass),
    and ``copy+fsync`` with the ``fsync`` a durable file needs.

``floor`` is ``start + index + model + copy``: an ideal scrub with no
sandbox, no plan, no verification and no durability, run in one process
without overlap. Each line gives its share of the median ``virsh save``.

    python benchmarks/floor_bench.py --mib 4096 --hold-mib 512 \\
        --rounds 3 --repeat 5

``--image FILE`` (with ``--selectors`` and ``--save-seconds``) skips the
boot and the saves and measures an image kept earlier.

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
#: The interpreter of the CLI's virtual environment.
PYTHON = os.path.join(os.path.dirname(SPARC), 'python')

#: Run in a fresh interpreter: prints the seconds of each step as JSON.
PARTS = r'''
import json, os, sys, time
t0 = time.perf_counter()
import drgn, numpy
t1 = time.perf_counter()
from sparc_nova.checkpoint import checkpoint
from sparc_nova.engine import physview
from sparc_nova.introspect import kernel
t2 = time.perf_counter()
ck = checkpoint.open_checkpoint(sys.argv[1])
mem = physview.CheckpointMemory(ck)
t3 = time.perf_counter()
kernel.open_kernel(mem)
t4 = time.perf_counter()
mem.close()
ck.close()
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
left = int(sys.argv[3])
t5 = time.perf_counter()
while left > 0:
    n = os.copy_file_range(src, dst, min(left, 1 << 30))
    if n <= 0:
        break
    left -= n
t6 = time.perf_counter()
os.fsync(dst)
t7 = time.perf_counter()
os.close(src)
os.close(dst)
os.unlink(sys.argv[2])
print(json.dumps({'start': t1 - t0, 'index': t3 - t2, 'model': t4 - t3,
                  'copy': t6 - t5, 'fsync': t7 - t6}))
'''


def scrub(path: str, selectors: list[str]) -> tuple[float, int]:
    """The CLI's wall time scrubbing ``path`` to a new file, and the size
    of that file (bytes).
    """
    out = path + '.out'
    cmd = [SPARC, 'checkpoint', 'scrub', path, '--output', out]
    for s in selectors:
        cmd += ['--exclude-process', s]
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t
    size = os.path.getsize(out)
    os.unlink(out)
    return wall, size


def parts(path: str, copy_bytes: int) -> dict:
    """The floor's parts, measured in a fresh interpreter (seconds)."""
    res = subprocess.run([PYTHON, '-c', PARTS, path, path + '.copy',
                          str(copy_bytes)], check=True,
                         stdout=subprocess.PIPE)
    return json.loads(res.stdout)


def saves(image, workdir: str, mib: int, hold_mib: int,
          rounds: int) -> tuple[str, list[str], list[float]]:
    """Boot the guest and save it ``rounds`` times (restored in between):
    the image's path, the selectors and the save times (seconds).
    """
    g, selectors = bench_guest.start_bench_guest(
        image, mib, held_pages=hold_mib * 256, spray=False, timeout=900)
    path = os.path.join(workdir, 'floor-%d.save' % mib)
    times = []
    try:
        for i in range(rounds):
            if i:
                g.restore(path)
                os.unlink(path)
            os.sync()
            t = time.monotonic()
            g.save(path)
            times.append(time.monotonic() - t)
    finally:
        g.destroy()
    return path, selectors, times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--mib', type=int, default=4096, help='Guest RAM, MiB.')
    p.add_argument('--hold-mib', type=int, default=512,
                   help='MiB of data the excluded process holds.')
    p.add_argument('--rounds', type=int, default=3,
                   help='virsh save rounds (restored in between).')
    p.add_argument('--repeat', type=int, default=5,
                   help='Runs of the scrub and of the parts.')
    p.add_argument('--image', default=None,
                   help='Measure this kept image instead of booting.')
    p.add_argument('--selectors', default='',
                   help='With --image: comma-separated selectors.')
    p.add_argument('--save-seconds', type=float, default=None,
                   help='With --image: its virsh save time.')
    p.add_argument('--workdir', default=None)
    p.add_argument('--out', default=None, help='Write results as JSON.')
    args = p.parse_args()
    workdir = None
    if args.image:
        path, selectors = args.image, args.selectors.split(',')
        save_times = [args.save_seconds] if args.save_seconds else []
    else:
        guest_mod.ensure_daemons()
        workdir = args.workdir or tempfile.mkdtemp(prefix='sparc-floor-',
                                                   dir='/var/tmp')
        os.makedirs(workdir, exist_ok=True)
        image = build.build_guest(os.path.join(workdir, 'image'))
        path, selectors, save_times = saves(image, workdir, args.mib,
                                            args.hold_mib, args.rounds)
    image_bytes = os.path.getsize(path)
    runs, measured = [], []
    try:
        for _ in range(args.repeat):
            wall, out_bytes = scrub(path, selectors)
            runs.append(wall)
            measured.append(parts(path, out_bytes))
    finally:
        if workdir and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    med = {k: statistics.median(m[k] for m in measured)
           for k in measured[0]}
    med['copy+fsync'] = statistics.median(m['copy'] + m['fsync']
                                          for m in measured)
    med['floor'] = statistics.median(
        m['start'] + m['index'] + m['model'] + m['copy'] for m in measured)
    med['scrub'] = statistics.median(runs)
    save = statistics.median(save_times) if save_times else None
    saved = ', '.join('%.2f s' % s for s in save_times) or 'not timed'
    print('# image %d MiB (selectors %s), scrub output %d MiB; virsh save '
          '%s' % (image_bytes >> 20, ','.join(selectors), out_bytes >> 20,
                  saved))
    for key in ('start', 'index', 'model', 'copy', 'copy+fsync', 'floor',
                'scrub'):
        share = ' %5.0f %% of the save' % (100 * med[key] / save) \
            if save else ''
        print('%-11s %6.3f s%s' % (key, med[key], share))
    if save:
        print('%-11s %6.3f s  (15 %% of the save)' % ('target', 0.15 * save))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'image': path, 'selectors': selectors,
                       'save_seconds': save_times, 'scrub_seconds': runs,
                       'parts': measured, 'medians': med}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
