"""The benchmarks' guest: a test bed guest running the workloads the
memory benchmarks exclude (``benchmarks/scrub_bench.py``,
``benchmarks/seal_bench.py``, ``benchmarks/memory_bench.py``).
"""

import time

from tests.functional.testbed import guest as guest_mod

__all__ = ['machine_for', 'start_bench_guest']


def machine_for(mib: int) -> str:
    """The machine type of a ``mib`` MiB benchmark guest."""
    return 'q35' if mib > 2048 else 'pc'


def start_bench_guest(image, mib: int, *, held_pages: int | None = None,
                      spray: bool = True, timeout: float = 600,
                      timings: dict | None = None):
    """A running ``mib`` MiB test bed guest with the benchmark's workloads:
    ``(guest, selectors of the processes to exclude)``. The first holds
    ``held_pages`` anonymous pages (default: a quarter of guest RAM);
    with ``spray``, free memory holds sprayed markers. ``timings``, when
    given, gets ``boot_seconds`` and ``fill_seconds`` (the workloads'
    start).
    """
    if held_pages is None:
        held_pages = mib * 256 // 4
    g = guest_mod.Guest(image, memory_mib=mib, machine=machine_for(mib))
    try:
        t = time.monotonic()
        g.start(timeout=timeout)
        boot = time.monotonic() - t
        t = time.monotonic()
        pids = [g.start_workload('hold 1 --pages %d' % held_pages,
                                 timeout=timeout),
                g.start_workload('hold 2 --threads 4'),
                g.start_workload('hold 3 --wait pipe')]
        fill = time.monotonic() - t
        if spray:
            g.run('/bin/workload spray 6 4096; echo SPRAY""-END',
                  'SPRAY-END', timeout=300)
    except BaseException:
        g.destroy()
        raise
    if timings is not None:
        timings.update(boot_seconds=round(boot, 1),
                       fill_seconds=round(fill, 1))
    return g, ['pid:%d' % p for p in pids]
