"""Disk scrubbing: sparc-nova's scrub against virt-sysprep.

Builds Debian-like ext4 images of 1 GiB and 4 GiB (by default) holding
the disk tests' marker tree (SSH key, shell histories, a marker in a
file name, a 2 MB file, 200 small files sharing clusters with kept ones,
a /tmp file, and a marker file deleted before the snapshot) plus kept
filler data, then runs on each image, in one run:

* ``virt-sysprep --operations bash-history,ssh-userdir,tmp-files``
  with ``--delete`` for the other marker files, on a copy;
* ``sparc image scrub`` (the installed CLI) with the equivalent rules;

and prints the time and the residual markers (raw scan of the result)
for each; with ``--rounds N`` each image is scrubbed N times by each
tool, alternating which goes first, and the table gives every time, the
medians and their ratio. Usage::

    python benchmarks/disk_bench.py [--sizes 1,4] [--rounds N]
        [--workdir DIR] [--json]
"""

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from sparc_nova.cmd import output  # noqa: E402
from sparc_nova.engine.disk import appliance  # noqa: E402
from tests.functional.engine.disk import hostcheck  # noqa: E402
from tests.functional.engine.disk import images  # noqa: E402

SYSPREP_OPERATIONS = 'bash-history,ssh-userdir,tmp-files'
SYSPREP_DELETES = ('/home/*/big.bin', '/home/*/projects/note-*',
                   '/home/*/cache/small-*')
MIB = images.MIB


def build_image(tree_root: str, marker: str, size_gib: int,
                workdir: str) -> str:
    """An ext4 Debian-like image of ``size_gib`` GiB with the marker tree
    and kept filler (1/5 of the size).
    """
    root = os.path.join(workdir, 'tree-%dg' % size_gib)
    shutil.copytree(tree_root, root)
    os.makedirs(os.path.join(root, 'bin'))
    with open(os.path.join(root, 'etc', 'os-release'), 'wb') as f:
        f.write(images.OS_RELEASE)
    with open(os.path.join(root, 'etc', 'fstab'), 'wb') as f:
        f.write(b'/dev/sda1 / ext4 defaults 0 1\n')
    filler = os.path.join(root, 'srv', 'filler')
    os.makedirs(filler)
    for i in range(size_gib * 1024 // 5 // 16):
        with open(os.path.join(filler, 'blob-%04d' % i), 'wb') as f:
            f.write(os.urandom(16 * MIB))
    tree = images.Tree(root, marker, [], {}, '/var/log/old.log')
    path = images.ext4_image(tree, os.path.join(workdir,
                                                'os-%dg.qcow2' % size_gib),
                             size_mib=size_gib * 1024)
    shutil.rmtree(root)
    return path


def residual(image: str, marker: str, workdir: str) -> int:
    raw = hostcheck.to_raw(image, workdir)
    try:
        return hostcheck.count_marker(raw, marker)
    finally:
        os.unlink(raw)


def run_sysprep(src: str, workdir: str) -> tuple[float, str, str]:
    copy = os.path.join(workdir, 'sysprep-' + os.path.basename(src))
    shutil.copyfile(src, copy)
    argv = ['virt-sysprep', '-a', copy, '--operations', SYSPREP_OPERATIONS]
    for glob in SYSPREP_DELETES:
        argv += ['--delete', glob]
    env = dict(os.environ, LIBGUESTFS_BACKEND='direct')
    settings = appliance.backend_settings('auto')
    if settings:
        env['LIBGUESTFS_BACKEND_SETTINGS'] = ','.join(settings)
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, env=env,
                            check=False)
    elapsed = time.monotonic() - started
    status = 'exit %d' % result.returncode
    return elapsed, copy, status


#: A progress line of ``sparc image scrub`` on stderr: ``[3/9] step``.
_STEP_RE = re.compile(r'^\[\d+/\d+\] (.+)$')


