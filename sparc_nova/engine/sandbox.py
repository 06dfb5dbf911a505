"""Run guest-data parsing in a jailed, resource-limited child.

Checkpoint contents are hostile: the guest controls every byte of its
memory, and introspecting it means following pointers, parsing BTF and
kallsyms tables and walking kernel lists it wrote. That work runs in a
child process that:

* gets the files it needs as already-open, read-only descriptors, sent
  with its request over its standard input, a Unix socket
  (``SCM_RIGHTS``), so that it can be started before they are open
  (:func:`prestart`, :func:`keep_spare`); when started as root it first
  becomes ``[sparc] sandbox_user`` with no supplementary groups and no
  capabilities (util-linux ``setpriv``);
* enters its namespaces and makes itself not dumpable first thing,
  before it imports the work or waits for its request;
* then, before it reads a byte of guest data, jails itself
  (:mod:`.sandbox_jail`): new user, mount, PID, IPC, UTS, network and
  cgroup namespaces, an empty read-only root, Landlock, no capabilities,
  not dumpable, no fork, no descriptor but its own, and a seccomp
  allow-list whose default action kills it (:mod:`.sandbox_seccomp`).
  Without seccomp it refuses to run unless
  ``[sparc] sandbox_require_seccomp`` is false;
* is bounded: address space (the mapped checkpoint plus
  ``sandbox_memory_mib``), CPU time, open files, no file writes
  (RLIMIT_FSIZE 0), no core dumps, a wall-clock timeout;
* writes one line, its confinement record (what of the above is in
  force, written before any guest data is read), then one JSON document,
  the result. The parent keeps at most ``sandbox_max_result_mib`` as it
  reads (a child writing more is killed at once, through a pidfd),
  checks the nesting depth before it parses, and the caller validates
  the result before acting on it.

The work itself is a plain function ``fn(args: dict, files: dict) -> dict``
named by ``"module:function"``; ``files`` maps names to read-only binary
file objects. This module is the parent's side (:func:`run`,
:func:`start`, and the children started ahead: :func:`prestart`,
:func:`keep_spare`); the child's side is :mod:`.sandbox_child`
(``python -m sparc_nova.engine.sandbox_child``), and its jail
:mod:`.sandbox_jail`.
"""

import dataclasses
import json
import logging
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from sparc_nova.engine import memstats
from sparc_nova.engine import sandbox_child
from sparc_nova.engine import sandbox_jail
from sparc_nova import exception
from sparc_nova import unprivileged

__all__ = ['ALLOWED_PREFIXES', 'CHILD_ENV', 'EXIT_REPORTED', 'MAX_DEPTH',
           'MAX_FDS', 'MAX_RECORD', 'MAX_REQUEST', 'MAX_STDERR', 'Pending',
           'ReportedError', 'SandboxError', 'SandboxPolicy',
           'confinement_summary', 'discard_spares', 'keep_spare',
           'prestart', 'run', 'start']

LOG = logging.getLogger(__name__)

#: Exit status of a child that reports a handled error in its JSON.
EXIT_REPORTED = sandbox_child.EXIT_REPORTED
#: Largest request document accepted by the child, in bytes.
MAX_REQUEST = sandbox_child.MAX_REQUEST
#: Most descriptors a request may carry.
MAX_FDS = sandbox_child.MAX_FDS
#: The module the child runs (``python -m``).
CHILD_MODULE = sandbox_child.__name__
#: Modules whose functions may be run in the sandbox.
ALLOWED_PREFIXES = ('sparc_nova.',)
#: Deepest nesting of arrays and objects in a result.
MAX_DEPTH = 128
#: Largest confinement record line, bytes.
MAX_RECORD = 4096
#: Environment of the child: numpy's BLAS and OpenMP start no threads
#: (the jail's confinements other than seccomp apply per thread, so the
#: child has no thread but its own); drgn loads no plugins.
CHILD_ENV = {'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1',
             'MKL_NUM_THREADS': '1', 'DRGN_DISABLE_PLUGINS': '*',
             # glibc: allocations from 1 MiB up (the index's arrays) are
             # mapped and unmapped on their own, so that memory freed is
             # returned at once (the threshold stays fixed, instead of
             # rising to the largest block freed).
             'MALLOC_MMAP_THRESHOLD_': str(memstats.MMAP_THRESHOLD)}
