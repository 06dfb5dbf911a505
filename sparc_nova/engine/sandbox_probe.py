"""What a sandbox child can and cannot do, reported from inside it
(used by the sandbox's tests and by operators checking a compute node).

Everything it needs is imported here, before the child is jailed: the
jail's root is empty.
"""

import ctypes
import os
import resource
import socket

__all__ = ['confinement']

_libc = ctypes.CDLL(None, use_errno=True)
_PR_GET_DUMPABLE, _PR_GET_SECCOMP, _PR_GET_NO_NEW_PRIVS = 3, 21, 39


def _try(fn) -> str:
    try:
        fn()
        return 'allowed'
    except OSError as e:
        return 'denied: %s' % (e.strerror or e)


def _connect() -> None:
    s = socket.socket()
    try:
        s.settimeout(2)
        s.connect(('127.0.0.1', 22))
    finally:
        s.close()


def _write_tmp() -> None:
    with open('/tmp/.sparc-sandbox-probe', 'w') as f:
        f.write('x')


def confinement(args: dict, files: dict) -> dict:
    """Report the child's identity, limits and what happens when it
    tries to escape.
    """
    given = {name: len(f.read(16)) for name, f in files.items()}
    return {
        'uid_inside': os.getuid(),
        'list_root': _try(lambda: os.listdir('/')),
        'no_new_privs': _libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
        'dumpable': _libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0),
        'read_given_files': given,
        'open_shadow': _try(lambda: open('/etc/shadow').close()),
        'open_paths': {p: _try(lambda p=p: open(p, 'rb').close())
                       for p in args.get('paths', [])},
        'connect': _try(_connect),
        'write_file': _try(_write_tmp),
        'rlimit_as': resource.getrlimit(resource.RLIMIT_AS)[0],
        'rlimit_fsize': resource.getrlimit(resource.RLIMIT_FSIZE)[0],
        'rlimit_nproc': resource.getrlimit(resource.RLIMIT_NPROC)[0],
    }