def sparc_cli() -> str:
    """The installed ``sparc`` command (beside this interpreter first)."""
    beside = os.path.join(os.path.dirname(sys.executable), 'sparc')
    return beside if os.access(beside, os.X_OK) else shutil.which('sparc')


def run_scrub(src: str, workdir: str) -> tuple[float, str, str]:
    """``sparc image scrub`` as a user runs it, with the rules of the
    functional tests; how long each of its steps took is printed from
    the times its progress lines arrived.
    """
    dst = os.path.join(workdir, 'sparc-' + os.path.basename(src))
    argv = [sparc_cli(), 'image', 'scrub', src, '--output', dst]
    for glob in images.EXCLUDE_PATHS + ('/home/*/.ssh/**',):
        argv += ['--exclude-path', glob]
    for preset in images.PRESETS:
        argv += ['--preset', preset]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    steps = []
    tail = []
    for line in proc.stderr:
        m = _STEP_RE.match(line.strip())
        if m:
            steps.append((m.group(1), time.monotonic()))
        else:
            tail = (tail + [line.strip()])[-3:]
    proc.wait()
    elapsed = time.monotonic() - started
    ends = [t for _, t in steps[1:]] + [started + elapsed]
    print('  steps: ' + ', '.join('%s %.1f s' % (name, end - since)
                                  for (name, since), end
                                  in zip(steps, ends)),
          file=sys.stderr, flush=True)
    status = 'ok' if proc.returncode == 0 else \
        'exit %d: %s' % (proc.returncode, ' '.join(tail))
    return elapsed, dst, status


TOOLS = (('virt-sysprep', run_sysprep), ('sparc scrub', run_scrub))


def bench_image(src: str, name: str, marker: str, workdir: str,
                rounds: int) -> list[dict]:
    """Each tool ``rounds`` times on ``src``, alternating which goes
    first; a row per tool (times, median, residual markers, status) and
    the ratio of the medians on the sparc row.
    """
    before = residual(src, marker, workdir)
    times = {tool: [] for tool, _ in TOOLS}
    left = {tool: set() for tool, _ in TOOLS}
    status = {tool: set() for tool, _ in TOOLS}
    for round_ in range(rounds):
        order = TOOLS if round_ % 2 == 0 else TOOLS[::-1]
        for tool, run in order:
            elapsed, out, result = run(src, workdir)
            markers = residual(out, marker, workdir) \
                if os.path.exists(out) else '-'
            if os.path.exists(out):
                os.unlink(out)
            times[tool].append(elapsed)
            left[tool].add(str(markers))
            status[tool].add(result)
            print('%s / %s: %.1f s, %s markers left (%s)'
                  % (name, tool, elapsed, markers, result),
                  file=sys.stderr, flush=True)
    medians = {tool: statistics.median(t) for tool, t in times.items()}
    return [dict(image=name, tool=tool,
                 seconds=' '.join('%.1f' % t for t in times[tool]),
                 median='%.1f' % medians[tool],
                 ratio='%.2f' % (medians[tool] / medians['virt-sysprep']),
                 markers_before=before,
                 markers_after=','.join(sorted(left[tool])),
                 status=','.join(sorted(status[tool])))
            for tool, _ in TOOLS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='1,4',
                        help='Image sizes in GiB (default: 1,4).')
    parser.add_argument('--rounds', type=int, default=1,
                        help='Runs of each tool per image (default: 1).')
    parser.add_argument('--workdir', default='/var/tmp/sparc-bench')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix='disk-', dir=args.workdir)
    marker = 'SPRCBENCH' + secrets.token_hex(8).upper()
    rows = []
    try:
        tree = images.populate(os.path.join(workdir, 'tree'), marker)
        for size in [int(s) for s in args.sizes.split(',')]:
            src = build_image(tree.root, marker, size, workdir)
            rows.extend(bench_image(src, '%d GiB ext4' % size, marker,
                                    workdir, args.rounds))
            os.unlink(src)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        print(output.table(rows, ['image', 'tool', 'seconds', 'median',
                                  'ratio', 'markers_before',
                                  'markers_after', 'status']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
