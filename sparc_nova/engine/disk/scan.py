"""Raw byte scans for canaries and markers.

A scan streams every guest-visible byte of an image, in order, through
``tr`` (NUL becomes newline, so that long runs of zeros never build one
huge line) into ``grep -F`` (a multi-string matcher that stays fast with
thousands of patterns). Patterns never contain NUL, CR or newline (see
:mod:`.canaries`) and reach grep through a pipe, never a file, so they
are not written anywhere. qcow2 and other formats are streamed as raw
with ``nbdcopy`` from a read-only ``qemu-nbd``.

Zeros are not scanned: no pattern holds a zero byte, so a run of zeros
can be replaced by one newline (which ``tr`` would make of each of its
bytes anyway) without adding or losing a match. A raw file is read only
where it is not a hole (:mod:`.allocation`; a hole reads as zeros). A
qcow2 image whose every data cluster is stored as it is (no compression,
encryption, backing file or external data file: what ``qemu-img convert``
writes by default) is read only at the host offsets ``qemu-img map``
gives for its data, in guest order; otherwise ``nbdcopy``'s stream of
the whole guest view is read by this process, which passes on only the
pieces that are not all zeros.
"""

import base64
import collections
import fcntl
import functools
import json
import os
import select
import subprocess
import threading

from sparc_nova.engine.disk import allocation
from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import qemu_img
from sparc_nova import exception

__all__ = ['SCAN_PROCESSES', 'count', 'count_in_appliance', 'split_runs',
           'stored_data']

_ENV = dict(os.environ, LC_ALL='C')


def _feed(fd: int, patterns: list[bytes]) -> None:
    with os.fdopen(fd, 'wb') as pipe:
        pipe.write(b''.join(p + b'\n' for p in patterns))


def _reader(path: str, fmt: str) -> list[str]:
    return ['nbdcopy', '--', '[', 'qemu-nbd', '--read-only', '--format',
            fmt, path, ']', '-']


def _wait_writable(fd: int) -> None:
    """Wait until the pipe ``fd`` takes more bytes. Needed when it is
    non-blocking: under eventlet (nova-compute's default mode) the pipes
    of ``subprocess`` are, and ``select`` then yields to the other green
    threads (among them the one reading grep's output) instead of
    blocking them.
    """
    select.select([], [fd], [])


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the pipe ``fd``, blocking or not."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            _wait_writable(fd)


#: Bytes read at a time from nbdcopy by :func:`_stream_guest_view`.
_PIECE_BYTES = 1024 * 1024
_ZEROS = bytes(_PIECE_BYTES)


