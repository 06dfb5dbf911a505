"""Killing ``sparc`` commands at random points (crash-safety tests).

``SPARC_CRASH_KILLS`` sets the kills per mode (default
:data:`DEFAULT_KILLS`; the long run in doc/hardening.md used more). The
command runs in its own session and the kill is a SIGKILL of the whole
process group (the command, its sandbox, qemu-img and the libguestfs
appliance), as a power cut or the OOM killer would leave them.
"""

import os
import signal
import subprocess
import sys
import time

DEFAULT_KILLS = 10
#: From this many kills per mode on, a test also asserts that kills
#: landed on both sides of the commit point (with fewer, each kill is
#: still checked, but both sides are not certain to be hit).
COVERAGE_KILLS = 40


def kills_per_mode() -> int:
    return int(os.environ.get('SPARC_CRASH_KILLS', DEFAULT_KILLS))


def assert_both_sides(before: int, after: int) -> None:
    """Outcomes before and after the commit point both happened (when
    enough kills ran for that to be certain).
    """
    if kills_per_mode() >= COVERAGE_KILLS:
        assert before > 0 and after > 0, (before, after)


def run_sparc(args: list[str], kill_after: float | None = None,
              timeout: float = 900) -> tuple[float, int | None]:
    """Run ``sparc ARGS``; SIGKILL its process group after ``kill_after``
    seconds unless it ended first. Returns (seconds, exit code), the code
    None when it was killed.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'sparc_nova.cmd.sparc'] + list(args),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.wait(timeout=timeout if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        # Not reaped yet, so the group id is still ours.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        return time.monotonic() - start, None
    err = proc.stderr.read().decode(errors='replace')
    proc.stderr.close()
    if kill_after is None and proc.returncode != 0:
        raise AssertionError('sparc %s exited %d:\n%s'
                             % (' '.join(args), proc.returncode, err[-3000:]))
    return time.monotonic() - start, proc.returncode
