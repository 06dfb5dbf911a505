"""The sandbox child's seccomp allow-list (Debian's ``python3-seccomp``).

Default action: kill the process. Allowed are the system calls the
child makes once it is jailed, measured with ``strace -f`` on real
scrubs and listings of the functional test bed's checkpoints (see
doc/hardening.md): memory management, reading its descriptors, writing
its result, futexes and signals to itself, plus the few the same code
makes on paths those runs did not take. Calls the Python runtime makes
to probe its surroundings get an error instead of the kill (``ioctl``:
ENOTTY, ``socket`` and ``openat`` for writing: EACCES; a read-only
``openat`` finds nothing in the empty root but a BUILD-ID cache).

Not on the list, so fatal: ``clone``, ``clone3``, ``fork`` and ``vfork``
(no process, no thread, whatever the flags), ``io_uring_*``,
``process_vm_readv/writev``, ``ptrace``, ``openat2``, ``execve``,
``kexec_*``, ``bpf``, ``userfaultfd``, ``perf_event_open``, ``mount``,
``unshare``, ``setns``, ``keyctl``, module loading, ``kill``.
"""

import errno
import os

__all__ = ['ALLOWED', 'build']

#: System calls allowed without conditions: those measured (see the
#: module docstring) and what the same code needs on paths the measured
#: scrubs did not take (a growing checkpoint waits with nanosleep; a
#: BUILD-ID cache is listed and read; abort() signals itself).
ALLOWED = (
    # measured
    'brk', 'close', 'exit_group', 'fcntl', 'futex', 'lseek', 'madvise',
    'mmap', 'munmap', 'newfstatat', 'read', 'rt_sigaction', 'write',
    # the same code on other paths
    'mremap', 'mprotect', 'pread64', 'getdents64', 'fstat',
    'clock_gettime', 'clock_nanosleep', 'nanosleep', 'sched_yield',
    'rt_sigprocmask', 'rt_sigreturn', 'getpid', 'gettid', 'tgkill',
    'getuid', 'geteuid', 'getgid', 'getegid', 'getrandom', 'exit',
)

_PR_GET_DUMPABLE, _PR_GET_NAME, _PR_GET_SECCOMP, _PR_GET_NO_NEW_PRIVS = \
    3, 16, 21, 39
_WRITE_FLAGS = (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC |
                os.O_APPEND)


def build():
    """The filter, not loaded yet; None when python3-seccomp is missing.
    """
    try:
        import seccomp
    except ImportError:
        return None
    f = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    # Every thread (the child has one when it loads the filter).
    f.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    for name in ALLOWED:
        f.add_rule(seccomp.ALLOW, name)
    f.add_rule(seccomp.ERRNO(errno.ENOTTY), 'ioctl')
    f.add_rule(seccomp.ERRNO(errno.EACCES), 'socket')
    # Read-only opens (a BUILD-ID cache bound into the jail); a write
    # open is refused, not fatal.
    f.add_rule(seccomp.ALLOW, 'openat',
               seccomp.Arg(2, seccomp.MASKED_EQ, _WRITE_FLAGS, 0))
    for bit in (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC,
                os.O_APPEND):
        f.add_rule(seccomp.ERRNO(errno.EACCES), 'openat',
                   seccomp.Arg(2, seccomp.MASKED_EQ, bit, bit))
    # prctl: reading its own state only.
    for option in (_PR_GET_DUMPABLE, _PR_GET_SECCOMP, _PR_GET_NO_NEW_PRIVS,
                   _PR_GET_NAME):
        f.add_rule(seccomp.ALLOW, 'prctl', seccomp.Arg(0, seccomp.EQ, option))
    # getrlimit through prlimit64 on itself without a new limit.
    f.add_rule(seccomp.ALLOW, 'prlimit64', seccomp.Arg(0, seccomp.EQ, 0),
               seccomp.Arg(2, seccomp.EQ, 0))
    return f
