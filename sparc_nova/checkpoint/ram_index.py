"""The RAM index: where every copy of every guest RAM page lies in a stream.

Built by :mod:`sparc_nova.checkpoint.qemu_stream` while it walks the RAM
records; read by the guest-physical view and by the rewriter. Lookups
and scrub selections are vectorised: every column answers numpy
indexing (an int, an array of record numbers, a slice or a mask).

Memory: a stream's records come in runs (QEMU sends a block's pages in
ascending order, long stretches of them of one kind: the parser reads
such a run at once), so the index keeps the records as runs
(:class:`RecordRuns`): within a run the block, kind, fill byte and
header length are the same and the page number and header offset step
by a constant. A 2-8 GiB guest's save has one to a few thousand runs,
some tens of kilobytes, whatever its size. A stream whose runs would
take more room than plain columns (pages that alternate between kinds,
as a guest can arrange) is kept as plain columns instead: 17 bytes per
record, record and page numbers 32-bit while they fit, block numbers
8-bit while there are at most 256 blocks. The last copy of each page
(``last``) is kept as runs of pages too (:class:`LastCopies`) in a
block whose pages were each sent once; a block with a page sent twice
(or so many runs that they would be larger) has a table of 4 bytes a
page. While building, runs are Python tuples :data:`FOLD` at a time,
then arrays of 72 bytes a run; a stream of alternating kinds peaks at
about 120 bytes a record.
"""

import bisect
import dataclasses

import numpy as np

PAGE_SIZE = 4096
PAGE_SHIFT = 12

#: Record kinds.
KIND_ZERO = 1   # RAM_SAVE_FLAG_ZERO: the page is filled with one byte
KIND_PAGE = 2   # RAM_SAVE_FLAG_PAGE: 4096 bytes of data follow

#: Records (or pages) handled at once where a per-page table is derived
#: from the index.
CHUNK = 1 << 20

#: Runs the builder holds as Python tuples before making arrays of them.
FOLD = 1 << 16

#: Runs at least this long have their last copies written as a slice.
SHORT_RUN = 16

#: Pieces of runs the builder holds before joining them into one.
_PIECES = 64

#: Bytes a record takes in plain columns (block 1, page 4, header offset
#: 8, header length 2, kind 1, fill 1).
PLAIN_RECORD_BYTES = 17

#: Runs up to which a scalar lookup bisects a Python list of run starts
#: (about 0.3 us) rather than calling numpy (about 1.5 us); the list
#: costs 36 bytes a run.
_LIST_RUNS = 1 << 16

#: A page number below every page (the first page of LastCopies' run 0).
_NOWHERE = -(1 << 62)


