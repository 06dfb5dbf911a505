"""The RAM index: where every copy of every guest RAM page lies in a stream.

Built by :mod:`sparc_nova.checkpoint.qemu_stream` while it walks the RAM
records; read by the guest-physical view and by the rewriter. All arrays
are numpy arrays so that lookups and scrub selections are vectorised.

Memory: the index holds 17 bytes per record and 4 bytes per guest page
(record and page numbers are 32-bit while they fit, block numbers 8-bit
while there are at most 256 blocks, and a payload's offset is kept as
its header's length), about 42 MiB for an 8 GiB guest. Building it and
its per-page tables works through :data:`CHUNK` records at a time, so
that what it needs on top of the result does not grow with the guest.
"""

import dataclasses

import numpy as np

PAGE_SIZE = 4096
PAGE_SHIFT = 12

#: Record kinds.
KIND_ZERO = 1   # RAM_SAVE_FLAG_ZERO: the page is filled with one byte
KIND_PAGE = 2   # RAM_SAVE_FLAG_PAGE: 4096 bytes of data follow

#: Records (or pages) handled at once where the index is built or a
#: per-page table derived from it.
CHUNK = 1 << 20


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


class RamIndexBuilder:
    """Accumulates records in stream order; :meth:`finish` freezes them."""

    def __init__(self, max_records: int):
        self.max_records = max_records
        self.count = 0
        self._singles = []      # (block, page, hdr_off, data_off, kind, fill)
        self._chunks = []       # tuples of equal-length arrays
        self._order = []        # interleaving: ('s', n) or ('c', idx)

    def _check(self, n: int) -> bool:
        self.count += n
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
        if self._order and self._order[-1][0] == 's':
            self._order[-1][1] += 1
        else:
            self._order.append(['s', 1])
        self._singles.append((block, page, hdr_off, data_off - hdr_off,
                              kind, fill))
        return self._check(1)

    def add_run(self, block: int, pages: np.ndarray, hdr_offs: np.ndarray,
                kind: int, fills: np.ndarray | None) -> bool:
        """Add a run of records of one kind in one block."""
        n = len(pages)
        if fills is None:
            fills = np.zeros(n, dtype=np.uint8)
        self._order.append(['c', len(self._chunks)])
        page_dtype = index_dtype(int(pages.max()) + 1) if n else np.int32
        # A run's records are CONTINUE records: 8-byte headers.
        self._chunks.append((np.full(n, block, dtype=block_dtype(block + 1)),
                             pages.astype(page_dtype),
                             hdr_offs.astype(np.int64),
                             np.full(n, 8, dtype=np.uint16),
                             np.full(n, kind, dtype=np.uint8),
                             fills.astype(np.uint8)))
        return self._check(n)

    def finish(self, blocks: list[RamBlock]) -> 'RamIndex':
        """The index of every record added (the builder is then empty).
        Columns are joined one at a time, each column's pieces released
        as soon as it is joined.
        """
        dtypes = (block_dtype(len(blocks)),
                  index_dtype(max([b.pages for b in blocks] + [1])),
                  np.int64, np.uint16, np.uint8, np.uint8)
        parts = [[] for _ in range(6)]
        si = 0
        for kind, val in self._order:
            if kind == 's':
                rows = self._singles[si:si + val]
                si += val
                cols = list(zip(*rows))
                for i in range(6):
                    parts[i].append(np.array(cols[i], dtype=dtypes[i]))
            else:
                for i in range(6):
                    parts[i].append(self._chunks[val][i].astype(
                        dtypes[i], copy=False))
        self._singles, self._chunks, self._order = [], [], []
        arrays = []
        for i in range(6):
            arrays.append(np.concatenate(parts[i]) if parts[i] else
                          np.zeros(0, dtype=dtypes[i]))
            parts[i] = None
        return RamIndex(blocks, *arrays)


class RamIndex:
    """Every RAM record of a stream, in stream order.

    ``rec_*`` arrays are parallel, one entry per record: RAMBlock index,
    page number within the block, offset of the record header
    (``rec_hdr``, relative to the start of the stream), the length of
    that header (``rec_header_len``: its payload starts that many bytes
    later), kind and, for ZERO records, the fill byte. ``rec_data`` gives
    the payload offsets (:class:`PayloadOffsets`). ``last[b][p]`` is the
    record number of the last copy of page ``p`` of block ``b`` (-1:
    never sent). ``single_copy[b]``: every record of block ``b`` is of
    another page (no page was sent twice).

    Record numbers (``last``) and page numbers (``rec_page``) are int32
    when every one fits (see :func:`index_dtype`), else int64; block
    numbers are uint8 when there are at most 256 blocks, else int32.
    """

    def __init__(self, blocks, rec_block, rec_page, rec_hdr,
                 rec_header_len, rec_kind, rec_fill):
        self.blocks = blocks
        self.by_name = {b.name: b for b in blocks}
        n = len(rec_block)
        self.rec_block = np.asarray(rec_block).astype(
            block_dtype(len(blocks)), copy=False)
        self.rec_page = np.asarray(rec_page).astype(index_dtype(max(
            [b.pages for b in blocks] + [1])), copy=False)
        self.rec_hdr = rec_hdr
        self.rec_header_len = np.asarray(rec_header_len).astype(
            np.uint16, copy=False)
        self.rec_data = PayloadOffsets(rec_hdr, self.rec_header_len)
        self.rec_kind = rec_kind
        self.rec_fill = rec_fill
        rec_dtype = index_dtype(n)
        self.last = [np.full(b.pages, -1, dtype=rec_dtype) for b in blocks]
        records = [0] * len(blocks)
        for start in range(0, n, CHUNK):
            part = self.rec_block[start:start + CHUNK]
            for b in blocks:
                idx = np.flatnonzero(part == b.index)
                if not len(idx):
                    continue
                records[b.index] += len(idx)
                idx += start
                np.maximum.at(self.last[b.index], self.rec_page[idx],
                              idx.astype(rec_dtype))
        self.single_copy = [
            records[b.index] == int(np.count_nonzero(self.last[b.index] >= 0))
            for b in blocks]

    def __len__(self) -> int:
        return len(self.rec_block)

    def block(self, name: str) -> RamBlock:
        return self.by_name[name]

    def stats(self) -> dict:
        """Counts for reports: records by kind, pages sent more than once,
        pages never sent, per block.
        """
        out = {}
        for b in self.blocks:
            sel = self.rec_block == b.index
            last = self.last[b.index]
            present = last >= 0
            kinds = self.rec_kind[last[present]]
            copies = np.bincount(self.rec_page[sel], minlength=b.pages)
            out[b.name] = {
                'length': b.length,
                'pages': b.pages,
                'records': int(sel.sum()),
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
        for start in range(0, len(self.rec_block), CHUNK):
            idx = np.flatnonzero(self.rec_block[start:start + CHUNK] ==
                                 block)
            idx = idx[want[self.rec_page[start + idx]]]
            out.append(idx + start)
        return np.concatenate(out).astype(np.int64) if out else \
            np.zeros(0, dtype=np.int64)


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
