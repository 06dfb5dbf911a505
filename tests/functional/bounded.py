"""Run ``sparc`` under a memory limit and a wall-clock timeout, and
measure it (resource-bound tests).
"""

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time


@dataclasses.dataclass
class Outcome:
    code: int | None        # None: killed at the timeout
    stderr: str
    seconds: float
    peak_mib: float         # largest RSS of the command and its children


#: Started by the test process, starts ``sparc`` and reports its exit
#: code and peak RSS (KiB) on stdout. A process's maximum RSS on Linux
#: starts from the RSS of the process that forked it (kept across exec),
#: and a pytest worker may hold gigabytes: ``sparc`` is forked from this
#: small process instead, so that the peak is its own.
LAUNCHER = """
import os, resource, sys
limit = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(sys.executable,
             [sys.executable, '-m', 'sparc_nova.cmd.sparc'] + sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_sparc(args: list, memory_mib: int, timeout: float) -> Outcome:
    """``sparc ARGS`` with RLIMIT_AS of ``memory_mib`` (its sandbox sets
    its own, lower, limits), killed with its process group after
    ``timeout`` seconds.
    """
    limit = memory_mib << 20
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, '-c', LAUNCHER, str(limit)]
            + [str(a) for a in args], stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True)
        killed = False
        while proc.poll() is None:
            if not killed and time.monotonic() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        seconds = time.monotonic() - start
        err.seek(0)
        text = err.read().decode(errors='replace')
        out.seek(0)
        report = out.read().split()
    if killed or len(report) != 2:
        return Outcome(None, text, seconds, float('nan'))
    return Outcome(int(report[0]), text, seconds, int(report[1]) / 1024)