def search_right(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.searchsorted(keys, q, side='right')`` for ascending ``keys``
    (int64). When ``q`` is ascending too and much longer than ``keys``,
    counted from where each key falls in ``q``: one binary search per
    key instead of one per element of ``q`` (3 ms for 262144 pages in
    1468 runs, 1 ms this way).
    """
    q = np.asarray(q)
    if len(q) > 16 * len(keys) and len(q) > 1 and \
            bool((q[1:] >= q[:-1]).all()):
        # keys[j] <= q[i] exactly when i >= at[j].
        at = np.searchsorted(q, keys, side='left')
        return np.cumsum(np.bincount(at, minlength=len(q) + 1)[:len(q)])
    return np.searchsorted(keys, q, side='right').astype(np.int64,
                                                         copy=False)


def position(key: int, n: int, what: str) -> int:
    """Integer index ``key`` into ``n`` items, counted from the end when
    negative, as numpy does.

    :raises IndexError: out of range (``what``: the items' name).
    """
    i = int(key)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError('%s %d of %d' % (what, int(key), n))
    return i


def positions(key, n: int, what: str) -> np.ndarray:
    """The positions (int64) a numpy index ``key`` selects among ``n``
    items: a slice, a mask or integers (negative: from the end).

    :raises IndexError: an index out of range or a mask of another
        length (``what``: the items' name).
    """
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64)
    key = np.asarray(key)
    if key.dtype == bool:
        if key.shape != (n,):
            raise IndexError('mask of %s for %d %ss' % (key.shape, n, what))
        return np.flatnonzero(key)
    pos = key.astype(np.int64, copy=False)
    if not pos.size:
        return pos
    low, high = int(pos.min()), int(pos.max())
    if low < -n or high >= n:
        raise IndexError('%s index out of range for %d %ss' % (what, n, what))
    return pos if low >= 0 else np.where(pos < 0, pos + n, pos)


def index_dtype(bound: int):
    """The narrowest of int32 and int64 that holds every integer below
    ``bound`` (record numbers, page numbers).
    """
    return np.int32 if bound <= 1 << 31 else np.int64


def block_dtype(blocks: int):
    """The dtype of block numbers when there are ``blocks`` blocks."""
    return np.uint8 if blocks <= 1 << 8 else np.int32


#: The longest record header the index records (bytes from a record's
#: header to its payload: 8, or 8 + 1 + a block name of at most 255).
MAX_HEADER = (1 << 16) - 1


@dataclasses.dataclass
class RamBlock:
    """A QEMU RAMBlock as announced by the stream's MEM_SIZE record."""

    index: int
    name: str
    length: int     # bytes (used_length)

    @property
    def pages(self) -> int:
        return (self.length + PAGE_SIZE - 1) >> PAGE_SHIFT


@dataclasses.dataclass
class RecordRuns:
    """Records as runs. Run ``k`` holds records ``start[k]`` up to the
    next run's start (or ``count``); record ``start[k] + i`` of it has
    block ``block[k]``, page ``page[k] + i * page_step[k]``, header
    offset ``hdr[k] + i * hdr_step[k]`` and ``header_len[k]``,
    ``kind[k]``, ``fill[k]``. Steps are 0 in one-record runs.
    """

    count: int
    start: np.ndarray
    block: np.ndarray
    page: np.ndarray
    page_step: np.ndarray
    hdr: np.ndarray
    hdr_step: np.ndarray
    header_len: np.ndarray
    kind: np.ndarray
    fill: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes
                   for f in dataclasses.fields(self) if f.name != 'count')

    @classmethod
    def join(cls, pieces: list, count: int, blocks: int,
             pages: int) -> 'RecordRuns':
        """One :class:`RecordRuns` of ``count`` records from pieces (lists
        of arrays in field order after ``count``) in record order,
        narrowed: block numbers to :func:`block_dtype`, pages to
        :func:`index_dtype`. Each field of the pieces is released once
        joined.
        """
        names = [f.name for f in dataclasses.fields(cls)][1:]
        dtypes = {'start': np.int64, 'block': block_dtype(blocks),
                  'page': index_dtype(pages), 'page_step': index_dtype(pages),
                  'hdr': np.int64, 'hdr_step': np.int64,
                  'header_len': np.uint16, 'kind': np.uint8,
                  'fill': np.uint8}
        cols = {}
        for i, name in enumerate(names):
            parts = [p[i] for p in pieces]
            for p in pieces:
                p[i] = None
            cols[name] = (np.concatenate(parts) if parts else
                          np.zeros(0)).astype(dtypes[name], copy=False)
            del parts
        return cls(count, **cols)


class _RunLocator:
    """Which run holds a record: shared by the columns of one index."""

    def __init__(self, runs: RecordRuns):
        self.count = runs.count
        self.start = runs.start
        self.lengths = np.diff(np.append(runs.start, runs.count))
        self._list = runs.start.tolist() if len(runs.start) <= _LIST_RUNS \
            else None

    def locate(self, rec: int) -> tuple[int, int]:
        """(run, position in it) of record ``rec`` (negative: from the
        end, as numpy indexes).

        :raises IndexError: no such record.
        """
        rec = position(rec, self.count, 'record')
        if self._list is not None:
            k = bisect.bisect_right(self._list, rec) - 1
            return k, rec - self._list[k]
        k = int(np.searchsorted(self.start, rec, side='right')) - 1
        return k, rec - int(self.start[k])

    def records(self, key) -> np.ndarray:
        """The record numbers (int64) a numpy index ``key`` selects.

        :raises IndexError: an index out of range or a mask of another
            length.
        """
        return positions(key, self.count, 'record')

    def runs_of(self, recs: np.ndarray) -> np.ndarray:
        """The run of each record number (all in range)."""
        return search_right(self.start, recs) - 1

    def runs_records(self, runs: np.ndarray) -> tuple[np.ndarray,
                                                      np.ndarray]:
        """The records of ``runs`` (run numbers): each one's run and its
        position in the run (int64), run by run.
        """
        lens = self.lengths[runs]
        which = np.repeat(runs, lens)
        pos = np.arange(len(which), dtype=np.int64)
        pos -= np.repeat(np.cumsum(lens) - lens, lens)
        return which, pos

    def span(self, a: int, b: int) -> np.ndarray:
        """The run of each of records ``a`` to ``b - 1`` (``0 <= a < b
        <= count``): :meth:`runs_of` for a stretch of records, with no
        search per record.
        """
        k0, _ = self.locate(a)
        k1, _ = self.locate(b - 1)
        lens = self.lengths[k0:k1 + 1].copy()
        lens[0] -= a - int(self.start[k0])
        lens[-1] -= int(self.start[k1] + self.lengths[k1]) - b
        return np.repeat(np.arange(k0, k1 + 1), lens)


class RunColumn:
    """One column of records kept as runs: indexed like a numpy array
    (an int gives a numpy scalar, an array of record numbers, a slice or
    a mask give an array of :attr:`dtype`). Comparing it with ``==`` or
    ``!=`` or converting it to an array expands every record.
    """

    def __init__(self, locator: _RunLocator, base: np.ndarray,
                 step: np.ndarray | None, dtype):
        self._loc = locator
        self._base = base
        self._step = step
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self._loc.count

    @property
    def shape(self) -> tuple[int]:
        return (self._loc.count,)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            k, i = self._loc.locate(int(key))
            value = int(self._base[k])
            if self._step is not None:
                value += i * int(self._step[k])
            return self.dtype.type(value)
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = key.indices(len(self))
            if a >= b:
                return np.zeros(0, dtype=self.dtype)
            return self.take(np.arange(a, b, dtype=np.int64),
                             self._loc.span(a, b))
        recs = self._loc.records(key)
        return self.take(recs, self._loc.runs_of(recs))

    def take(self, recs: np.ndarray, runs: np.ndarray) -> np.ndarray:
        """The values of records ``recs`` (int64, in range) whose runs
        are ``runs`` (see :meth:`RamIndex.columns`).
        """
        if self._step is None:
            return self._base[runs].astype(self.dtype, copy=False)
        out = self._base[runs].astype(np.int64)
        out += (recs - self._loc.start[runs]) * self._step[runs]
        return out.astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or self.dtype, copy=False)

    def tolist(self) -> list:
        return self[:].tolist()

    def __eq__(self, other):
        return self[:] == other

    def __ne__(self, other):
        return self[:] != other

    __hash__ = None


class RunPayloadOffsets(RunColumn):
    """Payload offsets (int64) of records kept as runs; see
    :class:`PayloadOffsets`.
    """

    def __init__(self, locator: _RunLocator, runs: RecordRuns):
        super().__init__(locator, runs.hdr + runs.header_len.astype(
            np.int64), runs.hdr_step, np.int64)
        self._hdr = runs.hdr
        self._len = runs.header_len

    def record_at(self, off: int) -> int:
        """The last record whose payload starts at or before stream
        offset ``off`` (-1: none).
        """
        k = int(np.searchsorted(self._hdr, off, side='right')) - 1
        if k < 0:
            return -1
        step = int(self._step[k])
        i = (off - int(self._hdr[k])) // step if step else 0
        i = min(i, int(self._loc.lengths[k]) - 1)
        rec = int(self._loc.start[k]) + i
        if int(self[rec]) > off:
            rec -= 1        # off is inside this record's header
        return rec


class LastCopies:
    """The record number of each page's one copy in a block whose pages
    were each sent once, kept as runs of pages: pages ``first[k]`` to
    ``first[k] + count[k] - 1`` have records ``record[k]`` on; a page in
    no run was never sent (-1).

    Indexed like the int array it stands for: an int gives a numpy
    scalar, a slice a :class:`LastCopies` of those pages (a view, as a
    numpy slice is), an array of page numbers or a mask an array of
    :attr:`dtype`. Comparisons, ``np.asarray`` and :meth:`tolist`
    expand the pages asked for.
    """

    #: Bytes a run takes (first page, count, record: int64 each, twice).
    RUN_BYTES = 48

    def __init__(self, first: np.ndarray, count: np.ndarray,
                 record: np.ndarray, pages: int, dtype, offset: int = 0,
                 shared: tuple | None = None):
        self._first = first
        self._count = count
        self._record = record
        self._pages = pages
        self._offset = offset
        self.dtype = np.dtype(dtype)
        if shared is None:
            # The runs behind a run 0 that holds no page, so that every
            # page has a run before it; and the first pages as a list
            # for a scalar lookup.
            shared = (np.concatenate([[_NOWHERE], first]),
                      np.concatenate([[0], count]),
                      np.concatenate([[-1], record]),
                      first.tolist() if len(first) <= _LIST_RUNS else None)
        self._shared = shared
        self._list = shared[3]

    def __len__(self) -> int:
        return self._pages

    @property
    def shape(self) -> tuple[int]:
        return (self._pages,)

    def _lookup(self, pages: np.ndarray) -> np.ndarray:
        """Records of block pages ``pages`` (int64, in range)."""
        first, count, record, _ = self._shared
        k = search_right(first, pages) - 1
        off = pages - first[k]
        out = record[k] + off
        out[off >= count[k]] = -1
        return out.astype(self.dtype, copy=False)

    def __getitem__(self, key):
        n = self._pages
        if isinstance(key, (int, np.integer)):
            page = self._offset + position(key, n, 'page')
            if self._list is not None:
                k = bisect.bisect_right(self._list, page) - 1
            else:
                k = int(np.searchsorted(self._first, page, side='right')) - 1
            if k >= 0:
                first = int(self._first[k])
                if page < first + int(self._count[k]):
                    return self.dtype.type(int(self._record[k]) + page -
                                           first)
            return self.dtype.type(-1)
        if isinstance(key, slice):
            a, b, step = key.indices(n)
            if step == 1:
                return LastCopies(self._first, self._count, self._record,
                                  max(0, b - a), self.dtype,
                                  self._offset + a, self._shared)
        return self._lookup(positions(key, n, 'page') + self._offset)

    def __array__(self, dtype=None, copy=None):
        a, b = self._offset, self._offset + self._pages
        k0 = max(0, int(np.searchsorted(self._first, a, side='right')) - 1)
        k1 = int(np.searchsorted(self._first, b, side='left'))
        if k1 - k0 > _LIST_RUNS:
            out = self._lookup(np.arange(a, b, dtype=np.int64))
        else:
            # A stretch of pages covers few runs: a slice each.
            out = np.full(self._pages, -1, dtype=self.dtype)
            for first, count, rec in zip(self._first[k0:k1].tolist(),
                                         self._count[k0:k1].tolist(),
                                         self._record[k0:k1].tolist()):
                lo, hi = max(first, a), min(first + count, b)
                if lo < hi:
                    out[lo - a:hi - a] = np.arange(rec + lo - first,
                                                   rec + hi - first)
        return out.astype(dtype or self.dtype, copy=False)

    def tolist(self) -> list:
        return np.asarray(self).tolist()

    def __eq__(self, other):
        return np.asarray(self) == other

    def __ne__(self, other):
        return np.asarray(self) != other

    def __lt__(self, other):
        return np.asarray(self) < other

    def __le__(self, other):
        return np.asarray(self) <= other

    def __gt__(self, other):
        return np.asarray(self) > other

    def __ge__(self, other):
        return np.asarray(self) >= other

    __hash__ = None


class PayloadOffsets:
    """The payload offset of each record, ``rec_hdr + rec_header_len``,
    computed for the records asked for: indexed like an array (an int,
    an array of record numbers, a slice or a mask) it gives int64 values.
    Not stored as a column of its own, which would take 8 bytes a record.

    Records follow each other in the stream, so payload offsets ascend
    with the record number (:meth:`record_at`).
    """

    def __init__(self, rec_hdr: np.ndarray, rec_header_len: np.ndarray):
        self._hdr = rec_hdr
        self._len = rec_header_len

    def __len__(self) -> int:
        return len(self._hdr)

    def __getitem__(self, key):
        # int64 offsets plus uint16 lengths give int64.
        return self._hdr[key] + self._len[key]

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or np.int64, copy=False)

    def record_at(self, off: int) -> int:
        """The last record whose payload starts at or before stream
        offset ``off`` (-1: none).
        """
        rec = int(np.searchsorted(self._hdr, off, side='right')) - 1
        if rec >= 0 and int(self._hdr[rec]) + int(self._len[rec]) > off:
            rec -= 1        # off is inside this record's header
        return rec