def _widen(fd: int) -> None:
    """Make the pipe ``fd`` hold a whole piece (fewer, larger reads); the
    system's limit may refuse, which only costs time.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIECE_BYTES)
    except OSError:
        pass


def _stream_guest_view(path: str, fmt: str, fd: int, errors: list) -> None:
    """Write the guest view of the image ``path`` (in ``fmt``), as
    ``nbdcopy`` streams it, to ``fd`` (then close it), each piece that is
    all zeros replaced by a newline; an error (nbdcopy failing
    included) goes to ``errors``.
    """
    try:
        try:
            reader = subprocess.Popen(_reader(path, fmt),
                                      stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=_ENV)
            try:
                _widen(reader.stdout.fileno())
                separated = True
                while True:
                    piece = reader.stdout.read1(_PIECE_BYTES)
                    if not piece:
                        break
                    # bytes == bytes is a memcmp; a full-size slice of
                    # bytes is the object itself, not a copy.
                    if piece == _ZEROS[:len(piece)]:
                        if not separated:
                            _write_all(fd, b'\n')
                            separated = True
                        continue
                    _write_all(fd, piece)
                    separated = False
            finally:
                reader.stdout.close()
                stderr = reader.stderr.read()
                reader.wait()
        finally:
            os.close(fd)
        if reader.returncode != 0:
            errors.append('nbdcopy exited %d: %s' % (
                reader.returncode,
                stderr.decode('utf-8', 'replace').strip()[-300:]))
    except OSError as e:
        errors.append(e)


#: Bytes per sendfile call of :func:`_stream_data`.
_SEND_BYTES = 16 * 1024 * 1024


def _stream_data(path: str, fd: int, errors: list,
                 runs: list[list[allocation.Range]] | None = None) -> None:
    """Write ``runs`` of the file ``path`` to ``fd`` (then close it): the
    ranges of each run one after the other (they follow each other in the
    guest view), a newline after each run; default: each data range of a
    raw file is a run (a hole, zeros, lies between two). An error goes to
    ``errors``.
    """
    try:
        try:
            with open(path, 'rb') as f:
                if runs is None:
                    runs = [[r] for r in allocation.data_ranges(path)]
                for run in runs:
                    for offset, length in run:
                        _send(f.fileno(), fd, offset, length, path)
                    _write_all(fd, b'\n')
        finally:
            os.close(fd)
    except OSError as e:
        errors.append(e)


def _send(src: int, fd: int, offset: int, length: int, path: str) -> None:
    """Write ``length`` bytes of ``src`` from ``offset`` to ``fd``."""
    end = offset + length
    while offset < end:
        try:
            sent = os.sendfile(fd, src, offset, min(end - offset, _SEND_BYTES))
        except BlockingIOError:
            _wait_writable(fd)
            continue
        if sent == 0:
            raise OSError('%s ends before its data does' % path)
        offset += sent


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
    """How often each pattern occurs in the guest view of an image.

    ``fmt`` is the image format (raw reads the file as it is; a qcow2
    image is read at the host offsets of its data when
    :func:`stored_data` finds them, under ``limits``). Returns only
    patterns that occur at least once. Overlapping occurrences of one
    pattern are counted once each, left to right.

    Data read at host offsets is split into up to :data:`SCAN_PROCESSES`
    shards of about the same size, each scanned by a pipeline of its own
    (grep is the scan's bottleneck, 0.5 GB/s on one core): a shard ends
    on a NUL or newline byte of the data, or where a run ends, so no
    match can span two shards and the counts add up.

    :raises DiskError: the image could not be read to the end.
    """
    wanted = sorted(set(patterns))
    if not wanted:
        return {}
    for p in wanted:
        if b'\n' in p or b'\0' in p or b'\r' in p:
            raise ValueError('pattern contains a separator byte')
    stored = None if fmt == 'raw' else stored_data(
        path, fmt, limits or qemu_img.Limits())
    if fmt != 'raw' and stored is None:
        streams = [lambda fd, errors: _stream_guest_view(path, fmt, fd,
                                                         errors)]
    else:
        try:
            runs = stored if stored is not None else [
                [r] for r in allocation.data_ranges(path)]
            shards = split_runs(path, runs, _shard_count(runs))
        except OSError as e:
            raise exception.DiskError(path, 'raw scan failed: %s' % e)
        streams = [functools.partial(_stream_data, path, runs=shard)
                   for shard in shards]
    results: list = [None] * len(streams)

    def scan_shard(index):
        try:
            results[index] = _grep(path, streams[index], wanted)
        except Exception as e:      # raised below, in the caller's thread
            results[index] = e

    workers = [threading.Thread(target=scan_shard, args=(i,))
               for i in range(1, len(streams))]
    for worker in workers:
        worker.start()
    scan_shard(0)
    for worker in workers:
        worker.join()
    counts: collections.Counter = collections.Counter()
    for result in results:
        if isinstance(result, Exception):
            raise result
        counts.update(result)
    return {p: counts[p] for p in wanted if counts.get(p)}


#: Most grep pipelines one scan runs at once (one core each).
SCAN_PROCESSES = 2
#: Least data (bytes) per pipeline: below it a second one is not worth
#: starting.
_SHARD_MIN_BYTES = 64 * 1024 * 1024
#: How far (bytes) past a shard's planned end a separator byte is looked
#: for before the shard is ended where its run ends instead.
_CUT_SEARCH_BYTES = 1024 * 1024
_CUT_READ_BYTES = 64 * 1024


def _shard_count(runs: list[list[allocation.Range]]) -> int:
    size = sum(length for run in runs for _, length in run)
    return max(1, min(SCAN_PROCESSES, os.cpu_count() or 1,
                      size // _SHARD_MIN_BYTES))


def split_runs(path: str, runs: list[list[allocation.Range]],
               count: int) -> list[list[list[allocation.Range]]]:
    """``runs`` (of file ``path``) split into at most ``count`` shards of
    about equal size, in order. A shard ends where a run ends, or inside
    a run just after a NUL or newline byte found within 1 MiB of its
    planned end (none found: the run stays whole), so that a pattern
    (which holds neither byte) matches in the shards exactly where it
    matched in the runs.

    :raises OSError: ``path`` cannot be read.
    """
    total = sum(length for run in runs for _, length in run)
    if count <= 1 or not total:
        return [runs]
    target = -(-total // count)
    shards: list[list[list[allocation.Range]]] = [[]]
    size = 0
    with open(path, 'rb') as f:
        for run in runs:
            pending = list(run)
            while pending:
                room = target - size
                run_size = sum(length for _, length in pending)
                if len(shards) == count or run_size <= room:
                    shards[-1].append(pending)
                    size += run_size
                    break
                head, tail = _cut(f.fileno(), pending, room)
                if head:
                    shards[-1].append(head)
                    size += sum(length for _, length in head)
                if not tail:
                    break
                shards.append([])
                size = 0
                pending = tail
    return [shard for shard in shards if shard]


def _cut(fd: int, run: list[allocation.Range], at: int
         ) -> tuple[list[allocation.Range], list[allocation.Range]]:
    """``run`` cut just after the first separator byte at or after its
    byte ``at``: (head, tail). No separator within
    :data:`_CUT_SEARCH_BYTES`: (run, []) when ``at`` is inside the run,
    and ([], run) when it is 0 (the run starts the next shard whole).
    """
    if at <= 0:
        return [], run
    skipped = 0
    for index, (offset, length) in enumerate(run):
        if skipped + length <= at:
            skipped += length
            continue
        position = offset + (at - skipped)
        end = min(offset + length, position + _CUT_SEARCH_BYTES)
        while position < end:
            data = os.pread(fd, min(_CUT_READ_BYTES, end - position),
                            position)
            if not data:
                break
            hits = [i for i in (data.find(b'\0'), data.find(b'\n'))
                    if i >= 0]
            if hits:
                cut = position + min(hits) + 1
                head = run[:index] + [(offset, cut - offset)]
                rest = offset + length - cut
                tail = ([(cut, rest)] if rest else []) + run[index + 1:]
                return head, tail
            position += len(data)
        break
    return run, []


def _grep(path: str, stream, wanted: list[bytes]) -> collections.Counter:
    """Occurrences of ``wanted`` in what ``stream(fd, errors)`` writes to
    ``fd`` (one ``tr | grep`` pipeline).

    :raises DiskError: the stream or the pipeline failed.
    """
    read_fd, write_fd = os.pipe()
    feeder = threading.Thread(target=_feed, args=(write_fd, wanted))
    script = 'tr "\\000" "\\n" | grep -a -o -F -f /dev/fd/%d' % read_fd
    # pipefail: a tr that stops early must not look like "no match".
    try:
        proc = subprocess.Popen(['bash', '-o', 'pipefail', '-c', script],
                                stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                pass_fds=(read_fd,), env=_ENV)
    finally:
        os.close(read_fd)
    feeder.start()
    read_errors: list = []
    out = os.dup(proc.stdin.fileno())
    streamer = threading.Thread(target=stream, args=(out, read_errors))
    proc.stdin.close()
    streamer.start()
    counts: collections.Counter = collections.Counter()
    for line in proc.stdout:
        counts[line.rstrip(b'\n')] += 1
    stderr = proc.stderr.read()
    proc.wait()
    feeder.join()
    streamer.join()
    if read_errors:
        raise exception.DiskError(path, 'raw scan failed: %s'
                                  % read_errors[0])
    # grep exits 1 when nothing matched; with pipefail any reader failure
    # (exit >= 2 or a signal) shows through.
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and stderr):
        raise exception.DiskError(
            path, 'raw scan failed (exit %d): %s' % (
                proc.returncode,
                stderr.decode('utf-8', 'replace').strip()[-300:]))
    return counts


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
