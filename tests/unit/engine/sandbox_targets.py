"""Misbehaving functions for the sandbox tests."""

from sparc_nova import exception


def burn_cpu(args, files):
    while True:
        pass


def allocate(args, files):
    blob = bytearray(args['mib'] * 1024 * 1024)
    return {'allocated': len(blob)}


def huge_result(args, files):
    return {'junk': 'x' * args['bytes']}


def read_given(args, files):
    return {name: f.read().decode() for name, f in files.items()}


def clear_error(args, files):
    raise exception.SparcError('guest kernel structure at 0x1000 is bogus')


def huge_plan(args, files):
    return {'junk': 'x' * (1 << 20)}


def crash(args, files):
    raise RuntimeError('unexpected')


def crash_quoting(args, files):
    """An unexpected error whose message quotes what was being parsed."""
    raise ValueError('invalid literal for int(): %r' % args['guest_bytes'])


def hold_memory(args, files):
    """Hold ``mib`` MiB of written (resident, private) memory, return."""
    blob = bytearray(b'\x01') * (args['mib'] * 1024 * 1024)
    return {'held': len(blob)}


def result_then_atexit(args, files):
    """A result larger than a pipe's buffer, from a process with an exit
    hook that fails the child if the interpreter is torn down.
    """
    import atexit
    import os
    atexit.register(os._exit, 7)
    return {'junk': 'y' * args['bytes']}