class RamIndexBuilder:
    """Accumulates records in stream order; :meth:`finish` freezes them.

    A record added alone is a run of one; a run added with
    :meth:`add_run` is one run, or one per stretch of equal fill bytes.
    Runs are kept as Python tuples until :data:`FOLD` of them are
    gathered, then as arrays.
    """

    def __init__(self, max_records: int):
        self.max_records = max_records
        self.count = 0
        self._rows = []         # runs in RecordRuns' field order
        self._pieces = []       # lists of arrays, the same fields

    def _added(self, n: int) -> bool:
        self.count += n
        if len(self._rows) >= FOLD:
            self._flush()
        return self.count <= self.max_records

    def add(self, block: int, page: int, hdr_off: int, data_off: int,
            kind: int, fill: int) -> bool:
        """Add one record; False when the record budget is exhausted.

        :raises ValueError: its payload is not within :data:`MAX_HEADER`
            bytes after its header (the parser never makes such a
            record).
        """
        if not 0 <= data_off - hdr_off <= MAX_HEADER:
            raise ValueError('record at %d: payload at %d' % (hdr_off,
                                                              data_off))
        self._rows.append((self.count, block, page, 0, hdr_off, 0,
                           data_off - hdr_off, kind, fill))
        return self._added(1)

    def add_run(self, block: int, first_page: int, count: int,
                first_hdr: int, stride: int, kind: int,
                fills: np.ndarray | None = None,
                header_len: int = 8) -> bool:
        """Add ``count`` records of one kind in one block for consecutive
        pages from ``first_page``, their headers ``stride`` bytes apart
        from ``first_hdr``, each ``header_len`` bytes long (a stream's
        CONTINUE records: 8); ``fills``: each ZERO record's fill byte.
        False when the record budget is exhausted.
        """
        if count <= 0:
            return self.count <= self.max_records
        if fills is None:
            starts, values = [0], [0]
        else:
            fills = np.asarray(fills, dtype=np.uint8)[:count]
            cut = np.flatnonzero(fills[1:] != fills[:-1]) + 1
            starts = [0] + cut.tolist()
            values = fills[starts].tolist()
        ends = starts[1:] + [count]
        for s, e, fill in zip(starts, ends, values):
            multi = e - s > 1
            self._rows.append((self.count + s, block, first_page + s,
                               1 if multi else 0, first_hdr + s * stride,
                               stride if multi else 0, header_len, kind,
                               fill))
        return self._added(count)

    def _flush(self) -> None:
        if not self._rows:
            return
        cols = list(zip(*self._rows))
        self._rows = []
        self._pieces.append([np.array(c, dtype=np.int64) for c in cols])
        if len(self._pieces) >= _PIECES:
            # Bound the pieces' per-object overhead: join them.
            self._pieces = [[np.concatenate(col) for col in
                             zip(*self._pieces)]]

    def finish(self, blocks: list[RamBlock]) -> 'RamIndex':
        """The index of every record added (the builder is then empty)."""
        self._flush()
        pieces, self._pieces = self._pieces, []
        runs = RecordRuns.join(pieces, self.count, len(blocks),
                               max([b.pages for b in blocks] + [1]))
        del pieces
        return RamIndex(blocks, runs)