#: Bytes of the child's standard error kept (the last ones).
MAX_STDERR = 64 * 1024


class SandboxError(exception.SparcError):
    """The sandboxed work failed, or its result cannot be trusted."""


class ReportedError(SandboxError):
    """The work raised a :class:`~sparc_nova.exception.SparcError`; the
    message is its message.
    """


@dataclasses.dataclass(frozen=True)
class SandboxPolicy:
    """How the child is confined (see the module docstring).

    :ivar user: user to run as when started as root (None: do not switch).
    :ivar group: group to run as when started as root.
    :ivar memory_bytes: address-space limit on top of the mapped files.
    :ivar cpu_seconds: CPU time limit.
    :ivar timeout: wall-clock limit, seconds.
    :ivar max_result: largest JSON result, bytes.
    :ivar enabled: False runs the function in-process (debugging only).
    :ivar require_seccomp: refuse to run when the seccomp allow-list
        cannot be installed.
    """

    user: str | None = 'nobody'
    group: str | None = 'nogroup'
    memory_bytes: int = 4096 * 1024 * 1024
    cpu_seconds: int = 900
    timeout: float = 1800
    max_result: int = 256 * 1024 * 1024
    enabled: bool = True
    require_seccomp: bool = True

    @classmethod
    def from_conf(cls, conf) -> 'SandboxPolicy':
        s = conf.sparc
        return cls(user=s.sandbox_user, group=s.sandbox_group,
                   memory_bytes=s.sandbox_memory_mib * 1024 * 1024,
                   cpu_seconds=s.sandbox_cpu_seconds,
                   timeout=s.sandbox_timeout,
                   max_result=s.sandbox_max_result_mib * 1024 * 1024,
                   enabled=s.sandbox_enabled,
                   require_seccomp=s.sandbox_require_seccomp)


def _switched_before_exec(sandbox_policy: SandboxPolicy) -> bool:
    """Whether the child switches to ``sandbox_policy.user`` in the
    fork, before ``exec``: in a process where ``exec`` gives uid 0 no
    capabilities (the locked-down privsep daemon), ``setpriv`` could not
    switch.
    """
    return bool(os.geteuid() == 0 and sandbox_policy.user and
                not unprivileged.exec_regains_root())


def _unprivileged_command(sandbox_policy: SandboxPolicy) -> list[str]:
    """The wrapper of a child that is already ``sandbox_policy.user``:
    ``no_new_privs`` and no inheritable capabilities. Its namespaces
    (user, mount, pid, ipc, uts, net) are made by the child itself
    (:mod:`.sandbox_jail`): a user namespace made here, with no mapping
    for the child's uid, would keep the jail from making its own.
    """
    cmd = []
    setpriv = shutil.which('setpriv')
    if not setpriv:
        raise SandboxError('setpriv (util-linux) is needed to set '
                           'no_new_privs for the parsing sandbox')
    return cmd + [setpriv, '--no-new-privs', '--inh-caps=-all', '--',
                  sys.executable, '-m', CHILD_MODULE]


def _command(sandbox_policy: SandboxPolicy) -> list[str]:
    """The confinement wrappers, outermost first, then the child."""
    if _switched_before_exec(sandbox_policy):
        return _unprivileged_command(sandbox_policy)
    cmd = []
    setpriv = shutil.which('setpriv')
    if setpriv:
        cmd += [setpriv, '--no-new-privs']
        if os.geteuid() == 0 and sandbox_policy.user:
            cmd += ['--reuid=%s' % sandbox_policy.user,
                    '--regid=%s' % (sandbox_policy.group or
                                    sandbox_policy.user),
                    '--clear-groups', '--inh-caps=-all',
                    '--bounding-set=-all']
        cmd += ['--']
    elif os.geteuid() == 0 and sandbox_policy.user:
        raise SandboxError('setpriv (util-linux) is needed to drop '
                           'privileges for the parsing sandbox')
    return cmd + [sys.executable, '-m', CHILD_MODULE]


