"""The RAM index: where every copy of every guest RAM page lies in a stream.

Built by :mod:`sparc_nova.checkpoint.qemu_stream` while it walks the RAM
records; read by the guest-physical view and by the rewriter. All arrays
are numpy arrays so that lookups and scrub selections are vectorised.
"""

import dataclasses

import numpy as np

PAGE_SIZE = 4096
PAGE_SHIFT = 12

#: Record kinds.
KIND_ZERO = 1   # RAM_SAVE_FLAG_ZERO: the page is filled with one byte
KIND_PAGE = 2   # RAM_SAVE_FLAG_PAGE: 4096 bytes of data follow


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
        """Add one record; False when the record budget is exhausted."""
        if self._order and self._order[-1][0] == 's':
            self._order[-1][1] += 1
        else:
            self._order.append(['s', 1])
        self._singles.append((block, page, hdr_off, data_off, kind, fill))
        return self._check(1)

    def add_run(self, block: int, pages: np.ndarray, hdr_offs: np.ndarray,
                kind: int, fills: np.ndarray | None) -> bool:
        """Add a run of records of one kind in one block."""
        n = len(pages)
        if fills is None:
            fills = np.zeros(n, dtype=np.uint8)
        data_offs = hdr_offs + 8
        self._order.append(['c', len(self._chunks)])
        self._chunks.append((np.full(n, block, dtype=np.int32),
                             pages.astype(np.int64), hdr_offs.astype(np.int64),
                             data_offs.astype(np.int64),
                             np.full(n, kind, dtype=np.uint8),
                             fills.astype(np.uint8)))
        return self._check(n)

    def finish(self, blocks: list[RamBlock]) -> 'RamIndex':
        parts = [[] for _ in range(6)]
        si = 0
        for kind, val in self._order:
            if kind == 's':
                rows = self._singles[si:si + val]
                si += val
                cols = list(zip(*rows))
                dtypes = (np.int32, np.int64, np.int64, np.int64, np.uint8,
                          np.uint8)
                for i in range(6):
                    parts[i].append(np.array(cols[i], dtype=dtypes[i]))
            else:
                for i in range(6):
                    parts[i].append(self._chunks[val][i])
        if parts[0]:
            arrays = [np.concatenate(p) for p in parts]
        else:
            arrays = [np.zeros(0, dtype=t) for t in
                      (np.int32, np.int64, np.int64, np.int64, np.uint8,
                       np.uint8)]
        return RamIndex(blocks, *arrays)


class RamIndex:
    """Every RAM record of a stream, in stream order.

    ``rec_*`` arrays are parallel, one entry per record: RAMBlock index,
    page number within the block, offset of the record header and of its
    payload (relative to the start of the stream), kind and, for ZERO
    records, the fill byte. ``last[b][p]`` is the record number of the last
    copy of page ``p`` of block ``b`` (-1: never sent).
    """

    def __init__(self, blocks, rec_block, rec_page, rec_hdr, rec_data,
                 rec_kind, rec_fill):
        self.blocks = blocks
        self.by_name = {b.name: b for b in blocks}
        self.rec_block = rec_block
        self.rec_page = rec_page
        self.rec_hdr = rec_hdr
        self.rec_data = rec_data
        self.rec_kind = rec_kind
        self.rec_fill = rec_fill
        n = len(rec_block)
        self.last = []
        recno = np.arange(n, dtype=np.int64)
        for b in blocks:
            last = np.full(b.pages, -1, dtype=np.int64)
            sel = rec_block == b.index
            np.maximum.at(last, rec_page[sel], recno[sel])
            self.last.append(last)

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
        """Record numbers of every copy of the given pages of a block."""
        b = self.blocks[block]
        want = np.zeros(b.pages, dtype=bool)
        want[pages] = True
        sel = (self.rec_block == block)
        idx = np.nonzero(sel)[0]
        return idx[want[self.rec_page[idx]]]
