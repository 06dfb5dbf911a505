"""Run ``sparc`` under a memory limit and a wall-clock timeout, and
measure it (resource-bound tests).
"""

import dataclasses
import os
import resource
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


def run_sparc(args: list, memory_mib: int, timeout: float) -> Outcome:
    """``sparc ARGS`` with RLIMIT_AS of ``memory_mib`` (its sandbox sets
    its own, lower, limits), killed with its process group after
    ``timeout`` seconds.
    """
    limit = memory_mib << 20

    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, '-m', 'sparc_nova.cmd.sparc']
            + [str(a) for a in args], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limits,
            start_new_session=True)
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not killed and time.monotonic() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors='replace')
    return Outcome(None if killed else proc.returncode, text, seconds,
                   usage.ru_maxrss / 1024)