def _open_ro(source) -> int:
    """A new read-only descriptor of ``source``: a path (a symbolic link
    is refused) or an open file object, re-opened through
    ``/proc/self/fd`` so that the child never shares a writable open
    file description.
    """
    if isinstance(source, str):
        path, flags = source, os.O_NOFOLLOW
    else:
        path, flags = '/proc/self/fd/%d' % source.fileno(), 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    except OSError as e:
        raise SandboxError('%s: cannot open for the sandbox: %s'
                           % (getattr(source, 'name', path), e.strerror))
    if not isinstance(source, str):
        a, b = os.fstat(fd), os.fstat(source.fileno())
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            os.close(fd)
            raise SandboxError('%s: re-opened a different file'
                               % getattr(source, 'name', path))
    return fd


def run(entry: str, args: dict, files: dict[str, str],
        sandbox_policy: SandboxPolicy = SandboxPolicy(),
        keep: tuple[str, ...] = (), prepare: str | None = None) -> dict:
    """Run ``entry`` (``"module:function"``) in the sandbox and wait for
    its result: ``start(...).result()``.

    :param args: JSON-serialisable arguments.
    :param files: name -> path or open file object; each is opened
        read-only here (again, for a file object) and handed to the child
        as a descriptor.
    :param keep: directories the work opens by path; they are bound
        read-only into the child's otherwise empty root.
    :param prepare: ``"module:function"`` the child calls (without
        arguments) before it is jailed, to load what the work needs from
        the file system (plugins, tables): the jail's root is empty.
    :returns: the function's JSON result (a dict), unvalidated: the
        caller must check it before use. Its ``"_sandbox"`` entry is the
        child's confinement record.
    :raises SandboxError: the child failed, was killed by a limit, or
        returned something that is not a JSON object within the size and
        depth caps; a :class:`~sparc_nova.exception.SparcError` the child
        raised is re-raised as ReportedError with its message.
    """
    return start(entry, args, files, sandbox_policy, keep=keep,
                 prepare=prepare).result()


def start(entry: str, args: dict, files: dict[str, str],
          sandbox_policy: SandboxPolicy = SandboxPolicy(),
          growing: int = 0, keep: tuple[str, ...] = (),
          prepare: str | None = None) -> 'Pending':
    """Start ``entry`` in the sandbox (see :func:`run` for the arguments)
    and return at once, so that the caller can work while the child
    does; :meth:`Pending.result` waits for it. A child :func:`prestart`
    made ready for ``sandbox_policy`` is used when there is one.

    :param growing: bytes the files may still grow by (a checkpoint being
        written), added to the address-space limit like their present
        size, twice (a follower maps a growing file anew as it grows).
    """
    _check_allowed([entry] + ([prepare] if prepare else []))
    if not sandbox_policy.enabled:
        return Pending(entry, sandbox_policy, result=_call(
            entry, args, {n: os.fdopen(_open_ro(p), 'rb')
                          for n, p in files.items()}))
    if len(files) > MAX_FDS:
        raise SandboxError('%d files for the sandbox, at most %d'
                           % (len(files), MAX_FDS))
    fds = {name: _open_ro(path) for name, path in files.items()}
    try:
        mapped = sum(os.fstat(fd).st_size for fd in fds.values())
        request = json.dumps({
            'entry': entry, 'prepare': prepare, 'args': args,
            'fds': {name: i for i, name in enumerate(fds)},
            'keep': [k for k in keep if k],
            'require_seccomp': sandbox_policy.require_seccomp,
            'limits': {'as': (mapped + 2 * growing +
                              sandbox_policy.memory_bytes),
                       'cpu': sandbox_policy.cpu_seconds,
                       'nofile': 64 + len(fds)}}).encode()
        if len(request) > MAX_REQUEST:
            raise SandboxError('%s: request of %d bytes, more than the %d '
                               'the child reads' % (entry, len(request),
                                                    MAX_REQUEST))
        child = _take_spare(sandbox_policy)
        if child is not None and not child.send_head(request, fds.values()):
            child.discard()
            child = None
        if child is None:
            child = _Child.spawn(sandbox_policy, (entry,), prepare)
            # A child that died before reading says why in result().
            child.send_head(request, fds.values())
    finally:
        for fd in fds.values():
            os.close(fd)
    return Pending(entry, sandbox_policy, child=child,
                   request=request[sandbox_child.FIRST_CHUNK:])


