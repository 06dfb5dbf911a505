"""The sandbox child: its side of :mod:`.sandbox`'s protocol.

``python -m sparc_nova.engine.sandbox_child [--preload NAME]...
[--prepare NAME]``, started by :mod:`.sandbox` (through ``setpriv`` when
it must change users). In order, the child:

1. enters its namespaces and makes itself not dumpable
   (:func:`.sandbox_jail.isolate`);
2. imports the work named on its command line and runs its preparation
   (the jail's root will be empty): a child started ahead of time is
   ready by the time it is needed;
3. reads its request from its standard input, a Unix stream socket: a
   JSON document of at most :data:`MAX_REQUEST` bytes whose first
   :data:`FIRST_CHUNK` bytes carry the files' descriptors
   (``SCM_RIGHTS``, at most :data:`MAX_FDS`), each named once by the
   request, else it exits with status 2;
4. applies its limits and the rest of its jail
   (:func:`.sandbox_jail.confine`) and writes its confinement record on
   one line of its standard output, before it reads a byte of guest
   data;
5. runs the work, writes ``{"result": ...}`` (or ``{"error": ...}`` with
   exit status :data:`EXIT_REPORTED`), then its own memory figures on a
   last line.

It imports nothing of the parent's side.
"""

import importlib
import json
import os
import resource
import socket
import sys

from sparc_nova.engine import memstats
from sparc_nova.engine import sandbox_jail
from sparc_nova import exception

__all__ = ['EXIT_REPORTED', 'FIRST_CHUNK', 'MAX_FDS', 'MAX_REQUEST',
           'child_main', 'function']

#: Exit status of a child that reports a handled error in its JSON.
EXIT_REPORTED = 3
#: Largest request document accepted by the child, in bytes.
MAX_REQUEST = 16 * 1024 * 1024
#: Most descriptors a request may carry.
MAX_FDS = 16
#: Bytes of the request sent with its descriptors (the rest follows).
FIRST_CHUNK = 4096


def function(entry: str):
    """The function ``entry`` (``"module:function"``) names, imported."""
    module, _, func = entry.partition(':')
    return getattr(importlib.import_module(module), func)


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


def _receive_request(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """The request (None when it is missing, too large or not JSON) and
    the descriptors that came with its first bytes.
    """
    data, fds, flags, _ = socket.recv_fds(sock, FIRST_CHUNK, MAX_FDS)
    if flags & socket.MSG_CTRUNC:
        return None, fds
    buf = bytearray(data)
    while data and len(buf) <= MAX_REQUEST:
        data = sock.recv(1 << 16)
        buf += data
    if len(buf) > MAX_REQUEST:
        return None, fds
    try:
        req = json.loads(buf)
    except ValueError:
        return None, fds
    return (req if isinstance(req, dict) else None), fds


def _given_files(req: dict, fds: list[int]) -> dict[str, int] | None:
    """Name -> descriptor, from the request's name -> position among the
    descriptors received; None unless every descriptor is named once.
    """
    named = req.get('fds')
    if not isinstance(named, dict) or \
            not all(type(i) is int for i in named.values()) or \
            sorted(named.values()) != list(range(len(fds))):
        return None
    return {name: fds[i] for name, i in named.items()}


def _parse_argv(argv: list[str]) -> tuple[list[str], str | None]:
    """``--preload NAME`` (repeatable) and ``--prepare NAME``."""
    preload, prepare = [], None
    words = iter(argv)
    for word in words:
        value = next(words, None)
        if value is None:
            break
        if word == '--preload':
            preload.append(value)
        elif word == '--prepare':
            prepare = value
    return preload, prepare


def child_main(argv: list[str] | None = None) -> int:
    """Entry point of the sandbox child (stdin: a Unix socket carrying
    the request and the files' descriptors; stdout: the confinement
    record on one line, then the result).

    The child enters its namespaces first, then imports the work named
    on its command line (``--preload``, ``--prepare``) and only then
    waits for its request: a child started ahead of time
    (:func:`.sandbox.prestart`) is ready by the time it is needed. It reads no
    byte of guest data before its limits and the rest of the jail are in
    force.
    """
    preload, prepared = _parse_argv(sys.argv[1:] if argv is None else argv)
    out = sys.stdout.buffer
    isolated = sandbox_jail.isolate()
    # Import the work before the rest of the jail: its root is empty.
    for name in preload:
        function(name)
    if prepared:
        function(prepared)()
    sock = socket.socket(fileno=0)
    req, fds = _receive_request(sock)
    sock.close()
    given = _given_files(req, fds) if req is not None else None
    if given is None:
        return 2
    _apply_limits(req['limits'])
    fn = function(req['entry'])
    if req.get('prepare') and req['prepare'] != prepared:
        function(req['prepare'])()
    files = {name: os.fdopen(fd, 'rb') for name, fd in given.items()}
    # Kept through the jail (whose root has no /proc) to report this
    # process's memory figures at the end.
    status_fd = os.open('/proc/self/status', os.O_RDONLY | os.O_CLOEXEC)
    try:
        record = sandbox_jail.confine(isolated, list(given.values()) +
                                      [status_fd],
                                      req.get('keep', []),
                                      req.get('require_seccomp', True))
    except sandbox_jail.JailError as e:
        error = {'error': 'sandbox: %s' % e}
        out.write(b'{}\n' + json.dumps(error).encode())
        return EXIT_REPORTED
    out.write(json.dumps(record).encode() + b'\n')
    out.flush()
    try:
        result = fn(req['args'], files)
    except exception.SparcError as e:
        out.write(json.dumps({'error': str(e)}).encode())
        return EXIT_REPORTED
    out.write(json.dumps({'result': result}).encode())
    # Last, after the result has been encoded: the figures include its
    # encoding. The parent parses the result up to this line.
    out.write(b'\n' + json.dumps(
        {'memory': memstats.own_figures(status_fd)}).encode())
    out.flush()
    return 0


def _exit_now(code: int) -> None:
    """End the process once its output is flushed, without tearing the
    interpreter down: freeing a plan's objects one by one took 0.07 s
    after the result was written, and the parent waits for this exit.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


if __name__ == '__main__':
    _exit_now(child_main())
