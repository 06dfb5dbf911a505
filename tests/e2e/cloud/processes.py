"""Start, watch and stop the test cloud's processes.

Each service runs in a session (and process group) of its own, with its
output in ``<logs>/<name>.log``. A pid file records the process id and its
start time (from ``/proc/PID/stat``), so that a later run can stop what a
killed run left behind without ever signalling a process that merely
reused the id.
"""

import collections
import glob
import os
import re
import signal
import socket
import subprocess
import time
from typing import Callable, Mapping, Sequence


class CloudError(Exception):
    """The test cloud could not be brought up (the message says which part
    and ends with the last lines of its log).
    """


def _start_time(pid: int) -> str | None:
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces.
    return stat.rsplit(')', 1)[1].split()[19]


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors='replace') as f:
            return ''.join(collections.deque(f, lines))
    except OSError:
        return '(no log)'


#: What gunicorn's master logs when a worker ended other than by shutdown.
_WORKER_DIED = re.compile(r'WORKER TIMEOUT|was sent (?!SIGTERM)SIG[A-Z]+|'
                          r'Worker \(pid:\d+\) exited with code')


def worker_incidents(log_dir: str) -> list[str]:
    """The lines of the cloud's gunicorn logs (``*-api.log``) that report a
    worker killed, timed out or crashed, each prefixed with its log's name.
    """
    found = []
    for path in sorted(glob.glob(os.path.join(log_dir, '*-api.log'))):
        with open(path, errors='replace') as f:
            found += ['%s: %s' % (os.path.basename(path), line.strip())
                      for line in f if _WORKER_DIED.search(line)]
    return found


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Supervisor:
    """The processes of one cloud: ``run_dir`` holds the pid files,
    ``log_dir`` the logs.
    """

    def __init__(self, run_dir: str, log_dir: str):
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> str:
        """The log of ``name`` (its directory is created)."""
        os.makedirs(self.log_dir, exist_ok=True)
        return os.path.join(self.log_dir, name + '.log')

    def pid(self, name: str) -> int | None:
        """The process id of running service ``name`` (from its pid file,
        so also for a cloud another process brought up), or None.
        """
        try:
            with open(self._pid_path(name)) as f:
                pid_text, _, started = f.read().strip().partition(' ')
        except FileNotFoundError:
            return None
        pid = int(pid_text)
        return pid if _start_time(pid) == started else None

    def _pid_path(self, name: str) -> str:
        return os.path.join(self.run_dir, name + '.pid')

    def run(self, name: str, argv: Sequence[str],
            env: Mapping[str, str] | None = None,
            timeout: float = 600) -> None:
        """Run a one-shot command (a database sync...) to completion,
        output appended to its log; raise :class:`CloudError` on failure.
        """
        log = self.log_path(name)
        with open(log, 'ab') as out:
            out.write(('$ %s\n' % ' '.join(argv)).encode())
            out.flush()
            try:
                result = subprocess.run(
                    list(argv), env=self._env(env), stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise CloudError('%s: timed out after %ds\n%s'
                                 % (name, timeout, log_tail(log)))
        if result.returncode != 0:
            raise CloudError('%s: exit status %d\n%s'
                             % (name, result.returncode, log_tail(log)))

    @staticmethod
    def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra or {})
        return env

    def start(self, name: str, argv: Sequence[str],
              env: Mapping[str, str] | None = None,
              cwd: str | None = None,
              port: tuple[str, int] | None = None,
              ids: tuple[int, int, Sequence[int]] | None = None
              ) -> subprocess.Popen:
        """Start a long-running service in its own session. ``port``
        (host, port) is where it will listen: refused if something else
        already does, so that a readiness check never talks to a stranger.
        ``ids`` (uid, gid, supplementary gids): run it as that user
        instead of this process's.
        """
        if port and port_open(*port):
            raise CloudError(
                '%s: %s:%d is already in use (another cloud? set '
                'SPARC_CLOUD_PORT_BASE)' % (name, port[0], port[1]))
        user = {}
        if ids is not None:
            user = {'user': ids[0], 'group': ids[1],
                    'extra_groups': list(ids[2])}
        with open(self.log_path(name), 'ab') as out:
            proc = subprocess.Popen(
                list(argv), env=self._env(env), cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, **user)
        self.procs[name] = proc
        os.makedirs(self.run_dir, exist_ok=True)
        with open(self._pid_path(name), 'w') as f:
            f.write('%d %s\n' % (proc.pid, _start_time(proc.pid)))
        return proc

    def check(self, name: str) -> None:
        """Raise :class:`CloudError` if the service has exited."""
        rc = self.procs[name].poll()
        if rc is not None:
            raise CloudError('%s exited with status %d\n%s'
                             % (name, rc, log_tail(self.log_path(name))))

    def wait_until(self, name: str, ready: Callable[[], bool],
                   what: str, timeout: float = 120) -> None:
        """Wait until ``ready()`` is true while ``name`` keeps running."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check(name)
            if time.monotonic() > deadline:
                raise CloudError('%s: not %s after %ds\n%s' % (
                    name, what, timeout, log_tail(self.log_path(name))))
            time.sleep(0.3)

    def wait_port(self, name: str, host: str, port: int,
                  timeout: float = 120) -> None:
        self.wait_until(name, lambda: port_open(host, port),
                        'listening on %s:%d' % (host, port), timeout)

    def stop(self, name: str, timeout: float = 15) -> None:
        """SIGTERM the service's process group, SIGKILL what is left after
        ``timeout`` seconds. A service this object did not start is found
        through its pid file (a cloud brought up by another process).
        """
        proc = self.procs.pop(name, None)
        if proc is not None:
            _stop_group(proc.pid, timeout, lambda: proc.poll() is None)
            proc.wait()
            self._forget(name)
        else:
            self._stop_recorded(name + '.pid', timeout)

    def _forget(self, name: str) -> None:
        try:
            os.unlink(self._pid_path(name))
        except FileNotFoundError:
            pass

    def _stop_recorded(self, entry: str, timeout: float) -> bool:
        """Stop the process of pid file ``entry`` if it is still the one
        that was started; remove the file. True if it was running.
        """
        path = os.path.join(self.run_dir, entry)
        try:
            with open(path) as f:
                pid_text, _, started = f.read().strip().partition(' ')
        except FileNotFoundError:
            return False
        pid = int(pid_text)
        running = _start_time(pid) == started
        if running:
            _stop_group(pid, timeout, lambda: _start_time(pid) == started)
        os.unlink(path)
        return running

    def stop_all(self, order: Sequence[str] = ()) -> None:
        """Stop ``order`` first (in that order), then everything else
        started here, newest first.
        """
        for name in list(order) + list(reversed(list(self.procs))):
            if name in self.procs:
                self.stop(name)

    def stop_leftovers(self) -> list[str]:
        """Stop the processes whose pid files a previous run left (only
        when the process is still the one that was started). Returns their
        names.
        """
        stopped = []
        if not os.path.isdir(self.run_dir):
            return stopped
        for entry in sorted(os.listdir(self.run_dir)):
            if entry.endswith('.pid') and self._stop_recorded(entry, 10):
                stopped.append(entry[:-4])
        return stopped


def _stop_group(pid: int, timeout: float, alive: Callable[[], bool]) -> None:
    """SIGTERM the process group led by ``pid`` (its own session), wait
    while ``alive()`` for at most ``timeout`` seconds, then SIGKILL
    whatever is left in the group.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            break
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