def prestart(sandbox_policy: SandboxPolicy, preload: tuple[str, ...] = (),
             prepare: str | None = None) -> None:
    """Start a child for ``sandbox_policy`` now, to be used by the next
    :func:`start` with that policy in this process: its interpreter
    start-up and the imports of ``preload`` (``"module:function"`` names)
    and ``prepare`` happen while the caller does other work. The child
    is given no file and no request until then: it waits in its
    namespaces, not dumpable, and applies its limits and the rest of its
    jail once given its files, as any child does. It serves one call
    only. A spare already waiting for that policy is replaced. Does
    nothing when the sandbox is disabled.

    The spare exits by itself when this process exits or calls
    :func:`discard_spares` (it reads the end of its request socket).
    """
    if not sandbox_policy.enabled:
        return
    _check_allowed(list(preload) + ([prepare] if prepare else []))
    child = _Child.spawn(sandbox_policy, preload, prepare)
    with _SPARES_LOCK:
        old = _SPARES.pop(sandbox_policy, None)
        _SPARES[sandbox_policy] = child
    if old is not None:
        old.discard()


def keep_spare(sandbox_policy: SandboxPolicy, preload: tuple[str, ...] = (),
               prepare: str | None = None) -> None:
    """Keep a child for ``sandbox_policy`` started ahead (see
    :func:`prestart`) in this long-lived process: one now if none is
    waiting, and a new one each time a call with that policy has ended.
    One idle child waits at most: the spares of other policies are let
    go. A spare that cannot be started is logged and the next call starts
    its own.
    """
    if not sandbox_policy.enabled:
        return
    with _SPARES_LOCK:
        # A new policy (the configuration changed) replaces the old one:
        # its spare would never be used again.
        stale = [_SPARES.pop(p) for p in list(_SPARES)
                 if p != sandbox_policy]
        _KEPT.clear()
        _KEPT[sandbox_policy] = (tuple(preload), prepare)
        waiting = sandbox_policy in _SPARES
    for child in stale:
        child.discard()
    if not waiting:
        _replenish(sandbox_policy)


def discard_spares() -> None:
    """Let every child :func:`prestart` left waiting exit, and reap it;
    stop keeping spares (:func:`keep_spare`).
    """
    with _SPARES_LOCK:
        spares = list(_SPARES.values())
        _SPARES.clear()
        _KEPT.clear()
    for child in spares:
        child.discard()


def _replenish(sandbox_policy: SandboxPolicy) -> None:
    """Start the spare :func:`keep_spare` asked for, if none waits."""
    with _SPARES_LOCK:
        kept = _KEPT.get(sandbox_policy)
        if kept is None or sandbox_policy in _SPARES:
            return
    try:
        prestart(sandbox_policy, *kept)
    except (SandboxError, OSError) as e:
        LOG.warning('Could not start a spare sandbox child: %s', e)


def _check_allowed(names: list[str]) -> None:
    for name in names:
        if not name.startswith(ALLOWED_PREFIXES):
            raise SandboxError('%s may not run in the sandbox' % name)


#: Children :func:`prestart` made, waiting for their request, by policy.
_SPARES: dict[SandboxPolicy, '_Child'] = {}
#: What :func:`keep_spare` keeps a spare for: policy -> (preload, prepare).
_KEPT: dict[SandboxPolicy, tuple[tuple[str, ...], str | None]] = {}
_SPARES_LOCK = threading.Lock()


