"""Run guest-data parsing in an unprivileged, resource-limited child.

Checkpoint contents are hostile: the guest controls every byte of its
memory, and introspecting it means following pointers, parsing BTF and
kallsyms tables and walking kernel lists it wrote. That work runs in a
child process that:

* gets the files it needs as already-open, read-only descriptors and
  cannot open anything else of value: when started as root it runs as
  ``[sparc] sandbox_user`` with no supplementary groups
  (util-linux ``setpriv``), no capabilities (empty bounding, inheritable
  and ambient sets) and ``no_new_privs``;
* has no network: a new, empty network namespace (``unshare --net``)
  when the caller may create one, and a seccomp filter (when Debian's
  python3-seccomp is installed) that refuses sockets, exec, ptrace and
  opening files for writing;
* is bounded: address space (the mapped checkpoint plus
  ``sandbox_memory_mib``), CPU time, open files, no file writes
  (RLIMIT_FSIZE 0), no core dumps, a wall-clock timeout;
* returns only a JSON document, size-capped, which the caller must
  validate before acting on it.

The work itself is a plain function ``fn(args: dict, files: dict) -> dict``
named by ``"module:function"``; ``files`` maps names to read-only binary
file objects. :func:`run` is the parent side; running this module is the
child side (``python -m sparc_nova.engine.sandbox``).
"""

import dataclasses
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

from sparc_nova import exception
from sparc_nova import unprivileged

