"""Raw byte scans for canaries and markers.

A scan streams every guest-visible byte of an image, in order, through
``tr`` (NUL becomes newline, so that long runs of zeros never build one
huge line) into ``grep -F`` (a multi-string matcher that stays fast with
thousands of patterns). Patterns never contain NUL, CR or newline (see
:mod:`.canaries`) and reach grep through a pipe, never a file, so they
are not written anywhere. qcow2 and other formats are streamed as raw
with ``nbdcopy`` from a read-only ``qemu-nbd``.
"""

import base64
import collections
import os
import shlex
import subprocess
import threading

from sparc_nova.engine.disk import appliance
from sparc_nova import exception

__all__ = ['count', 'count_in_appliance']

_ENV = dict(os.environ, LC_ALL='C')


def _feed(fd: int, patterns: list[bytes]) -> None:
    with os.fdopen(fd, 'wb') as pipe:
        pipe.write(b''.join(p + b'\n' for p in patterns))


def _reader(path: str, fmt: str) -> list[str]:
    if fmt == 'raw':
        return ['cat', path]
    return ['nbdcopy', '--', '[', 'qemu-nbd', '--read-only', '--format',
            fmt, path, ']', '-']


def count(path: str, fmt: str, patterns: list[bytes]) -> dict[bytes, int]:
    """How often each pattern occurs in the guest view of an image.

    ``fmt`` is the image format (raw reads the file as it is). Returns
    only patterns that occur at least once. Overlapping occurrences of
    one pattern are counted once each, left to right.

    :raises DiskError: the image could not be read to the end.
    """
    wanted = sorted(set(patterns))
    if not wanted:
        return {}
    for p in wanted:
        if b'\n' in p or b'\0' in p or b'\r' in p:
            raise ValueError('pattern contains a separator byte')
    read_fd, write_fd = os.pipe()
    feeder = threading.Thread(target=_feed, args=(write_fd, wanted))
    script = '%s | tr "\\000" "\\n" | grep -a -o -F -f /dev/fd/%d' % (
        ' '.join(shlex.quote(a) for a in _reader(path, fmt)), read_fd)
    # pipefail: a reader that stops early must not look like "no match".
    try:
        proc = subprocess.Popen(['bash', '-o', 'pipefail', '-c', script],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                pass_fds=(read_fd,), env=_ENV)
    finally:
        os.close(read_fd)
    feeder.start()
    counts = collections.Counter()
    for line in proc.stdout:
        counts[line.rstrip(b'\n')] += 1
    stderr = proc.stderr.read()
    proc.wait()
    feeder.join()
    # grep exits 1 when nothing matched; with pipefail any reader failure
    # (exit >= 2 or a signal) shows through.
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and stderr):
        raise exception.DiskError(
            path, 'raw scan failed (exit %d): %s' % (
                proc.returncode,
                stderr.decode('utf-8', 'replace').strip()[-300:]))
    return {p: counts[p] for p in wanted if counts.get(p)}


def count_in_appliance(g, device: str,
                       patterns: list[bytes]) -> dict[bytes, int]:
    """:func:`count` for a device inside the appliance (a decrypted LUKS
    view, which the host only sees as ciphertext).
    """
    wanted = sorted(set(patterns))
    if not wanted:
        return {}
    encoded = base64.b64encode(b''.join(p + b'\n' for p in wanted))
    # Matches come back base64-encoded: they are bytes, not text.
    status, out = appliance.run_status(g, [
        'sh', '-c',
        'echo "$1" | base64 -d > /tmp/sparc-patterns && '
        'tr "\\000" "\\n" < "$2" | LC_ALL=C grep -a -o -F '
        '-f /tmp/sparc-patterns > /tmp/sparc-matches; rc=$?; '
        'base64 -w0 /tmp/sparc-matches; '
        'rm -f /tmp/sparc-patterns /tmp/sparc-matches; exit $rc',
        'sh', encoded.decode('ascii'), device])
    if status not in (0, 1):
        raise RuntimeError('scanning %s failed (exit %d)' % (device, status))
    matches = base64.b64decode(out.strip() or b'')
    counts = collections.Counter(matches.split(b'\n'))
    return {p: counts[p] for p in wanted if counts.get(p)}
