"""Turn the sandbox child into a jail (Linux only, x86-64).

The sandbox child (:mod:`.sandbox_child`) calls :func:`isolate` first
thing, before it imports the code it runs and waits for its request
(step 1), then :func:`confine` once it has its descriptors, before it
reads a byte of guest data (steps 2 to 6). In order, each where the host
allows it:

1. new user, mount, PID, IPC, UTS, network and cgroup namespaces
   (``unshare(2)``; the child is mapped to root of its own user namespace,
   to the unprivileged user it runs as outside). A new PID namespace only
   applies to children, so the process forks once: the new process is PID
   1 of its namespace and does the work, the first one only waits for it
   and exits as it did; the worker dies with it (``PR_SET_PDEATHSIG``), so
   killing the process the parent started kills both. Before the fork the
   process is made not dumpable (``PR_SET_DUMPABLE 0``: from then on only
   a process with CAP_SYS_PTRACE may attach to it or read its memory) and
   refuses to go on if a process of its own user attached to it before;
2. an empty root: a read-only tmpfs that holds nothing but read-only bind
   mounts of the directories listed in ``keep`` (the BUILD-ID cache),
   entered with ``pivot_root``; the host's file system is detached;
3. Landlock (ABI 1 or later) handling every file system access right,
   allowing only reading beneath ``keep``, and from ABI 4 on no TCP and
   from ABI 6 on no signals or abstract sockets outside the child;
4. every descriptor closed except stdout, stderr and those named in
   ``fds``;
5. no capabilities at all (bounding, ambient, permitted, effective,
   inheritable), locked securebits, ``no_new_privs``,
   ``PR_SET_DUMPABLE 0`` (no ptrace, no /proc access to it from its own
   user) and ``RLIMIT_NPROC 0`` (no fork, no thread);
6. the seccomp allow-list (:mod:`.sandbox_seccomp`).

:func:`confine` returns what is in force as a dict (the "confinement"
record): the parent logs it and puts it in the scrub report.
"""

import ctypes
import errno
import os
import resource
import select
import signal

from sparc_nova.engine import sandbox_seccomp

__all__ = ['JailError', 'NAMESPACES', 'confine', 'isolate', 'tracer']


