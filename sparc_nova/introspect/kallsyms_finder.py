"""Locate the kernel's kallsyms tables in its image by their structure.

Linux 6.0 and later name the kallsyms tables in vmcoreinfo; older kernels
(5.x, 4.18) do not, yet they carry the same tables in ``.rodata``.
``scripts/kallsyms`` emits them at 8-byte aligned labels in one of two
orders::

    up to 6.3: offsets | addresses, relative_base, num_syms, names,
               markers, [seqs_of_names (6.2, 6.3)], token_table, token_index
    6.4 on:    num_syms, names, markers, token_table, token_index,
               offsets | addresses, relative_base, seqs_of_names

The token table (256 NUL-terminated strings) followed by the token index
(256 little-endian u16 offsets into it, the first 0) anchors the search:
each anchor is checked in full, then the markers before it (one offset
into ``names`` per 256 symbols, the first 0), then ``names`` is walked
entry by entry from the ``num_syms`` that must precede it until it ends
exactly at the markers, every 256th entry where its marker says.

A hostile guest can plant a look-alike table in any page it owns, and
pages freed after boot (``.init``) lie inside the kernel image too. The
real tables are in ``.rodata``, below every page the guest can write, so
:func:`find_tables` scans upward from ``_stext`` and returns the *first*
complete structure only; the caller must check it against vmcoreinfo and
refuse on any mismatch, never fall back to a later candidate.

The format is parsed here by hand: drgn decodes kallsyms once it knows
where the tables are (``_linux_helper_load_builtin_kallsyms``), but it only
learns that from vmcoreinfo, and no library locates them from memory.
"""

import dataclasses
import struct
import typing

import numpy

from sparc_nova import exception

__all__ = ['KallsymsTables', 'KallsymsNotFound', 'find_tables',
           'MAX_SCAN']

#: Bytes scanned above ``_stext`` for the tables (the kernel image, text
#: and read-only data, of a distribution kernel is 20-60 MiB).
MAX_SCAN = 256 * 1024 * 1024
#: Bytes read at a time while scanning.
CHUNK = 8 * 1024 * 1024
#: Most symbols a kernel table may hold (Debian's 6.12: ~190,000).
MAX_SYMS = 1 << 21
#: Longest compressed ``names`` stream accepted.
MAX_NAMES = 32 * 1024 * 1024
#: Longest token: KSYM_NAME_LEN (512 since 6.1, 128 before).
MAX_TOKEN = 512
#: Structural candidates looked at before giving up (each is a full check).
MAX_ANCHORS = 65536
#: Leading token-index entries the vectorised pre-check looks at.
_PREFIX = 16

_ALIGN = 8


class KallsymsNotFound(exception.SparcError):
    """No kallsyms tables in the scanned part of the kernel image."""


@dataclasses.dataclass(frozen=True)
class KallsymsTables:
    """Kernel virtual addresses of one kallsyms table set.

    Exactly one of ``offsets`` (with ``relative_base``) and ``addresses``
    is non-zero. ``count`` is the number of symbols; ``layout`` says which
    order the tables were found in (``'pre-6.4'`` or ``'6.4'``).
    """

    names: int
    token_table: int
    token_index: int
    num_syms: int
    markers: int
    offsets: int
    relative_base: int
    addresses: int
    count: int
    layout: str

    def summary(self) -> dict:
        return {'layout': self.layout, 'symbols': self.count,
                'names': '0x%x' % self.names,
                'token_table': '0x%x' % self.token_table}


Reader = typing.Callable[[int, int], bytes]


def _align(value: int) -> int:
    return (value + _ALIGN - 1) & ~(_ALIGN - 1)