def _take_spare(sandbox_policy: SandboxPolicy) -> '_Child | None':
    with _SPARES_LOCK:
        child = _SPARES.pop(sandbox_policy, None)
    if child is not None and child.proc.poll() is not None:
        child.discard()
        return None
    return child


class _Child:
    """A started sandbox child and this process's end of its request
    socket (the child's standard input: a Unix stream socket, so that
    the files' descriptors can follow the child's start, in the first
    message of the request, as ``SCM_RIGHTS``).
    """

    def __init__(self, proc: subprocess.Popen, sock: socket.socket):
        self.proc = proc
        self.sock = sock

    @classmethod
    def spawn(cls, sandbox_policy: SandboxPolicy, preload: tuple[str, ...],
              prepare: str | None) -> '_Child':
        """Start the child (:func:`_command`), which imports ``preload``
        and runs ``prepare`` while it waits for its request.
        """
        argv = _command(sandbox_policy)
        for name in preload:
            argv += ['--preload', name]
        if prepare:
            argv += ['--prepare', prepare]
        env = {k: v for k, v in os.environ.items()
               if k in ('PATH', 'LANG', 'LC_ALL', 'PYTHONPATH')}
        env.update(CHILD_ENV)
        credentials = unprivileged.popen_credentials(
            sandbox_policy.user, sandbox_policy.group) \
            if _switched_before_exec(sandbox_policy) else {}
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                argv, stdin=theirs.fileno(), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, cwd='/', **credentials)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(proc, ours)

    def send_head(self, request: bytes, fds) -> bool:
        """Send the start of ``request`` with the descriptors ``fds``
        (:data:`.sandbox_child.FIRST_CHUNK` bytes: the socket's buffer
        holds them whether or not the child reads yet). False when the
        child is gone.
        """
        head = request[:sandbox_child.FIRST_CHUNK]
        try:
            socket.send_fds(self.sock, [head], list(fds),
                            socket.MSG_NOSIGNAL)
        except OSError:
            return False
        return True

    def discard(self) -> None:
        """Stop a child that was never given a request, and reap it: it
        holds nothing, so it is killed rather than left to finish its
        imports. Without the right to signal it, closing its socket
        makes it exit once it reads.
        """
        self.sock.close()
        for pipe in (self.proc.stdout, self.proc.stderr):
            pipe.close()
        try:
            self.proc.kill()
        except PermissionError:
            pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            LOG.warning('A spare sandbox child (pid %d) did not exit',
                        self.proc.pid)


