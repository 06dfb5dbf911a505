"""Raw byte scans for canaries and markers.

A scan reads every guest-visible byte of an image that can hold data, in
order, through a Hyperscan database of the patterns (a multi-literal
matcher, 4 GB/s and more on one core here, where ``grep -F`` with a few
hundred short patterns reads 0.5 GB/s). Patterns never contain NUL, CR
or newline (see :mod:`.canaries`) and are never written anywhere.

Only data is read. A raw file is read only where it is not a hole
(:mod:`.allocation`; a hole reads as zeros, and no pattern holds a zero
byte). A qcow2 image whose every data cluster is stored as it is (no
compression, encryption, backing file or external data file: what
``qemu-img convert`` writes by default) is read only at the host offsets
``qemu-img map`` gives for its data, in guest order; other images are
read as ``nbdcopy`` streams their guest view from a read-only
``qemu-nbd``, skipping the pieces that are all zeros. Bytes that do not
follow each other in the guest view are never matched as one string:
each run of them is a stream of its own, and skipped zeros end a match
as the zeros would.
"""

import base64
import collections
import json
import os
import subprocess

import hyperscan

from sparc_nova.engine.disk import allocation
from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import qemu_img
from sparc_nova import exception

__all__ = ['count', 'count_in_appliance', 'stored_data', 'Matcher']

_ENV = dict(os.environ, LC_ALL='C')
#: Bytes read and matched at a time.
_PIECE_BYTES = 8 * 1024 * 1024
_ZEROS = bytes(_PIECE_BYTES)
#: What a skipped run of zeros is scanned as: one zero byte ends every
#: match as the run would.
_BREAK = b'\0'


class Matcher:
    """Counts occurrences of ``patterns`` (distinct non-empty byte
    strings without NUL, CR or newline) in streams of bytes.

    An occurrence is counted when it does not overlap the previous
    counted occurrence of the same pattern (left to right); occurrences
    of different patterns are counted independently, so a pattern found
    inside another's occurrence is counted too.

    :raises ValueError: a pattern holds a separator byte, or is empty.
    """

    def __init__(self, patterns: list[bytes]):
        for p in patterns:
            if not p or b'\n' in p or b'\0' in p or b'\r' in p:
                raise ValueError('pattern is empty or contains a '
                                 'separator byte')
        self.patterns = list(patterns)
        self._counts = [0] * len(self.patterns)
        self._ends = [-1] * len(self.patterns)
        # The binding's Stream keeps borrowed references to its match
        # handler and context: a bound method made for the call would be
        # freed when the call returns, and the stream would then call
        # freed memory on its first match. This one lives as long as the
        # matcher, which outlives its streams.
        self._handler = self._on_match
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_STREAM)
        self._db.compile(expressions=self.patterns,
                         ids=list(range(len(self.patterns))),
                         elements=len(self.patterns), flags=0,
                         literal=True)

    def _on_match(self, index, start, end, flags, context):
        if end - len(self.patterns[index]) >= self._ends[index]:
            self._counts[index] += 1
            self._ends[index] = end
        return 0

    def stream(self) -> 'hyperscan.Stream':
        """A context manager whose ``scan(data)`` matches ``data`` as the
        continuation of what it scanned before (a match can span two
        calls); a new stream starts afresh.
        """
        self._ends = [-1] * len(self.patterns)
        return self._db.stream(match_event_handler=self._handler,
                               context=None)

    def counts(self) -> dict[bytes, int]:
        """Pattern -> occurrences, for patterns found at least once."""
        return {p: n for p, n in zip(self.patterns, self._counts) if n}


def _scan_runs(path: str, runs: list[list[allocation.Range]],
               matcher: Matcher) -> None:
    """Match ``runs`` of the file ``path``: the ranges of each run one
    after the other (they follow each other in the guest view), each run
    a stream of its own.

    :raises OSError: the file cannot be read to the end of a range.
    """
    view = memoryview(bytearray(_PIECE_BYTES))
    with open(path, 'rb') as f:
        fd = f.fileno()
        for run in runs:
            with matcher.stream() as stream:
                for offset, length in run:
                    end = offset + length
                    while offset < end:
                        got = os.preadv(fd, [view[:min(end - offset,
                                                       _PIECE_BYTES)]],
                                        offset)
                        if got == 0:
                            raise OSError('%s ends before its data does'
                                          % path)
                        stream.scan(view[:got])
                        offset += got


