"""Run helper programs without privileges, and keep a privileged process
from regaining any through ``exec``.

Two pieces shared by the layers that start programs from a privileged
process (the checkpoint layer's decompressors and compressors, the
engine's parsing sandbox) and by the privsep daemon, which locks itself
down with :func:`lock_down` before it serves anything:

* :func:`popen_credentials`: the ``subprocess.Popen`` arguments that make
  a child run as an unprivileged user with no supplementary groups when
  the caller is root. The switch happens in the forked child before
  ``exec`` (no ``setpriv`` needed, so it also works where ``exec`` gives
  root no capabilities); the program then runs with empty capability
  sets and works only on the descriptors the caller passed it.
* :func:`lock_down`: ``SECBIT_NOROOT`` and ``SECBIT_NO_SETUID_FIXUP`` with
  their lock bits, an empty capability bounding set and
  ``no_new_privs``, so that nothing this process or its descendants
  ``exec`` gains a capability: not by being uid 0, not from a setuid or
  file-capability binary.
"""

import ctypes
import os

__all__ = ['SECBIT_NOROOT', 'SECBIT_NOROOT_LOCKED', 'SECBIT_NO_SETUID_FIXUP',
           'SECBIT_NO_SETUID_FIXUP_LOCKED', 'LOCKED_SECUREBITS',
           'securebits', 'exec_regains_root', 'popen_credentials',
           'lock_down']

# <linux/securebits.h>, <linux/prctl.h>
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
#: What :func:`lock_down` sets.
LOCKED_SECUREBITS = (SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                     SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED)
_PR_CAPBSET_DROP = 24
_PR_GET_SECUREBITS = 27
_PR_SET_SECUREBITS = 28
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


def _prctl(option: int, arg: int = 0) -> int:
    ret = _libc.prctl(option, arg, 0, 0, 0)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, 'prctl(%d, %d): %s' % (option, arg,
                                                  os.strerror(err)))
    return ret


def securebits() -> int:
    """This thread's securebits (``PR_GET_SECUREBITS``)."""
    return _prctl(_PR_GET_SECUREBITS)


def exec_regains_root() -> bool:
    """Whether a program this process runs as uid 0 gets root's
    capabilities (false once :func:`lock_down` ran here or in an
    ancestor).
    """
    return not securebits() & SECBIT_NOROOT


def popen_credentials(user: str | None, group: str | None) -> dict:
    """``subprocess.Popen`` keyword arguments that run the child as
    ``user``:``group`` with no supplementary groups when this process is
    root (and ``user`` is set); empty otherwise.

    Switching from root needs CAP_SETUID and CAP_SETGID here; after the
    switch the program ``exec`` s as an ordinary user and starts with
    empty permitted and effective capability sets (the inheritable and
    ambient sets of a privsep daemon are empty).
    """
    if os.geteuid() != 0 or not user:
        return {}
    return {'user': user, 'group': group or user, 'extra_groups': []}


def _last_cap() -> int:
    with open('/proc/sys/kernel/cap_last_cap') as f:
        return int(f.read())


def lock_down() -> None:
    """Make ``exec`` unable to give this process or its descendants any
    capability, for good: empty the capability bounding set, set and lock
    ``SECBIT_NOROOT`` (uid 0 gains nothing at ``exec``) and
    ``SECBIT_NO_SETUID_FIXUP`` (changing uids neither adds nor removes
    capabilities: what the process holds is exactly what it was given),
    and set ``no_new_privs``.

    Needs CAP_SETPCAP, so it runs before a privileged process drops to the
    capabilities it keeps. Securebits and the bounding set belong to a
    thread: call it before any other thread is started.

    :raises OSError: the kernel refused a step (the process must then not
        go on as a privileged daemon).
    """
    for cap in range(_last_cap() + 1):
        _prctl(_PR_CAPBSET_DROP, cap)
    _prctl(_PR_SET_SECUREBITS, securebits() | LOCKED_SECUREBITS)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
