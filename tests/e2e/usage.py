"""Wall time and memory of the end-to-end stage.

A sampler thread adds up, every two seconds, the resident memory of every
process of the test cloud (the process groups its supervisor started and
the QEMU processes of its guests) and keeps the peak.
"""

import json
import os
import threading
import time

from tests.e2e.cloud import cloud as cloud_mod
from tests.e2e.cloud import nova


def _stat(pid: str) -> tuple[int, int] | None:
    """(process group, resident bytes) of a process."""
    try:
        with open('/proc/%s/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        with open('/proc/%s/statm' % pid) as f:
            resident = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return int(fields[2]), resident * os.sysconf('SC_PAGE_SIZE')


def cloud_rss(cloud: cloud_mod.TestCloud) -> int:
    """Resident bytes of all the cloud's processes now."""
    groups = {p.pid for p in cloud.sup.procs.values()}
    qemu = set(nova.qemu_pids(cloud.conf))
    total = 0
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        stat = _stat(entry)
        if stat and (stat[0] in groups or int(entry) in qemu):
            total += stat[1]
    return total


class UsageMonitor:
    """Peak memory of the cloud while the stage runs, and its wall time."""

    def __init__(self, cloud: cloud_mod.TestCloud, interval: float = 2):
        self.cloud = cloud
        self.interval = interval
        self.started = time.monotonic()
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='usage')

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, cloud_rss(self.cloud))

    def stop(self, path: str) -> dict:
        """Stop sampling; write and return the figures."""
        self._stop.set()
        self._thread.join(10)
        figures = {
            'wall_seconds': round(time.monotonic() - self.started),
            'cloud_peak_rss_mib': self.peak_rss >> 20,
            'bring_up_seconds': self.cloud.timings,
        }
        with open(path, 'w') as f:
            json.dump(figures, f, indent=2)
        return figures