def _reader(path: str, fmt: str) -> list[str]:
    return ['nbdcopy', '--', '[', 'qemu-nbd', '--read-only', '--format',
            fmt, path, ']', '-']


def _scan_guest_view(path: str, fmt: str, matcher: Matcher) -> None:
    """Match the guest view of the image ``path`` (in ``fmt``) as
    ``nbdcopy`` streams it; a piece that is all zeros is not scanned
    (one zero byte is, in its place).

    :raises DiskError: nbdcopy failed.
    """
    reader = subprocess.Popen(_reader(path, fmt), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=_ENV)
    try:
        with matcher.stream() as stream:
            separated = True
            while True:
                piece = reader.stdout.read1(_PIECE_BYTES)
                if not piece:
                    break
                # bytes == bytes is a memcmp; a full-size slice of bytes
                # is the object itself, not a copy.
                if piece == _ZEROS[:len(piece)]:
                    if not separated:
                        stream.scan(_BREAK)
                        separated = True
                    continue
                stream.scan(piece)
                separated = False
    finally:
        reader.stdout.close()
        stderr = reader.stderr.read()
        reader.wait()
    if reader.returncode != 0:
        raise exception.DiskError(path, 'raw scan failed: nbdcopy exited '
                                  '%d: %s' % (reader.returncode,
                                              stderr.decode(
                                                  'utf-8', 'replace')
                                              .strip()[-300:]))


def stored_data(path: str, fmt: str, limits: qemu_img.Limits
                ) -> list[list[allocation.Range]] | None:
    """The host ranges of qcow2 image ``path`` that hold its guest data,
    in guest order, as runs of ranges that follow each other in the guest
    view (a pattern can span two clusters stored apart), when every data
    cluster is stored as it is (else, or for another format, or when
    ``qemu-img`` fails: None).

    ``qemu-img info`` must show no backing file, external data file or
    encryption, and every range ``qemu-img map`` reports as data must
    have a host offset at depth 0 and not be compressed.
    """
    if fmt != 'qcow2':
        return None
    info = qemu_img.run('info', ['--output=json', '-f', fmt], [path],
                        limits)
    found = qemu_img.run('map', ['--output=json', '-f', fmt], [path],
                         limits)
    if info.returncode or found.returncode:
        return None
    try:
        meta = json.loads(info.stdout)
        extents = json.loads(found.stdout)
    except ValueError:
        return None
    specific = (meta.get('format-specific') or {}).get('data') or {}
    if meta.get('backing-filename') or meta.get('encrypted') or \
            specific.get('data-file') or specific.get('encrypt'):
        return None
    runs: list[list[allocation.Range]] = []
    guest_end = None
    for e in extents:
        if not e.get('data'):
            continue
        if e.get('compressed') or e.get('depth') or not all(
                isinstance(e.get(k), int) for k in ('start', 'length',
                                                    'offset')):
            return None
        if e['start'] != guest_end:
            runs.append([])
        runs[-1].append((e['offset'], e['length']))
        guest_end = e['start'] + e['length']
    return runs


def count(path: str, fmt: str, patterns: list[bytes],
          limits: qemu_img.Limits | None = None) -> dict[bytes, int]:
    """How often each pattern occurs in the guest view of an image (see
    :class:`Matcher` for how occurrences are counted).

    ``fmt`` is the image format (raw reads the file as it is; a qcow2
    image is read at the host offsets of its data when
    :func:`stored_data` finds them, under ``limits``). Returns only
    patterns that occur at least once.

    :raises DiskError: the image could not be read to the end.
    :raises ValueError: a pattern holds NUL, CR or newline.
    """
    wanted = sorted(set(patterns))
    if not wanted:
        return {}
    matcher = Matcher(wanted)
    stored = None if fmt == 'raw' else stored_data(
        path, fmt, limits or qemu_img.Limits())
    try:
        if fmt != 'raw' and stored is None:
            _scan_guest_view(path, fmt, matcher)
        else:
            _scan_runs(path, stored if stored is not None else [
                [r] for r in allocation.data_ranges(path)], matcher)
    except (OSError, hyperscan.HyperscanError) as e:
        raise exception.DiskError(path, 'raw scan failed: %s' % e)
    return matcher.counts()


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