class JailError(Exception):
    """A confinement that was asked for could not be applied."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p)

#: Namespace flags of clone(2)/unshare(2), by the name the report uses.
NAMESPACES = {'user': 0x10000000, 'mount': 0x00020000, 'pid': 0x20000000,
              'ipc': 0x08000000, 'uts': 0x04000000, 'net': 0x40000000,
              'cgroup': 0x02000000}

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_GET_DUMPABLE = 1, 4, 3
_PR_CAPBSET_DROP, _PR_SET_SECUREBITS = 24, 28
_PR_SET_NO_NEW_PRIVS, _PR_GET_NO_NEW_PRIVS = 38, 39
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
#: SECBIT_NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE,
#: each with its lock bit.
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_SYS_CAPGET, _SYS_CAPSET, _SYS_PIVOT_ROOT = 125, 126, 155
_SYS_LANDLOCK_CREATE, _SYS_LANDLOCK_ADD, _SYS_LANDLOCK_RESTRICT = \
    444, 445, 446
_LANDLOCK_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
#: Landlock file system rights per ABI version (cumulative).
_LL_FS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1,
          5: (1 << 16) - 1}
_LL_READ = (1 << 2) | (1 << 3)      # READ_FILE, READ_DIR
#: Where the empty root is built before pivot_root (any directory of the
#: host does; the mount is private to the child's mount namespace).
_STAGING = b'/tmp'


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise JailError('%s: %s' % (what, os.strerror(e)))
    return ret


def _prctl(option: int, arg: int = 0) -> int:
    return _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _unshare(uid: int, gid: int) -> list[str]:
    """Enter new namespaces; returns their names, [] when the host
    refuses an unprivileged user namespace.
    """
    flags = 0
    for value in NAMESPACES.values():
        flags |= value
    if _libc.unshare(flags) != 0:
        if ctypes.get_errno() in (errno.EPERM, errno.EINVAL, errno.ENOSPC,
                                  errno.EUSERS, errno.ENOSYS):
            return []
        _check(-1, 'unshare')
    _write('/proc/self/setgroups', 'deny')
    _write('/proc/self/uid_map', '0 %d 1' % uid)
    _write('/proc/self/gid_map', '0 %d 1' % gid)
    return list(NAMESPACES)


def _wait_for_worker(pid: int) -> None:
    """The first process after unshare: wait for the worker (PID 1 of the
    new namespace) and end the way it ended. Never returns.
    """
    # Not 0 either: the request socket is the worker's alone.
    for fd in [0] + list(range(3, 1024)):
        try:
            os.close(fd)
        except OSError:
            pass
    _drop_capabilities()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 125)


def _fork_into_pid_namespace() -> None:
    # The waiter is outside the new namespace (getppid() gives 0 there):
    # its pidfd tells whether it died before PR_SET_PDEATHSIG was set.
    waiter = os.pidfd_open(os.getpid())
    pid = os.fork()
    if pid:
        _wait_for_worker(pid)
    _check(_prctl(_PR_SET_PDEATHSIG, signal.SIGKILL), 'PR_SET_PDEATHSIG')
    poll = select.poll()
    poll.register(waiter, select.POLLIN)
    if poll.poll(0):
        os._exit(125)
    os.close(waiter)


def _mount(source, target, fstype, flags, data=None) -> None:
    _check(_libc.mount(source, target, fstype, flags, data),
           'mount %s' % (target or b'').decode())


def _empty_root(keep: list[str]) -> None:
    """pivot_root into a read-only tmpfs holding only ``keep`` (bound
    read-only, at the same paths).
    """
    _mount(None, b'/', None, _MS_REC | _MS_PRIVATE)
    _mount(b'sandbox', _STAGING, b'tmpfs',
           _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, b'size=64k,mode=0755')
    for path in keep:
        inside = _STAGING + os.fsencode(path)
        os.makedirs(inside, exist_ok=True)
        _mount(os.fsencode(path), inside, None, _MS_BIND | _MS_REC)
        _mount(None, inside, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY |
               _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.chdir(_STAGING)
    _check(_libc.syscall(_SYS_PIVOT_ROOT, b'.', b'.'), 'pivot_root')
    _check(_libc.umount2(b'.', _MNT_DETACH), 'umount old root')
    os.chdir('/')
    _mount(None, b'/', None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID |
           _MS_NODEV | _MS_NOEXEC)


def _landlock(keep: list[str]) -> int:
    """Restrict file access to reading beneath ``keep``; returns the
    Landlock ABI version applied, 0 when the kernel has none.
    """
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE, None, 0, _LANDLOCK_VERSION)
    if abi < 1:
        return 0
    fs = _LL_FS[max(v for v in _LL_FS if v <= abi)]
    attr = [fs]
    if abi >= 4:
        attr.append(3)          # no TCP bind, no TCP connect
    if abi >= 6:
        attr.append(3)          # no abstract unix sockets, no signals out
    buf = (ctypes.c_uint64 * len(attr))(*attr)
    rfd = _check(_libc.syscall(_SYS_LANDLOCK_CREATE, buf, ctypes.sizeof(buf),
                               0), 'landlock_create_ruleset')
    try:
        for path in keep:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = ctypes.create_string_buffer(
                    _LL_READ.to_bytes(8, 'little') +
                    pfd.to_bytes(4, 'little', signed=True))
                _check(_libc.syscall(_SYS_LANDLOCK_ADD, rfd,
                                     _LANDLOCK_RULE_PATH_BENEATH, rule, 0),
                       'landlock_add_rule %s' % path)
            finally:
                os.close(pfd)
        _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT, rfd, 0),
               'landlock_restrict_self')
    finally:
        os.close(rfd)
    return abi


def _close_others(keep_fds) -> None:
    keep = {1, 2, *keep_fds}
    for fd in range(0, resource.getrlimit(resource.RLIMIT_NOFILE)[0]):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


class _CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32),
                ('permitted', ctypes.c_uint32),
                ('inheritable', ctypes.c_uint32)]


def _drop_capabilities() -> None:
    """Empty every capability set; lock the securebits when allowed (in
    our own user namespace) so that nothing regains one.
    """
    _prctl(_PR_SET_SECUREBITS, _SECUREBITS)     # needs CAP_SETPCAP
    for cap in range(64):
        if _prctl(_PR_CAPBSET_DROP, cap) != 0 and \
                ctypes.get_errno() == errno.EINVAL:
            break
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    head = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYS_CAPSET, ctypes.byref(head), data), 'capset')


def _effective_caps() -> str:
    head = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYS_CAPGET, ctypes.byref(head), data), 'capget')
    return '%016x' % (data[1].effective << 32 | data[0].effective)


def isolate() -> dict:
    """Steps 1 of the module docstring: new namespaces and the fork into
    the new PID namespace. Call it first thing, while the process has a
    single thread (the kernel refuses a new user namespace to a threaded
    process) and before the work is imported.

    :returns: the start of the confinement record, for :func:`confine`.
    """
    uid, gid = os.geteuid(), os.getegid()
    namespaces = _unshare(uid, gid)
    # Not dumpable from here on (the uid and gid maps above are written
    # through /proc/self, which a process that is not dumpable may not
    # do): no process of the sandbox user can attach to this one any
    # more, read its memory or take its descriptors, however long it
    # waits for its request (sandbox.prestart).
    _check(_prctl(_PR_SET_DUMPABLE, 0), 'PR_SET_DUMPABLE')
    _refuse_a_tracer_of_our_own_user(uid, 0 if namespaces else uid)
    if 'pid' in namespaces:
        _fork_into_pid_namespace()
    return {'uid': uid, 'gid': gid, 'namespaces': namespaces}


def tracer(status: str) -> tuple[int, int | None]:
    """The ``TracerPid`` of a ``/proc/PID/status`` text (0: not traced)
    and, for the tracer's own status text, its real ``Uid`` (None when
    absent).
    """
    pid, uid = 0, None
    for line in status.splitlines():
        name, _, value = line.partition(':')
        if name == 'TracerPid':
            pid = int(value)
        elif name == 'Uid':
            uid = int(value.split()[0])
    return pid, uid


def _refuse_a_tracer_of_our_own_user(uid: int, uid_now: int) -> None:
    """Refuse to go on if a process of this child's own user attached to
    it before it was made not dumpable: an unprivileged process running
    as the sandbox user (another service using ``nobody``). Any other
    tracer had CAP_SYS_PTRACE (root running ``strace -f`` on the whole
    scrub) and is allowed, as is every tracer of a child running as root.

    :param uid: this process's uid outside any namespace it made.
    :param uid_now: the same uid as its own user namespace sees it (0
        inside a new one), which is how it sees the tracer's.
    """
    if uid == 0:
        return
    with open('/proc/self/status') as f:
        pid, _ = tracer(f.read())
    if not pid:
        return
    try:
        with open('/proc/%d/status' % pid) as f:
            _, tracer_uid = tracer(f.read())
    except OSError:
        tracer_uid = None
    if tracer_uid is None or tracer_uid == uid_now:
        raise JailError('traced by process %d of the sandbox user; '
                        'refusing to run' % pid)


def confine(record: dict, fds, keep: list[str],
            require_seccomp: bool) -> dict:
    """Steps 2 to 6 of the module docstring, once the work is imported
    and its descriptors are open.

    :param record: what :func:`isolate` returned.
    :param fds: descriptors the work reads (kept open).
    :param keep: directories the work opens by path (read-only).
    :param require_seccomp: refuse (JailError) when the seccomp
        allow-list cannot be installed.
    :returns: the confinement record.
    :raises JailError: a step that the host supports failed, or seccomp
        is required and not available.
    """
    keep = [os.path.realpath(p) for p in keep if os.path.isdir(p)]
    threads = len(os.listdir('/proc/self/task'))
    if threads != 1:
        raise JailError('the child has %d threads; the jail applies to one'
                        % threads)
    filt = sandbox_seccomp.build()
    if filt is None and require_seccomp:
        raise JailError(
            'seccomp is not available (python3-seccomp is not installed or '
            'the kernel has no seccomp filters); the scrub refuses to run '
            'without it unless [sparc] sandbox_require_seccomp = false')
    root = 'host'
    if 'mount' in record['namespaces']:
        _empty_root(keep)
        root = 'empty'
    _check(_prctl(_PR_SET_NO_NEW_PRIVS, 1), 'PR_SET_NO_NEW_PRIVS')
    landlock = _landlock(keep)
    _close_others(fds)
    _drop_capabilities()
    _check(_prctl(_PR_SET_DUMPABLE, 0), 'PR_SET_DUMPABLE')
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    record = dict(
        record, root=root, kept_paths=len(keep), landlock_abi=landlock,
        cap_eff=_effective_caps(),
        no_new_privs=_prctl(_PR_GET_NO_NEW_PRIVS) == 1,
        dumpable=_prctl(_PR_GET_DUMPABLE),
        nproc=resource.getrlimit(resource.RLIMIT_NPROC)[0],
        seccomp='allow-list' if filt is not None else 'none')
    if filt is not None:
        filt.load()
    return record