class RamIndex:
    """Every RAM record of a stream, in stream order.

    ``rec_*`` columns are parallel, one entry per record: RAMBlock
    index, page number within the block, offset of the record header
    (``rec_hdr``, relative to the start of the stream), the length of
    that header (``rec_header_len``: its payload starts that many bytes
    later), kind and, for ZERO records, the fill byte. ``rec_data`` gives
    the payload offsets (int64). Each column is indexed like a numpy
    array: a :class:`RunColumn` when the records are kept as runs
    (``storage == 'runs'``), else a numpy array (``'columns'``), see the
    module's docstring. ``last[b][p]`` is the record number of the last
    copy of page ``p`` of block ``b`` (-1: never sent): a
    :class:`LastCopies` when each page of the block was sent once, in
    runs of consecutive pages, else a numpy array. ``single_copy[b]``:
    every record of block ``b`` is of another page (no page was sent
    twice).

    Record numbers (``last``) and page numbers (``rec_page``) are int32
    when every one fits (see :func:`index_dtype`), else int64; block
    numbers are uint8 when there are at most 256 blocks, else int32.
    """

    def __init__(self, blocks: list[RamBlock], runs: RecordRuns):
        self.blocks = blocks
        self.by_name = {b.name: b for b in blocks}
        n = runs.count
        page_dtype = index_dtype(max([b.pages for b in blocks] + [1]))
        loc = _RunLocator(runs)
        columns = {
            'rec_block': RunColumn(loc, runs.block, None,
                                   block_dtype(len(blocks))),
            'rec_page': RunColumn(loc, runs.page, runs.page_step,
                                  page_dtype),
            'rec_hdr': RunColumn(loc, runs.hdr, runs.hdr_step, np.int64),
            'rec_header_len': RunColumn(loc, runs.header_len, None,
                                        np.uint16),
            'rec_kind': RunColumn(loc, runs.kind, None, np.uint8),
            'rec_fill': RunColumn(loc, runs.fill, None, np.uint8)}
        self.runs = len(runs.start)
        self._runs = None
        if runs.nbytes <= PLAIN_RECORD_BYTES * n:
            self.storage = 'runs'
            self._runs, self._loc = runs, loc
            self.rec_data = RunPayloadOffsets(loc, runs)
        else:
            self.storage = 'columns'
            for name, col in columns.items():
                plain = np.empty(n, dtype=col.dtype)
                for start in range(0, n, CHUNK):
                    plain[start:start + CHUNK] = col[start:start + CHUNK]
                columns[name] = plain
            self.rec_data = PayloadOffsets(columns['rec_hdr'],
                                           columns['rec_header_len'])
        self.rec_block = columns['rec_block']
        self.rec_page = columns['rec_page']
        self.rec_hdr = columns['rec_hdr']
        self.rec_header_len = columns['rec_header_len']
        self.rec_kind = columns['rec_kind']
        self.rec_fill = columns['rec_fill']
        self._last_copies(runs, loc)

    def _last_copies(self, runs: RecordRuns, loc: _RunLocator) -> None:
        """Fill ``last`` and ``single_copy``. A block whose pages were
        each sent once in runs of consecutive pages, in fewer runs than
        would fit in its plain table, gets a :class:`LastCopies`; another
        a plain table, a run of consecutive pages of at least
        :data:`SHORT_RUN` records written as a slice, the other records
        :data:`CHUNK` at a time.
        """
        rec_dtype = index_dtype(runs.count)
        width = np.dtype(rec_dtype).itemsize
        records = np.bincount(runs.block.astype(np.int64),
                              weights=loc.lengths,
                              minlength=len(self.blocks))
        self.last = [None] * len(self.blocks)
        self.single_copy = [False] * len(self.blocks)
        plain = np.ones(len(runs.start), dtype=bool)
        for b in self.blocks:
            k = np.flatnonzero(runs.block == b.index)
            if len(k) * LastCopies.RUN_BYTES > b.pages * width or \
                    not ((runs.page_step[k] == 1) |
                         (loc.lengths[k] == 1)).all():
                continue
            order = np.argsort(runs.page[k], kind='stable')
            k = k[order]
            first = runs.page[k].astype(np.int64)
            count = loc.lengths[k]
            if (first[1:] < first[:-1] + count[:-1]).any():
                continue        # a page sent twice
            self.last[b.index] = LastCopies(first, count, runs.start[k],
                                            b.pages, rec_dtype)
            self.single_copy[b.index] = True
            plain[k] = False
        for b in self.blocks:
            if self.last[b.index] is None:
                self.last[b.index] = np.full(b.pages, -1, dtype=rec_dtype)
        whole = plain & (loc.lengths >= SHORT_RUN) & (runs.page_step == 1)
        for k in np.flatnonzero(whole).tolist():
            first, count = int(runs.page[k]), int(loc.lengths[k])
            seg = self.last[int(runs.block[k])][first:first + count]
            start = int(runs.start[k])
            np.maximum(seg, np.arange(start, start + count, dtype=rec_dtype),
                       out=seg)
        # The other runs (short ones, in practice a stream's one-record
        # runs) a bounded number of records at a time.
        rest = np.flatnonzero(plain & ~whole)
        ends = np.cumsum(loc.lengths[rest])
        lo = 0
        while lo < len(rest):
            hi = max(lo + 1, int(np.searchsorted(
                ends, (ends[lo - 1] if lo else 0) + CHUNK, side='right')))
            which, pos = loc.runs_records(rest[lo:hi])
            lo = hi
            recs = (runs.start[which] + pos).astype(rec_dtype)
            pages = runs.page[which] + pos * runs.page_step[which]
            for b in self.blocks:
                sel = runs.block[which] == b.index
                if sel.any():
                    np.maximum.at(self.last[b.index], pages[sel], recs[sel])
        for b in self.blocks:
            if isinstance(self.last[b.index], np.ndarray):
                self.single_copy[b.index] = int(records[b.index]) == \
                    int(np.count_nonzero(self.last[b.index] >= 0))

    def __len__(self) -> int:
        return len(self.rec_block)

    def block(self, name: str) -> RamBlock:
        return self.by_name[name]

    def columns(self, recs: np.ndarray, *names: str) -> tuple:
        """``rec_<name>[recs]`` for each of ``names`` (``block``, ``page``,
        ``hdr``, ``header_len``, ``kind``, ``fill``, ``data``), with one
        search of the records' runs for all of them.
        """
        cols = [getattr(self, 'rec_' + name) for name in names]
        if self._runs is None:
            return tuple(col[recs] for col in cols)
        recs = self._loc.records(recs)
        runs = self._loc.runs_of(recs)
        return tuple(col.take(recs, runs) for col in cols)

    def summary(self) -> dict:
        """How the index keeps its records, for reports: ``storage``
        (``runs`` or ``columns``), ``records``, ``runs`` and ``bytes``
        (the record columns or runs, without the 4 bytes a page of
        ``last``).
        """
        if self._runs is not None:
            size = self._runs.nbytes
        else:
            size = sum(getattr(self, name).nbytes for name in (
                'rec_block', 'rec_page', 'rec_hdr', 'rec_header_len',
                'rec_kind', 'rec_fill'))
        return {'storage': self.storage, 'records': len(self),
                'runs': self.runs, 'bytes': int(size)}

    def stats(self) -> dict:
        """Counts for reports: records by kind, pages sent more than once,
        pages never sent, per block.
        """
        out = {}
        n = len(self)
        for b in self.blocks:
            records = 0
            copies = np.zeros(b.pages, dtype=np.int32)
            for start in range(0, n, CHUNK):
                sel = self.rec_block[start:start + CHUNK] == b.index
                records += int(np.count_nonzero(sel))
                np.add.at(copies, self.rec_page[start:start + CHUNK][sel], 1)
            last = self.last[b.index]
            present = last >= 0
            kinds = self.rec_kind[last[present]]
            out[b.name] = {
                'length': b.length,
                'pages': b.pages,
                'records': records,
                'data_pages': int((kinds == KIND_PAGE).sum()),
                'zero_pages': int((kinds == KIND_ZERO).sum()),
                'missing_pages': int((~present).sum()),
                'pages_sent_more_than_once': int((copies > 1).sum()),
            }
        return out

    def copies_of(self, block: int, pages: np.ndarray) -> np.ndarray:
        """Record numbers of every copy of the given pages of a block,
        ascending (int64).
        """
        pages = np.asarray(pages, dtype=np.int64)
        if self.single_copy[block]:
            recs = self.last[block][pages]
            # Each page's one record: distinct when the pages are.
            recs = np.sort(recs[recs >= 0]).astype(np.int64)
            if (recs[1:] == recs[:-1]).any():
                recs = np.concatenate([recs[:1], recs[1:][recs[1:] !=
                                                          recs[:-1]]])
            return recs
        b = self.blocks[block]
        want = np.zeros(b.pages, dtype=bool)
        want[pages] = True
        out = []
        for start in range(0, len(self), CHUNK):
            idx = np.flatnonzero(self.rec_block[start:start + CHUNK] ==
                                 block)
            idx = idx[want[self.rec_page[start:start + CHUNK][idx]]]
            out.append(idx + start)
        return np.concatenate(out).astype(np.int64) if out else \
            np.zeros(0, dtype=np.int64)
