"""Where a raw image file can hold data: its allocation map on the host.

The working copy is a sparse raw file (:func:`.host_image.convert` with
``-S 4k``, and discards punch holes in it). A hole reads as zeros, so a
byte range that lies entirely in holes cannot hold any removed data:
only the ranges the host filesystem reports as data (``SEEK_DATA`` /
``SEEK_HOLE``) need to be zeroed or scanned. A filesystem that cannot
tell reports the whole file as data, which only costs time.

Ranges are ``(offset, length)`` pairs in bytes, sorted, not overlapping
and not touching (adjacent ranges are merged).
"""

import errno
import os

__all__ = ['Range', 'data_ranges', 'intersect', 'merged',
           'nonzero_ranges', 'total']

Range = tuple[int, int]

#: Bytes read at a time by :func:`nonzero_ranges`.
_CHUNK = 4 * 1024 * 1024


def data_ranges(path: str, start: int = 0,
                end: int | None = None) -> list[Range]:
    """The ranges of ``path`` between ``start`` and ``end`` (default: the
    end of the file) that are not holes, clipped to that window.

    :raises OSError: the file cannot be opened or sought.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        end = size if end is None else min(end, size)
        ranges: list[Range] = []
        offset = max(0, start)
        while offset < end:
            try:
                data = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:      # only holes up to EOF
                    break
                raise
            if data >= end:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            _append(ranges, data, hole - data)
            offset = hole
        return ranges
    finally:
        os.close(fd)


def _append(ranges: list[Range], offset: int, length: int) -> None:
    if length <= 0:
        return
    if ranges and ranges[-1][0] + ranges[-1][1] >= offset:
        last_offset, last_length = ranges[-1]
        ranges[-1] = (last_offset, max(last_offset + last_length,
                                       offset + length) - last_offset)
    else:
        ranges.append((offset, length))


def merged(ranges: list[Range]) -> list[Range]:
    """``ranges`` (in any order, possibly overlapping) sorted and merged.
    """
    result: list[Range] = []
    for offset, length in sorted(ranges):
        _append(result, offset, length)
    return result


def intersect(a: list[Range], b: list[Range]) -> list[Range]:
    """The ranges covered by both ``a`` and ``b`` (each sorted and not
    overlapping).
    """
    result: list[Range] = []
    i = j = 0
    while i < len(a) and j < len(b):
        a_start, a_end = a[i][0], a[i][0] + a[i][1]
        b_start, b_end = b[j][0], b[j][0] + b[j][1]
        _append(result, max(a_start, b_start),
                min(a_end, b_end) - max(a_start, b_start))
        if a_end <= b_end:
            i += 1
        else:
            j += 1
    return result


def nonzero_ranges(path: str, ranges: list[Range]) -> list[Range]:
    """The chunks (at most 4 MiB each) of ``ranges`` of ``path`` that
    hold a byte other than zero.

    :raises OSError: the file cannot be read (a short read is an error:
        a range past the end of the file was asked for).
    """
    found: list[Range] = []
    zeros = bytes(_CHUNK)
    with open(path, 'rb', buffering=0) as f:
        for offset, length in ranges:
            while length > 0:
                n = min(length, _CHUNK)
                data = os.pread(f.fileno(), n, offset)
                if len(data) != n:
                    raise OSError(errno.EIO, 'short read at offset %d'
                                  % offset, path)
                if data != zeros[:n]:
                    _append(found, offset, n)
                offset += n
                length -= n
    return found


def total(ranges: list[Range]) -> int:
    """Bytes covered by ``ranges``."""
    return sum(length for _, length in ranges)