def _anchor_candidates(chunk: bytes, base: int) -> list[int]:
    """Addresses in ``chunk`` (at kernel virtual ``base``, 8-aligned) that
    may start a token index: u16 0, then :data:`_PREFIX` - 1 offsets each
    2 to ``MAX_TOKEN + 1`` above the one before.
    """
    usable = len(chunk) - len(chunk) % _ALIGN
    if usable < 2 * _PREFIX:
        return []
    words = numpy.frombuffer(chunk, dtype='<u2', count=usable // 2)
    w = words.reshape(-1, 4)
    second = w[:, 1].astype(numpy.int32)
    hits = numpy.nonzero((w[:, 0] == 0) & (second >= 2) &
                         (second <= MAX_TOKEN + 1))[0]
    hits = hits[hits * 4 + _PREFIX <= len(words)]
    if not len(hits):
        return []
    rows = words[(hits * 4)[:, None] + numpy.arange(_PREFIX)]
    steps = numpy.diff(rows.astype(numpy.int32), axis=1)
    good = ((steps >= 2) & (steps <= MAX_TOKEN + 1)).all(axis=1)
    return [base + int(i) * _ALIGN for i in hits[good]]


def _check_tokens(read: Reader, index_at: int) -> int | None:
    """Address of the token table that the token index at ``index_at``
    indexes, or None when the 256 entries do not describe one.
    """
    index = struct.unpack('<256H', read(index_at, 512))
    if index[0] != 0 or any(b - a < 2 or b - a > MAX_TOKEN + 1
                            for a, b in zip(index, index[1:])):
        return None
    # The table ends with the last token's NUL, then zero padding up to
    # the index's aligned label.
    window = read(index_at - index[255] - MAX_TOKEN - _ALIGN - 1,
                  index[255] + MAX_TOKEN + _ALIGN + 1)
    end = len(window)
    pad = 0
    while end and window[end - 1] == 0 and pad < _ALIGN:
        end -= 1
        pad += 1
    if pad == 0 or window[end - 1] == 0:
        return None
    last_start = window.rfind(b'\0', 0, end) + 1
    table_offset = last_start - index[255]
    if table_offset < 0:
        return None
    table_at = index_at - len(window) + table_offset
    if table_at % _ALIGN or _align(table_at + index[255] + (end - last_start)
                                   + 1) != index_at:
        return None
    table = window[table_offset:end + 1]
    bounds = list(index) + [len(table)]
    for i in range(256):
        token = table[bounds[i]:bounds[i + 1]]
        if len(token) < 2 or token[-1] != 0 or 0 in token[:-1]:
            return None
    return table_at


def _markers_before(read: Reader, table_at: int
                    ) -> tuple[int, list[int]] | None:
    """(address, values) of the markers array ending just before the
    token table at ``table_at``: u32 entries (u64 on old kernels), the
    first 0, strictly increasing. A table of 256 symbols or fewer has
    the single marker 0, which cannot be told from padding: no kernel
    has so few.
    """
    most = (MAX_SYMS + 255) // 256
    for width, fmt in ((4, '<u4'), (8, '<u8')):
        data = _read_before(read, table_at, most * width)
        span = len(data)
        values = numpy.frombuffer(data, dtype=fmt)
        j = len(values) - 1
        if j > 0 and values[j] == 0 and values[j - 1] != 0 and width == 4:
            j -= 1      # padding up to the token table's label
        if j < 1 or values[j] == 0:
            continue
        top = j
        while j > 0 and values[j] != 0 and values[j - 1] < values[j]:
            j -= 1
        if values[j] != 0:
            continue
        start = table_at - span + j * width
        if start % _ALIGN:
            continue
        return start, [int(v) for v in values[j:top + 1]]
    return None


def _walk_names(data: bytes, count: int, markers: list[int]) -> int | None:
    """Length of a ``names`` stream of ``count`` entries at the start of
    ``data`` whose every 256th entry starts at its marker, or None.
    """
    pos = 0
    limit = len(data)
    for i in range(count):
        if not i & 255 and markers[i >> 8] != pos:
            return None
        if pos >= limit:
            return None
        length = data[pos]
        pos += 1
        if length & 0x80:       # 6.1+: a two-byte length
            if pos >= limit:
                return None
            length = (length & 0x7f) | (data[pos] << 7)
            pos += 1
        if length == 0:
            return None
        pos += length
    return pos if pos <= limit else None


def _names_before(read: Reader, markers_at: int, markers: list[int]
                  ) -> tuple[int, int] | None:
    """(num_syms address, symbol count) of the names stream that ends at
    the markers array at ``markers_at``.
    """
    k = len(markers)
    lowest, highest = 256 * (k - 1) + 1, 256 * k
    # The last marker is the offset of symbol 256 * (k - 1); the entries
    # after it are at most 256 of at most 2 + MAX_TOKEN bytes each.
    span = _align(markers[-1] + 256 * (2 + MAX_TOKEN) + 2 * _ALIGN)
    if span > MAX_NAMES:
        return None
    data = _read_before(read, markers_at, span)
    span = len(data)
    words = numpy.frombuffer(data, dtype='<u4').reshape(-1, 2)
    hits = numpy.nonzero((words[:, 0] >= lowest) & (words[:, 0] <= highest)
                         & (words[:, 1] == 0))[0]
    for i in hits[::-1]:
        num_at = markers_at - span + int(i) * _ALIGN
        count = int(words[i, 0])
        names_at = num_at + _ALIGN
        stream = data[int(i) * _ALIGN + _ALIGN:]
        length = _walk_names(stream, count, markers)
        if length is not None and _align(names_at + length) == markers_at:
            return num_at, count
    return None


def _layouts(read: Reader, num_at: int, index_at: int, count: int):
    """Candidate (offsets, relative_base, addresses, layout) placements of
    the address table around the tables already found.
    """
    old_base = num_at - _ALIGN
    yield (old_base - _align(4 * count), old_base, 0, 'pre-6.4')
    new_offsets = _align(index_at + 512)
    yield (new_offsets, _align(new_offsets + 4 * count), 0, '6.4')
    yield (0, 0, num_at - _align(8 * count), 'pre-6.4')
    yield (0, 0, new_offsets, '6.4')


def find_tables(read: Reader, start: int, size: int = MAX_SCAN
                ) -> list[KallsymsTables]:
    """Find the first complete kallsyms structure at or above ``start``.

    :param read: ``read(vaddr, count) -> bytes`` over the kernel image
        (kernel virtual addresses); it raises :class:`~sparc_nova.exception.
        SparcError` (or a subclass) past the end of readable memory, which
        ends the scan.
    :param start: the kernel's ``_stext`` (from vmcoreinfo).
    :param size: bytes to scan, at most :data:`MAX_SCAN`.
    :returns: the placements of that one structure to try, most likely
        first (the address table's position depends on the kernel
        version; the caller keeps the one vmcoreinfo confirms).
    :raises KallsymsNotFound: no structure in the scanned range.
    """
    size = min(size, MAX_SCAN)
    start -= start % _ALIGN
    anchors_seen = 0
    pos = start
    overlap = 16
    while pos < start + size:
        chunk = _read_upto(read, pos, min(CHUNK, start + size - pos)
                           + overlap)
        if len(chunk) <= overlap:
            break
        n = len(chunk) - overlap
        for index_at in _anchor_candidates(chunk, pos):
            if index_at >= pos + n:
                break
            anchors_seen += 1
            if anchors_seen > MAX_ANCHORS:
                raise KallsymsNotFound(
                    'more than %d token-index look-alikes between 0x%x and '
                    '0x%x and none is a kallsyms table'
                    % (MAX_ANCHORS, start, index_at))
            found = _tables_at(read, index_at)
            if found:
                return found
        pos += n
    raise KallsymsNotFound('no kallsyms tables in the kernel image between '
                           '0x%x and 0x%x' % (start, pos))


def _read_upto(read: Reader, addr: int, count: int) -> bytes:
    """Up to ``count`` bytes at ``addr``: fewer (halving, down to a
    page) where readable memory ends; empty when none is readable.
    """
    while count >= 4096:
        try:
            return read(addr, count)
        except exception.SparcError:
            count //= 2
    return b''


def _read_before(read: Reader, end: int, count: int) -> bytes:
    """Up to ``count`` bytes ending at ``end``: fewer, in whole 8-byte
    words, where readable memory starts later (found by bisection).
    """
    try:
        return read(end - count, count)
    except exception.SparcError:
        pass
    good, bad = 0, count
    while bad - good > _ALIGN:
        mid = ((good + bad) // 2) & ~(_ALIGN - 1)
        if mid <= good:
            break
        try:
            read(end - mid, _ALIGN)
            good = mid
        except exception.SparcError:
            bad = mid
    return read(end - good, good) if good else b''


def _tables_at(read: Reader, index_at: int) -> list[KallsymsTables]:
    try:
        table_at = _check_tokens(read, index_at)
        if table_at is None:
            return []
        found = _markers_before(read, table_at)
        if found is None:
            return []
        markers_at, markers = found
        names = _names_before(read, markers_at, markers)
    except (exception.SparcError, ValueError, struct.error):
        return []
    if names is None:
        return []
    num_at, count = names
    return [KallsymsTables(names=num_at + _ALIGN, token_table=table_at,
                           token_index=index_at, num_syms=num_at,
                           markers=markers_at, offsets=offsets,
                           relative_base=base, addresses=addresses,
                           count=count, layout=layout)
            for offsets, base, addresses, layout
            in _layouts(read, num_at, index_at, count)]
