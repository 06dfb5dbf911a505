"""The benchmarks' guest: a test bed guest running the workloads the
memory benchmarks exclude (``benchmarks/scrub_bench.py``,
``benchmarks/seal_bench.py``).
"""

from tests.functional.testbed import guest as guest_mod

__all__ = ['machine_for', 'start_bench_guest']


def machine_for(mib: int) -> str:
    """The machine type of a ``mib`` MiB benchmark guest."""
    return 'q35' if mib > 2048 else 'pc'


def start_bench_guest(image, mib: int):
    """A running ``mib`` MiB test bed guest with the benchmark's workloads:
    ``(guest, selectors of the processes to exclude)``. The first holds a
    quarter of guest RAM in anonymous pages; free memory holds sprayed
    markers.
    """
    g = guest_mod.Guest(image, memory_mib=mib, machine=machine_for(mib))
    try:
        g.start(timeout=600)
        pids = [g.start_workload('hold 1 --pages %d' % (mib * 256 // 4)),
                g.start_workload('hold 2 --threads 4'),
                g.start_workload('hold 3 --wait pipe')]
        g.run('/bin/workload spray 6 4096; echo SPRAY""-END', 'SPRAY-END',
              timeout=300)
    except BaseException:
        g.destroy()
        raise
    return g, ['pid:%d' % p for p in pids]
