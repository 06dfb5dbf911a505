"""Index time of a large QEMU stream versus a plain copy of the same file.

Generates a bare migration stream in which every page of ``pc.ram`` is a
data page (the largest file for a given guest size), then measures, in the
same run:

* the plain copy of the file (``cp``, which reads every byte and writes it),
* ``open_checkpoint`` (parse + RAM index), cold: the page cache is dropped
  first where the machine allows it, warm: right after.

Run:  python benchmarks/index_bench.py [--gib 8] [--dir /var/tmp]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from sparc_nova.checkpoint import checkpoint  # noqa: E402
from tests import streamgen  # noqa: E402


def drop_caches() -> bool:
    try:
        subprocess.run(['sync'], check=True)
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('3\n')
        return True
    except OSError:
        return False


def anon_kib() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1])
    return 0


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--gib', type=float, default=8.0,
                    help='guest RAM of the generated stream, GiB')
    ap.add_argument('--dir', default='/var/tmp',
                    help='directory for the generated files')
    args = ap.parse_args()
    ram = int(args.gib * 1024 ** 3) // 4096 * 4096
    work = tempfile.mkdtemp(prefix='index-bench-', dir=args.dir)
    src = os.path.join(work, 'stream.bin')
    dst = os.path.join(work, 'copy.bin')
    try:
        base_anon = anon_kib()
        gen_s, size = timed(lambda: streamgen.write_big_stream(src, ram))
        cold = drop_caches()
        copy_s, _ = timed(lambda: subprocess.run(['cp', src, dst],
                                                 check=True))
        os.unlink(dst)
        if cold:
            drop_caches()

        def index():
            with checkpoint.open_checkpoint(src) as ck:
                return len(ck.layout.ram), anon_kib()
        index_cold_s, (records, anon) = timed(index)
        index_warm_s, _ = timed(index)
        result = {
            'guest_ram_bytes': ram, 'stream_bytes': size,
            'records': records, 'generate_s': round(gen_s, 2),
            'cache_dropped': cold, 'plain_copy_s': round(copy_s, 3),
            'index_s': round(index_cold_s, 3),
            'index_warm_s': round(index_warm_s, 3),
            'index_over_copy': round(index_cold_s / copy_s, 4),
            # Anonymous memory of this process with the index built (the
            # mmap'd file is page cache, not counted).
            'anon_mib_with_index': round(anon / 1024, 1),
            'anon_mib_at_start': round(base_anon / 1024, 1),
        }
        print(json.dumps(result, indent=2))
    finally:
        for p in (src, dst):
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(work)
    return 0


if __name__ == '__main__':
    sys.exit(main())