#: Exit status of a child that reports a handled error in its JSON.
EXIT_REPORTED = 3
#: Largest request document accepted by the child, in bytes.
MAX_REQUEST = 16 * 1024 * 1024
#: Modules whose functions may be run in the sandbox.
ALLOWED_PREFIXES = ('sparc_nova.',)


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
    """

    user: str | None = 'nobody'
    group: str | None = 'nogroup'
    memory_bytes: int = 4096 * 1024 * 1024
    cpu_seconds: int = 900
    timeout: float = 1800
    max_result: int = 256 * 1024 * 1024
    enabled: bool = True

    @classmethod
    def from_conf(cls, conf) -> 'SandboxPolicy':
        s = conf.sparc
        return cls(user=s.sandbox_user, group=s.sandbox_group,
                   memory_bytes=s.sandbox_memory_mib * 1024 * 1024,
                   cpu_seconds=s.sandbox_cpu_seconds,
                   timeout=s.sandbox_timeout,
                   max_result=s.sandbox_max_result_mib * 1024 * 1024,
                   enabled=s.sandbox_enabled)


def _can_unshare_net() -> bool:
    if os.geteuid() != 0 or not shutil.which('unshare'):
        return False
    return subprocess.run(['unshare', '--net', '--', 'true'],
                          capture_output=True).returncode == 0


def _switched_before_exec(policy: SandboxPolicy) -> bool:
    """Whether the child switches to ``policy.user`` in the fork, before
    ``exec``: in a process where ``exec`` gives uid 0 no capabilities
    (the locked-down privsep daemon), ``setpriv`` could not switch.
    """
    return bool(os.geteuid() == 0 and policy.user and
                not unprivileged.exec_regains_root())


def _unprivileged_command(policy: SandboxPolicy) -> list[str]:
    """The wrappers of a child that is already ``policy.user``: a new
    user namespace holding an empty network namespace when the kernel
    allows it (no capability outside it), and ``no_new_privs``.
    """
    cmd = []
    if shutil.which('unshare') and subprocess.run(
            ['unshare', '--user', '--net', '--', 'true'],
            capture_output=True, cwd='/', **unprivileged.popen_credentials(
                policy.user, policy.group)).returncode == 0:
        cmd += ['unshare', '--user', '--net', '--']
    setpriv = shutil.which('setpriv')
    if not setpriv:
        raise SandboxError('setpriv (util-linux) is needed to set '
                           'no_new_privs for the parsing sandbox')
    return cmd + [setpriv, '--no-new-privs', '--inh-caps=-all', '--',
                  sys.executable, '-m', 'sparc_nova.engine.sandbox']


def _command(policy: SandboxPolicy) -> list[str]:
    """The confinement wrappers, outermost first, then the child."""
    if _switched_before_exec(policy):
        return _unprivileged_command(policy)
    cmd = []
    if _can_unshare_net():
        cmd += ['unshare', '--net', '--']
    setpriv = shutil.which('setpriv')
    if setpriv:
        cmd += [setpriv, '--no-new-privs']
        if os.geteuid() == 0 and policy.user:
            cmd += ['--reuid=%s' % policy.user,
                    '--regid=%s' % (policy.group or policy.user),
                    '--clear-groups', '--inh-caps=-all',
                    '--bounding-set=-all']
        cmd += ['--']
    elif os.geteuid() == 0 and policy.user:
        raise SandboxError('setpriv (util-linux) is needed to drop '
                           'privileges for the parsing sandbox')
    return cmd + [sys.executable, '-m', 'sparc_nova.engine.sandbox']


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
        policy: SandboxPolicy = SandboxPolicy()) -> dict:
    """Run ``entry`` (``"module:function"``) in the sandbox and wait for
    its result: ``start(...).result()``.

    :param args: JSON-serialisable arguments.
    :param files: name -> path or open file object; each is opened
        read-only here (again, for a file object) and handed to the child
        as a descriptor.
    :returns: the function's JSON result (a dict), unvalidated: the
        caller must check it before use.
    :raises SandboxError: the child failed, was killed by a limit, or
        returned something that is not a JSON object within the size cap;
        a :class:`~sparc_nova.exception.SparcError` the child raised is
        re-raised as SandboxError with its message.
    """
    return start(entry, args, files, policy).result()


def start(entry: str, args: dict, files: dict[str, str],
          policy: SandboxPolicy = SandboxPolicy(),
          growing: int = 0) -> 'Pending':
    """Start ``entry`` in the sandbox (see :func:`run` for the arguments)
    and return at once, so that the caller can work while the child
    does; :meth:`Pending.result` waits for it.

    :param growing: bytes the files may still grow by (a checkpoint being
        written), added to the address-space limit like their present
        size, twice (a follower maps a growing file anew as it grows).
    """
    if not entry.startswith(ALLOWED_PREFIXES):
        raise SandboxError('%s may not run in the sandbox' % entry)
    if not policy.enabled:
        return Pending(entry, policy, result=_call(
            entry, args, {n: os.fdopen(_open_ro(p), 'rb')
                          for n, p in files.items()}))
    fds = {name: _open_ro(path) for name, path in files.items()}
    try:
        mapped = sum(os.fstat(fd).st_size for fd in fds.values())
        request = json.dumps({
            'entry': entry, 'args': args, 'fds': fds,
            'limits': {'as': mapped + 2 * growing + policy.memory_bytes,
                       'cpu': policy.cpu_seconds,
                       'nofile': 64 + len(fds)}}).encode()
        env = {k: v for k, v in os.environ.items()
               if k in ('PATH', 'LANG', 'LC_ALL', 'PYTHONPATH')}
        for fd in fds.values():
            os.set_inheritable(fd, True)
        credentials = unprivileged.popen_credentials(
            policy.user, policy.group) if _switched_before_exec(policy) \
            else {}
        proc = subprocess.Popen(
            _command(policy), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=tuple(fds.values()), env=env, cwd='/', **credentials)
    finally:
        for fd in fds.values():
            os.close(fd)
    return Pending(entry, policy, proc=proc, request=request)


class Pending:
    """A sandboxed call under way (see :func:`start`)."""

    def __init__(self, entry: str, policy: SandboxPolicy, proc=None,
                 request: bytes = b'', result: dict | None = None):
        self.entry = entry
        self.policy = policy
        self._proc = proc
        self._result = result
        self._deadline = time.monotonic() + policy.timeout
        if proc is not None:
            # The child reads its whole request first thing; a writer
            # thread keeps a request larger than the pipe from blocking
            # the caller until the child's interpreter is up.
            self._writer = threading.Thread(
                target=self._send, args=(request,), daemon=True,
                name='sandbox-request')
            self._writer.start()

    def _send(self, request: bytes) -> None:
        try:
            self._proc.stdin.write(request)
            self._proc.stdin.close()
        except OSError:
            pass    # the child died: result() reports how

    def result(self) -> dict:
        """Wait for the child and return its result (see :func:`run`)."""
        if self._proc is None:
            return self._result
        self._writer.join(max(self._deadline - time.monotonic(), 0))
        self._proc.stdin = None     # the writer thread closed it
        try:
            out, err = self._proc.communicate(
                timeout=max(self._deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self.cancel()
            raise SandboxError('%s did not finish within %ss and was '
                               'killed' % (self.entry, self.policy.timeout))
        proc = subprocess.CompletedProcess(self._proc.args,
                                           self._proc.returncode, out, err)
        return _result(self.entry, proc, self.policy)

    def cancel(self) -> None:
        """Stop the child (the caller gave up on it); never raises.

        The child runs as another user: a caller without CAP_KILL (the
        Nova privsep daemon keeps only the file capabilities) may not
        signal it. Then the pipes are closed instead: the child dies on
        its next write (EPIPE), its CPU time is capped by RLIMIT_CPU, and
        :mod:`subprocess` reaps it once it has exited.
        """
        if self._proc is None:
            return
        try:
            if self._proc.poll() is None:
                self._proc.kill()
        except PermissionError:
            for pipe in (self._proc.stdout, self._proc.stderr):
                pipe.close()
            return
        self._writer.join()
        self._proc.stdin = None
        self._proc.communicate()


def _result(entry, proc, policy) -> dict:
    out = proc.stdout
    if len(out) > policy.max_result:
        raise SandboxError('%s returned %d bytes, more than the %d allowed'
                           % (entry, len(out), policy.max_result))
    if proc.returncode < 0:
        raise SandboxError('%s was killed by signal %d (a resource limit?)'
                           % (entry, -proc.returncode))
    try:
        doc = json.loads(out) if out else None
    except ValueError:
        doc = None
    if proc.returncode == EXIT_REPORTED and isinstance(doc, dict) and \
            isinstance(doc.get('error'), str):
        raise ReportedError(doc['error'][:2000])
    if proc.returncode != 0 or not isinstance(doc, dict) or \
            not isinstance(doc.get('result'), dict):
        err = proc.stderr.decode('utf-8', 'replace').strip()
        raise SandboxError('%s failed (exit %d): %s' % (
            entry, proc.returncode, err.splitlines()[-1][:500]
            if err else 'no result'))
    return doc['result']


def _call(entry: str, args: dict, files: dict) -> dict:
    module, _, func = entry.partition(':')
    fn = getattr(importlib.import_module(module), func)
    try:
        return fn(args, files)
    finally:
        for f in files.values():
            f.close()


# -- child side ---------------------------------------------------------------

def _apply_limits(limits: dict) -> None:
    """Lower each limit to the configured value; a limit the parent
    already set lower (an operator's ulimit, a test harness) is kept, as
    an unprivileged process may not raise it.
    """
    for res, value in ((resource.RLIMIT_AS, limits['as']),
                       (resource.RLIMIT_CPU, limits['cpu']),
                       (resource.RLIMIT_NOFILE, limits['nofile']),
                       (resource.RLIMIT_FSIZE, 0),
                       (resource.RLIMIT_CORE, 0)):
        _, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(res, (value, value))


def _apply_seccomp() -> bool:
    """Refuse sockets, exec, ptrace and write-opens. Returns False when
    python3-seccomp is not installed (the other confinements remain).
    """
    try:
        import seccomp
    except ImportError:
        return False
    import errno
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in ('socket', 'socketpair', 'connect', 'bind', 'listen',
                 'accept', 'accept4', 'execve', 'execveat', 'ptrace',
                 'process_vm_writev', 'mount', 'unshare', 'setns', 'bpf',
                 'keyctl', 'add_key', 'perf_event_open', 'kexec_load',
                 'init_module', 'finit_module', 'link', 'linkat',
                 'rename', 'renameat', 'renameat2', 'unlink', 'unlinkat',
                 'mkdir', 'mkdirat', 'chmod', 'fchmod', 'fchmodat',
                 'chown', 'fchown', 'lchown', 'fchownat', 'truncate'):
        f.add_rule(deny, name)
    for bit in (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC):
        f.add_rule(deny, 'open', seccomp.Arg(1, seccomp.MASKED_EQ, bit, bit))
        f.add_rule(deny, 'openat',
                   seccomp.Arg(2, seccomp.MASKED_EQ, bit, bit))
    f.load()
    return True


def _identity() -> dict:
    """The child's user, group, effective capabilities and
    no_new_privs, as the kernel reports them.
    """
    out = {'uid': os.getuid(), 'gid': os.getgid()}
    try:
        with open('/proc/self/status') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key == 'CapEff':
                    out['cap_eff'] = value.strip()
                elif key == 'NoNewPrivs':
                    out['no_new_privs'] = value.strip() == '1'
    except OSError:
        pass
    return out


def child_main() -> int:
    """Entry point of the sandbox child (stdin: request, stdout:
    result).
    """
    raw = sys.stdin.buffer.read(MAX_REQUEST + 1)
    if len(raw) > MAX_REQUEST:
        return 2
    req = json.loads(raw)
    _apply_limits(req['limits'])
    out = sys.stdout.buffer
    # Import the work before seccomp: imports may need to open files.
    module, _, func = req['entry'].partition(':')
    fn = getattr(importlib.import_module(module), func)
    files = {name: os.fdopen(fd, 'rb') for name, fd in req['fds'].items()}
    seccomp_on = _apply_seccomp()
    try:
        result = fn(req['args'], files)
    except exception.SparcError as e:
        out.write(json.dumps({'error': str(e)}).encode())
        return EXIT_REPORTED
    if isinstance(result, dict):
        result.setdefault('_sandbox', dict(_identity(),
                                           seccomp=seccomp_on))
    out.write(json.dumps({'result': result}).encode())
    out.flush()
    return 0


if __name__ == '__main__':
    sys.exit(child_main())
