"""Hostile sandbox children: each tries to get out of the jail or to
hurt its parent. Run only by the tests (``tests.`` entries are refused
by the product's sandbox).
"""

import ctypes
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_SYS_PROCESS_VM_READV, _SYS_UNSHARE, _SYS_IO_URING_SETUP = 310, 272, 425
_CLONE_NEWUSER = 0x10000000
#: What the attacks report when the kernel answered instead of killing.
ANSWERED = 'answered'


def open_host_file(args, files):
    """Read a world-readable host file by path."""
    with open(args['path'], 'rb') as f:
        return {'stolen': f.read().decode('latin-1')}


def read_parent_memory(args, files):
    """process_vm_readv on the parent (pid from the request)."""
    buf = ctypes.create_string_buffer(64)
    local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 64)
    remote = (ctypes.c_void_p * 2)(args['address'], 64)
    n = _libc.syscall(_SYS_PROCESS_VM_READV, args['pid'], local, 1, remote,
                      1, 0)
    return {ANSWERED: n, 'errno': ctypes.get_errno(),
            'stolen': buf.raw.hex() if n > 0 else ''}


def new_user_namespace(args, files):
    """clone(CLONE_NEWUSER) through unshare(2) and through clone(2)."""
    n = _libc.syscall(_SYS_UNSHARE, _CLONE_NEWUSER)
    return {ANSWERED: n, 'errno': ctypes.get_errno()}


def clone_new_user(args, files):
    """clone(CLONE_NEWUSER | SIGCHLD) as a new process."""
    n = _libc.syscall(56, _CLONE_NEWUSER | 17, 0, 0, 0, 0)
    if n == 0:
        os._exit(0)
    return {ANSWERED: n, 'errno': ctypes.get_errno()}


def io_uring(args, files):
    params = ctypes.create_string_buffer(120)
    n = _libc.syscall(_SYS_IO_URING_SETUP, 8, params)
    return {ANSWERED: n, 'errno': ctypes.get_errno()}


def fork_many(args, files):
    """fork 100 times (each child sleeps on its own)."""
    pids = []
    for _ in range(100):
        try:
            pid = os.fork()
        except OSError as e:
            return {ANSWERED: -1, 'errno': e.errno, 'forked': len(pids)}
        if pid == 0:
            while True:
                pass
        pids.append(pid)
    return {ANSWERED: len(pids), 'forked': len(pids)}


def flood_output(args, files):
    """Write 1 GiB to the output pipe."""
    block = b'[' * (1 << 20)
    out = sys.stdout.buffer
    for _ in range(1024):
        out.write(block)
    out.flush()
    return {}


def deep_json(args, files):
    """A result nested 100,000 deep (written by hand: json.dumps would
    refuse it).
    """
    depth = args.get('depth', 100000)
    out = sys.stdout.buffer
    out.write(b'{"result": {"x": ' + b'[' * depth + b']' * depth + b'}}')
    out.flush()
    os._exit(0)