class Pending:
    """A sandboxed call under way (see :func:`start`).

    Two threads serve the child while the caller works: one writes the
    request, one reads the child's output as it comes, keeping at most
    ``sandbox_policy.max_result`` bytes of its standard output (a child that
    writes more is killed at once) and the last :data:`MAX_STDERR` bytes
    of its standard error.
    """

    def __init__(self, entry: str, sandbox_policy: SandboxPolicy,
                 child: _Child | None = None, request: bytes = b'',
                 result: dict | None = None):
        self.entry = entry
        self.sandbox_policy = sandbox_policy
        self._child = child
        proc = self._proc = child.proc if child is not None else None
        self._result = result
        self._deadline = time.monotonic() + sandbox_policy.timeout
        self._out = bytearray()
        self._err = bytearray()
        self._overflow = False
        self._pidfd = None
        #: The child's pid (None without the sandbox), for
        #: :class:`.memstats.MemorySampler`.
        self.pid = proc.pid if proc is not None else None
        #: The figures the child reported about itself just before it
        #: exited (a :class:`.memstats.ProcessMemory`), once
        #: :meth:`result` returned; None if it reported none.
        self.memory = None
        if proc is not None:
            # A pidfd names this child and no other, even once it has
            # exited and its pid is reused.
            self._pidfd = os.pidfd_open(proc.pid)
            # A writer thread sends the rest of the request: one larger
            # than the socket's buffer would block the caller until the
            # child's interpreter is up.
            self._writer = threading.Thread(
                target=self._send, args=(request,), daemon=True,
                name='sandbox-request')
            self._writer.start()
            self._reader = threading.Thread(
                target=self._drain, daemon=True, name='sandbox-output')
            self._reader.start()

    def _send(self, request: bytes) -> None:
        sock = self._child.sock
        try:
            sock.sendall(request, socket.MSG_NOSIGNAL)
            sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            pass    # the child died: result() reports how

    def _drain(self) -> None:
        """Read the child's stdout and stderr until both end, within the
        caps (see the class docstring).
        """
        out, err = self._proc.stdout, self._proc.stderr
        sel = selectors.DefaultSelector()
        try:
            sel.register(out, selectors.EVENT_READ)
            sel.register(err, selectors.EVENT_READ)
            while sel.get_map():
                for key, _ in sel.select():
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is err:
                        self._err += chunk
                        del self._err[:-MAX_STDERR]
                    elif len(self._out) + len(chunk) > \
                            self.sandbox_policy.max_result + MAX_RECORD:
                        self._overflow = True
                        if not self._kill():
                            out.close()     # it dies writing (EPIPE)
                        return
                    else:
                        self._out += chunk
        except (OSError, ValueError):
            pass    # cancel() closed the pipes
        finally:
            sel.close()

    def _kill(self) -> bool:
        """SIGKILL the child through its pidfd; False when this process
        may not signal it.
        """
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        return True

    def result(self) -> dict:
        """Wait for the child and return its result (see :func:`run`)."""
        if self._proc is None:
            return self._result
        for t in (self._writer, self._reader):
            t.join(max(self._deadline - time.monotonic(), 0))
        try:
            if self._reader.is_alive():
                raise subprocess.TimeoutExpired(self._proc.args, 0)
            self._proc.wait(max(self._deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self.cancel()
            raise SandboxError('%s did not finish within %ss and was '
                               'killed' % (self.entry,
                                           self.sandbox_policy.timeout))
        self._close()
        _replenish(self.sandbox_policy)
        if self._overflow:
            raise SandboxError('%s wrote more than the %d bytes allowed '
                               'and was killed'
                               % (self.entry, self.sandbox_policy.max_result))
        out, memory = _split_memory(bytes(self._out))
        result = _result(self.entry, self._proc.returncode, out,
                         bytes(self._err), self.sandbox_policy)
        self.memory = memory
        return result

    def cancel(self) -> None:
        """Stop the child (the caller gave up on it); never raises.

        The child runs as another user: the caller needs CAP_KILL to
        signal it (the Nova privsep daemon keeps it for this). Without it
        the pipes are closed instead: the child dies on its next write
        (EPIPE), its CPU time is capped by RLIMIT_CPU, and
        :mod:`subprocess` reaps it once it has exited.
        """
        if self._proc is None or self._pidfd is None:
            return
        if self._proc.poll() is None and not self._kill():
            for pipe in (self._proc.stdout, self._proc.stderr):
                pipe.close()
            return
        self._writer.join()
        self._reader.join()
        self._proc.wait()
        self._close()
        _replenish(self.sandbox_policy)

    def _close(self) -> None:
        for pipe in (self._proc.stdout, self._proc.stderr):
            pipe.close()
        self._child.sock.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _split_record(out: bytes) -> tuple[dict, bytes]:
    """The child's confinement record (its first line) and the rest."""
    line, nl, rest = out.partition(b'\n')
    if not nl or len(line) > MAX_RECORD:
        return {}, out
    try:
        record = json.loads(line)
    except ValueError:
        return {}, out
    return (record if isinstance(record, dict) else {}), rest


def _result(entry: str, returncode: int, out: bytes, err: bytes,
            sandbox_policy: SandboxPolicy) -> dict:
    # numpy (bounded_json) is imported here, never by the child before
    # it has entered its namespaces (the kernel refuses a new user
    # namespace to a process with threads, and numpy starts some).
    from sparc_nova.engine import bounded_json
    record, out = _split_record(out)
    if len(out) > sandbox_policy.max_result:
        raise SandboxError('%s returned %d bytes, more than the %d allowed'
                           % (entry, len(out), sandbox_policy.max_result))
    if returncode < 0:
        raise SandboxError('%s was killed by signal %d (%s)' % (
            entry, -returncode, 'a system call outside the seccomp '
            'allow-list' if -returncode == signal.SIGSYS else
            'a resource limit?'))
    try:
        doc = bounded_json.loads(out, MAX_DEPTH) if out else None
    except bounded_json.TooDeep as e:
        raise SandboxError('%s returned %s' % (entry, e))
    except ValueError:
        doc = None
    if returncode == EXIT_REPORTED and isinstance(doc, dict) and \
            isinstance(doc.get('error'), str):
        raise ReportedError(doc['error'][:2000])
    if returncode != 0 or not isinstance(doc, dict) or \
            not isinstance(doc.get('result'), dict):
        raise SandboxError('%s failed (exit %d): %s' % (
            entry, returncode, _crash_name(err)))
    result = doc['result']
    result['_sandbox'] = record
    _log_confinement(entry, record, sandbox_policy)
    return result


def _split_memory(out: bytes
                  ) -> tuple[bytes, memstats.ProcessMemory | None]:
    """The child's output without its last line when that line holds
    its memory figures (see :func:`.sandbox_child.child_main`), and those
    figures, validated (None when absent or out of shape).
    """
    body, nl, last = out.rpartition(b'\n')
    if not nl or not last.startswith(b'{"memory": ') or \
            len(last) > MAX_RECORD:
        return out, None
    try:
        doc = json.loads(last)
    except ValueError:
        return body, None
    figures = doc.get('memory') if isinstance(doc, dict) else None
    return body, memstats.ProcessMemory.from_dict(figures)


def confinement_summary(record: dict) -> dict:
    """The confinement record as a report section: its known keys with
    values of the expected shapes only.
    """
    out = {}
    for key, value in record.items():
        if key in ('uid', 'gid', 'landlock_abi', 'dumpable', 'nproc',
                   'kept_paths') and type(value) is int:
            out[key] = value
        elif key in ('cap_eff', 'root', 'seccomp') and \
                isinstance(value, str) and len(value) <= 32:
            out[key] = value
        elif key == 'no_new_privs' and isinstance(value, bool):
            out[key] = value
        elif key == 'namespaces' and isinstance(value, list) and all(
                v in sandbox_jail.NAMESPACES for v in value):
            out[key] = list(value)
    return out


def _log_confinement(entry: str, record: dict, sandbox_policy: SandboxPolicy):
    level = logging.INFO if record.get('seccomp') == 'allow-list' \
        else logging.WARNING
    LOG.log(level, 'Sandbox %s ran with namespaces %s, %s root, Landlock '
            'ABI %s, seccomp %s%s', entry,
            ','.join(map(str, record.get('namespaces') or ())) or 'none',
            record.get('root'), record.get('landlock_abi'),
            record.get('seccomp'),
            '' if sandbox_policy.require_seccomp else
            ' ([sparc] sandbox_require_seccomp is false)')


def _crash_name(stderr: bytes) -> str:
    """What the child's stderr says it died of: the exception type of the
    traceback's last line only. Its message is left out: an unexpected
    error in the child can quote what it was parsing (guest memory).
    """
    lines = stderr.decode('utf-8', 'replace').strip().splitlines()
    if not lines:
        return 'no result'
    name = lines[-1].partition(':')[0].strip()
    if re.fullmatch(r'[A-Za-z_][\w.]{0,100}', name):
        return '%s (message not shown: it may quote guest data)' % name
    return 'no result (unrecognised output on stderr)'


def _call(entry: str, args: dict, files: dict) -> dict:
    fn = sandbox_child.function(entry)
    try:
        return fn(args, files)
    finally:
        for f in files.values():
            f.close()
