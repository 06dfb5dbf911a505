"""Killing ``sparc`` commands at chosen and random points (crash-safety
tests).

``SPARC_CRASH_KILLS`` sets the kills per mode (default
:data:`DEFAULT_KILLS`; the long run in doc/hardening.md used more). The
command runs in its own session and the kill is a SIGKILL of the whole
process group (the command, its sandbox, qemu-img and the libguestfs
appliance), as a power cut or the OOM killer would leave them.

Random kill times alone do not prove both sides of the commit point (the
``os.replace`` that makes a result, or a journal, current). So a run can
also be held at the commit point (:func:`hold_at_commit`, installed in
the process that is killed): a timed run reports when the commit
happened, and a held run waits, just before or just after the rename,
for the SIGKILL that :func:`run_sparc_held` (or the test) sends it.
"""

import os
import select
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

#: Hold the process just before the commit's rename, or just after it;
#: or only report when the commit happened.
BEFORE_COMMIT = 'before'
AFTER_COMMIT = 'after'
TIME_COMMIT = 'time'

#: Kills per mode: two at the commit point, the rest random.
DEFAULT_KILLS = 10


def kills_per_mode(default: int = DEFAULT_KILLS) -> int:
    """Kills per mode: ``SPARC_CRASH_KILLS``, else ``default`` (a test
    whose every run starts an appliance takes fewer).
    """
    return int(os.environ.get('SPARC_CRASH_KILLS', default))


def hold_at_commit(commit_path: str, when: str, notify_fd: int) -> None:
    """In the process that will be killed: make ``os.replace`` onto
    ``commit_path`` (the commit point) write one byte to ``notify_fd``,
    and then, for :data:`BEFORE_COMMIT` (before the rename) or
    :data:`AFTER_COMMIT` (after it), sleep until killed. With
    :data:`TIME_COMMIT` the byte is written after the rename and the run
    goes on.
    """
    real_replace = os.replace
    target = os.path.abspath(commit_path)

    def replace(src, dst, *args, **kwargs):
        if os.path.abspath(dst) != target:
            return real_replace(src, dst, *args, **kwargs)
        if when == BEFORE_COMMIT:
            os.write(notify_fd, b'c')
            while True:
                time.sleep(60)
        real_replace(src, dst, *args, **kwargs)
        os.write(notify_fd, b'c')
        while when == AFTER_COMMIT:
            time.sleep(60)

    os.replace = replace


def _held_sparc_main() -> None:
    """``python -c`` entry of :func:`run_sparc_held`: argv is
    COMMIT_PATH WHEN FD SPARC-ARGS...
    """
    commit_path, when, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hold_at_commit(commit_path, when, fd)
    from sparc_nova.cmd import sparc
    sys.exit(sparc.main(sys.argv[4:]))


def wait_for_commit(read_fd: int, proc_alive, timeout: float) -> bool:
    """Wait until the held process writes its byte to ``read_fd`` (True),
    or ends (``proc_alive()`` false) or ``timeout`` passes (False).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([read_fd], [], [], 0.05)
        if ready:
            return os.read(read_fd, 1) == b'c'
        if not proc_alive():
            ready, _, _ = select.select([read_fd], [], [], 0)
            return bool(ready) and os.read(read_fd, 1) == b'c'
    return False


def run_sparc_held(args: list[str], commit_path: str, when: str,
                   timeout: float = 900) -> tuple[float, int | None, float]:
    """Run ``sparc ARGS`` with :func:`hold_at_commit` on ``commit_path``.

    For :data:`BEFORE_COMMIT` and :data:`AFTER_COMMIT` the process group
    is SIGKILLed the moment the run is held there; for
    :data:`TIME_COMMIT` it runs to its end. Returns (seconds, exit code or
    None when killed, seconds from the start to the commit).
    :raises AssertionError: the run never reached the commit point, or
        a timed run failed.
    """
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get('PYTHONPATH', '').split(
            os.pathsep) if p]))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, '-c',
             'from tests.functional import crash; crash._held_sparc_main()',
             commit_path, when, str(write_fd)] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
            pass_fds=(write_fd,), cwd=REPO, env=env)
    finally:
        os.close(write_fd)
    try:
        reached = wait_for_commit(read_fd, lambda: proc.poll() is None,
                                  timeout)
        committed = time.monotonic() - start
        if reached and when != TIME_COMMIT:
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        err = proc.stderr.read().decode(errors='replace')
    finally:
        os.close(read_fd)
        proc.stderr.close()
    seconds = time.monotonic() - start
    if not reached:
        raise AssertionError('sparc %s (exit %s) never reached its commit '
                             'point, os.replace onto %s:\n%s'
                             % (' '.join(args), proc.returncode,
                                commit_path, err[-3000:]))
    if when == TIME_COMMIT:
        if proc.returncode != 0:
            raise AssertionError('sparc %s exited %d:\n%s'
                                 % (' '.join(args), proc.returncode,
                                    err[-3000:]))
        return seconds, 0, committed
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-3000:])
    return seconds, None, committed


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
