"""Guest physical memory of an open checkpoint, for introspection.

:class:`CheckpointMemory` adapts a parsed
:class:`~sparc_nova.checkpoint.checkpoint.Checkpoint` to the interface
:mod:`sparc_nova.introspect.physical` reads through, with the fast paths the
engine needs: single-page reads straight from the stream, a memmem scan of
the stream, and vectorised "what does this frame hold now" queries.
"""

import bisect
import functools
import mmap

import numpy as np
from numpy.lib import stride_tricks

from sparc_nova.checkpoint import ram_index
from sparc_nova.introspect import physical

__all__ = ['DATA', 'PAGE_SIZE', 'CheckpointMemory', 'pages_hold']

PAGE_SIZE = ram_index.PAGE_SIZE
#: fill value meaning "a data page" in :meth:`CheckpointMemory.fills`.
DATA = -1


#: Stride of back-to-back PAGE records (an 8-byte header, 4096 bytes).
_RECORD = PAGE_SIZE + 8
#: Shortest run of back-to-back pages counted in one numpy call (shorter
#: runs are compared page by page).
_MIN_RUN = 16
#: Eight-byte words of a page compared first, evenly spaced from its
#: first to its last eight bytes (a page that differs there needs no
#: further look).
_SAMPLE = np.linspace(0, PAGE_SIZE - 8, 9).astype(np.int64)
#: Pages sampled per numpy call (about 1.5 MiB of temporaries).
_SAMPLE_PAGES = 1 << 16
#: Frames :meth:`CheckpointMemory.holds` looks at per step.
_HOLDS_FRAMES = 1 << 18
#: Bytes counted per numpy call.
_COUNT_CHUNK = 16 * 1024 * 1024


@functools.lru_cache(maxsize=256)
def _fill_page(fill: int) -> bytes:
    """A page of byte ``fill`` (one object per fill, shared)."""
    return bytes([fill]) * PAGE_SIZE


def _differing(arr: np.ndarray, start: int, end: int, fill: int) -> int:
    """Number of bytes of ``arr[start:end]`` that are not ``fill``."""
    n = 0
    for pos in range(start, end, _COUNT_CHUNK):
        part = arr[pos:min(end, pos + _COUNT_CHUNK)]
        n += np.count_nonzero(part if fill == 0 else part != fill)
    return n


def _run_holds(arr: np.ndarray, first: int, n: int, fill: int) -> bool:
    """Whether ``n`` back-to-back PAGE payloads from offset ``first`` all
    hold ``fill``: the bytes of the span that are not ``fill`` must all be
    header bytes.
    """
    end = first + (n - 1) * _RECORD + PAGE_SIZE
    headers = stride_tricks.as_strided(arr[first + PAGE_SIZE:],
                                       shape=(n - 1, 8),
                                       strides=(_RECORD, 1),
                                       writeable=False)
    return _differing(arr, first, end, fill) == \
        int(np.count_nonzero(headers != fill))


def pages_hold(buf, offsets: np.ndarray, fill: int,
               expected: bool = False) -> np.ndarray:
    """For each offset into ``buf`` (a bytes-like object, e.g. an mmap):
    whether the 4096 bytes there are all ``fill``.

    Vectorised: a sample of every page (the words at :data:`_SAMPLE`) is
    compared at once (unless ``expected``: most pages are expected to
    hold ``fill``, so the sample would reject few); the pages that pass
    and lie back to back as PAGE records (runs of at least
    :data:`_MIN_RUN`) are checked a run at a time by counting the bytes
    that differ; the rest, and the pages of a run that fails, are
    compared one by one.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    out = np.zeros(len(offsets), dtype=bool)
    if not len(offsets):
        return out
    if int(offsets.min()) < 0 or int(offsets.max()) + PAGE_SIZE > len(buf):
        raise ValueError('page offset outside the buffer')
    arr = np.frombuffer(buf, dtype=np.uint8)
    # Every (unaligned) eight-byte word of the buffer, by byte offset.
    words = np.ndarray(shape=(len(arr) - 7,), dtype=np.uint64, buffer=arr,
                       strides=(1,))
    word = np.frombuffer(bytes([fill]) * 8, dtype=np.uint64)[0]
    if expected:
        maybe = np.arange(len(offsets))
    else:
        # A sample is 9 words a page: _SAMPLE_PAGES pages at a time keep
        # the temporaries small.
        maybe = np.concatenate([
            lo + np.nonzero((words[offsets[lo:lo + _SAMPLE_PAGES, None] +
                                   _SAMPLE] == word).all(axis=1))[0]
            for lo in range(0, len(offsets), _SAMPLE_PAGES)])
    cand = offsets[maybe]
    cut = np.nonzero(np.diff(cand) != _RECORD)[0] + 1
    bounds = np.concatenate([[0], cut, [len(cand)]]).tolist()
    page = bytes([fill]) * PAGE_SIZE
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi - lo >= _MIN_RUN and _run_holds(arr, int(cand[lo]), hi - lo,
                                              fill):
            out[maybe[lo:hi]] = True
            continue
        for i, o in zip(maybe[lo:hi].tolist(), cand[lo:hi].tolist()):
            out[i] = buf[o:o + PAGE_SIZE] == page
    return out


class CheckpointMemory:
    """Read-only guest physical memory of a checkpoint.

    :ivar ranges: ``[(start, end)]`` guest physical RAM ranges.
    """

    def __init__(self, ck):
        self._ck = ck
        mem = ck.memory
        idx = mem.index
        self._index = idx
        self.ranges = [(r.gpa, r.end) for r in mem.ranges]
        self._starts = [r.gpa for r in mem.ranges]
        self._pfn0 = []
        # Per range: the index's record numbers of its pages' last copies
        # (a view, no copy: the view adds no per-page memory); kinds and
        # fills are looked up from them when asked.
        self._last = []
        for r in mem.ranges:
            block = idx.block(r.block)
            first = r.block_offset >> 12
            self._last.append(
                idx.last[block.index][first:first + (r.length >> 12)])
            self._pfn0.append(r.gpa >> 12)
        self._stream = ck.stream
        owner = ck.stream.obj if isinstance(ck.stream, memoryview) else None
        if isinstance(owner, mmap.mmap):
            # Search the checkpoint's own mapping (a second mapping of the
            # same file would double the resident page cache we touch).
            self._mm, self._own_mm = owner, False
        else:
            self._mm = mmap.mmap(ck.stream_file.fileno(), 0,
                                 prot=mmap.PROT_READ)
            self._own_mm = True
        self._base = ck.stream_base
        # drgn reads a few bytes at a time from a few pages (the
        # kallsyms tables, a task, its mm): keep the pages it read last.
        self._cache = {}

    def close(self) -> None:
        """Unmap the checkpoint and drop the per-page arrays (about 10
        bytes per guest page) and the checkpoint's RAM index: the view
        can no longer be read.
        """
        if self._mm is not None and self._own_mm:
            self._mm.close()
        self._mm = None
        self._last, self._pfn0 = [], []
        self.ranges, self._starts = [], []
        self._index = self._ck = self._stream = None
        self._cache = {}

    # -- introspection interface -------------------------------------------

    def _locate(self, addr: int) -> tuple[int, int]:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self.ranges[i][1]:
            raise physical.PhysicalAddressError(addr)
        return i, (addr >> 12) - self._pfn0[i]

    def _fills_of(self, last: np.ndarray) -> np.ndarray:
        """Per record number of ``last`` (-1: never sent): the fill byte
        its page loads with, :data:`DATA` for a data page (int16).
        """
        idx = self._index
        present = last >= 0
        kinds, fills = idx.columns(np.where(present, last, 0), 'kind',
                                   'fill')
        fill = np.where(present, fills, 0).astype(np.int16)
        fill[present & (kinds == ram_index.KIND_PAGE)] = DATA
        return fill

    def _page(self, i: int, p: int) -> bytes:
        rec = int(self._last[i][p])
        if rec < 0:
            return _fill_page(0)
        idx = self._index
        if idx.rec_kind[rec] == ram_index.KIND_PAGE:
            off = int(idx.rec_data[rec])
            return self._stream[off:off + PAGE_SIZE]
        return _fill_page(int(idx.rec_fill[rec]))

    def _pages(self, i: int, p: int, n: int) -> list:
        """Pages ``p`` to ``p + n - 1`` of range ``i`` (views of the
        stream, or fill pages), their records looked up at once (a seal
        reads its frames 256 at a time).
        """
        recs = self._last[i][p:p + n]
        fills = self._fills_of(recs).tolist()
        offs = self._index.rec_data[np.where(recs >= 0, recs, 0)].tolist()
        stream = self._stream
        return [stream[o:o + PAGE_SIZE] if f == DATA else _fill_page(f)
                for o, f in zip(offs, fills)]

    def read_into(self, addr: int, out: memoryview) -> None:
        """Fill ``out`` with the ``len(out)`` bytes at guest physical
        ``addr``: :meth:`read` without a new buffer (a seal reads its
        frames into one buffer, record after record, rather than
        allocating a megabyte for each).
        """
        size = len(out)
        if not addr & (PAGE_SIZE - 1) and not size % PAGE_SIZE:
            i, p = self._locate(addr)
            if addr + size <= self.ranges[i][1]:
                if self._copy_records(i, p, out):
                    return
                pos = 0
                for page in self._pages(i, p, size // PAGE_SIZE):
                    out[pos:pos + PAGE_SIZE] = page
                    pos += PAGE_SIZE
                return
        out[:] = self.read(addr, size)

    def _copy_records(self, i: int, p: int, out: memoryview) -> bool:
        """Copy pages ``p`` on of range ``i`` into ``out`` (a multiple of
        4096 bytes) in one numpy step when their last copies are
        back-to-back PAGE records (a strided view of the stream: what a
        seal of a process's memory nearly always reads); False, nothing
        copied, when they are not.
        """
        n = len(out) // PAGE_SIZE
        recs = self._last[i][p:p + n]
        if not (self._fills_of(recs) == DATA).all():
            return False
        offs = self._index.rec_data[recs]
        if n > 1 and not (np.diff(offs) == _RECORD).all():
            return False
        first = int(offs[0])
        span = np.frombuffer(self._stream, dtype=np.uint8)[
            first:first + (n - 1) * _RECORD + PAGE_SIZE]
        if first < 0 or len(span) != (n - 1) * _RECORD + PAGE_SIZE:
            # Never a strided view past the stream (the parser keeps every
            # record inside it; this does not rely on that).
            return False
        pages = stride_tricks.as_strided(
            span, shape=(n, PAGE_SIZE), strides=(_RECORD, 1),
            writeable=False)
        np.copyto(np.frombuffer(out, dtype=np.uint8).reshape(n, PAGE_SIZE),
                  pages)
        return True

    def read(self, addr: int, size: int) -> bytes:
        within = addr & (PAGE_SIZE - 1)
        if within + size <= PAGE_SIZE:
            page = self._cache.get(addr >> 12)
            if page is None:
                i, p = self._locate(addr)
                page = self._page(i, p)
                if not isinstance(page, bytes):
                    page = bytes(page)
                if len(self._cache) >= 512:
                    self._cache.clear()
                self._cache[addr >> 12] = page
            return page[within:within + size]
        if not within and not size % PAGE_SIZE:
            i, p = self._locate(addr)
            if addr + size <= self.ranges[i][1]:
                return b''.join(self._pages(i, p, size // PAGE_SIZE))
        # Pieces are views of the stream where they can be, joined once:
        # a read of many pages copies each byte once.
        pieces = []
        while size > 0:
            i, p = self._locate(addr)
            within = addr & (PAGE_SIZE - 1)
            n = min(size, PAGE_SIZE - within)
            page = self._page(i, p)
            pieces.append(page if n == PAGE_SIZE else
                          page[within:within + n])
            addr += n
            size -= n
        return b''.join(pieces)

    def find(self, needle: bytes):
        """Guest physical addresses of ``needle`` within one page of the
        loaded (last) copy of a data page, ascending by stream offset.
        """
        for off in self._stream_hits(needle):
            gpa = self._gpa_of_payload(off, len(needle), last_only=True)
            if gpa is not None:
                yield gpa

    # -- engine queries ------------------------------------------------------

    def _stream_hits(self, needle: bytes):
        mm = self._mm
        pos = self._base
        while True:
            pos = mm.find(needle, pos)
            if pos < 0:
                return
            yield pos - self._base
            pos += 1

    def _gpa_of_payload(self, off: int, length: int, last_only: bool
                        ) -> int | None:
        """Guest physical address of stream offset ``off`` when it lies
        (with ``length`` bytes) inside one PAGE record's payload.
        """
        idx = self._index
        rec = idx.rec_data.record_at(off)
        if rec < 0 or idx.rec_kind[rec] != ram_index.KIND_PAGE:
            return None
        start = int(idx.rec_data[rec])
        if off + length > start + PAGE_SIZE:
            return None
        block = idx.blocks[int(idx.rec_block[rec])]
        page = int(idx.rec_page[rec])
        if last_only and int(idx.last[block.index][page]) != rec:
            return None
        boff = page * PAGE_SIZE
        for r in self._ck.memory.ranges:
            if r.block == block.name and \
                    r.block_offset <= boff < r.block_offset + r.length:
                return r.gpa + boff - r.block_offset + (off - start)
        return None

    def fills(self, pfns: np.ndarray) -> np.ndarray:
        """For each frame: its uniform fill byte as loaded (0 for a frame
        never sent), or :data:`DATA` for a data page. Frames outside RAM
        raise :class:`PhysicalAddressError`.
        """
        pfns = np.asarray(pfns, dtype=np.int64)
        out = np.empty(len(pfns), dtype=np.int16)
        done = np.zeros(len(pfns), dtype=bool)
        for i, (start, end) in enumerate(self.ranges):
            sel = (pfns >= start >> 12) & (pfns < end >> 12)
            out[sel] = self._fills_of(self._last[i][pfns[sel] -
                                                    self._pfn0[i]])
            done |= sel
        if not done.all():
            raise physical.PhysicalAddressError(
                int(pfns[~done][0]) << 12)
        return out

    def holds(self, pfns: np.ndarray, fill: int,
              expected: bool = False) -> np.ndarray:
        """For each frame: whether it loads as 4096 ``fill`` bytes,
        whether from a ZERO record or from a data page (an in-place
        rewrite leaves data pages). ``expected``: most frames are expected
        to (a read-back), which makes the check faster; the result is the
        same. Works :data:`_HOLDS_FRAMES` frames at a time (the free
        frames of a large guest number millions).
        """
        pfns = np.asarray(pfns, dtype=np.int64)
        if len(pfns) > _HOLDS_FRAMES:
            return np.concatenate([
                self._holds(pfns[lo:lo + _HOLDS_FRAMES], fill, expected)
                for lo in range(0, len(pfns), _HOLDS_FRAMES)])
        return self._holds(pfns, fill, expected)

    def _holds(self, pfns: np.ndarray, fill: int,
               expected: bool) -> np.ndarray:
        fills = self.fills(pfns)
        out = fills == fill
        data = np.nonzero(fills == DATA)[0]
        if not len(data):
            return out
        p = pfns[data]
        offs = np.empty(len(data), dtype=np.int64)
        for i, (start, end) in enumerate(self.ranges):
            sel = (p >= start >> 12) & (p < end >> 12)
            # A data page's last copy is its data record.
            offs[sel] = self._index.rec_data[
                self._last[i][p[sel] - self._pfn0[i]]]
        out[data] = pages_hold(self._mm, offs + self._base, fill, expected)
        return out

    def is_ram(self, pfns: np.ndarray) -> np.ndarray:
        pfns = np.asarray(pfns, dtype=np.int64)
        ok = np.zeros(len(pfns), dtype=bool)
        for start, end in self.ranges:
            ok |= (pfns >= start >> 12) & (pfns < end >> 12)
        return ok

    def count(self, needle: bytes) -> dict:
        """Occurrences of ``needle``: in guest memory as it loads
        (``memory``, including across page boundaries), in stale page
        copies the stream also carries (``stale_copies``) and anywhere in
        the stream bytes (``stream``), with the first few guest physical
        addresses.
        """
        stream = 0
        stale = 0
        for off in self._stream_hits(needle):
            stream += 1
            if self._gpa_of_payload(off, len(needle), last_only=False) \
                    is not None and self._gpa_of_payload(
                        off, len(needle), last_only=True) is None:
                stale += 1
        hits = []
        total = 0
        for i, (start, end) in enumerate(self.ranges):
            for addr in self._scan_range(i, needle):
                total += 1
                if len(hits) < 16:
                    hits.append(addr)
        return {'memory': total, 'stale_copies': stale, 'stream': stream,
                'addresses': ['0x%x' % a for a in hits]}

    def _scan_range(self, i: int, needle: bytes, chunk: int = 2048):
        """Every occurrence in range ``i`` as guest memory loads, including
        occurrences that cross page boundaries.
        """
        last = self._last[i]
        npages = len(last)
        carry = b''
        carry_addr = 0
        base = self.ranges[i][0]
        uniform_ok = len(set(needle)) > 1
        for first in range(0, npages, chunk):
            n = min(chunk, npages - first)
            f = self._fills_of(last[first:first + n])
            d = np.where(f == DATA, self._index.rec_data[
                np.maximum(last[first:first + n], 0)], -1)
            if uniform_ok and not (d >= 0).any():
                # Only uniform pages: a needle of two different bytes
                # can only straddle into them from the carried tail.
                if carry:
                    head = bytes([int(f[0])]) * (len(needle) - 1)
                    buf = carry + head
                    j = buf.find(needle)
                    while j >= 0:
                        if j < len(carry):
                            yield carry_addr + j
                        j = buf.find(needle, j + 1)
                    carry = b''
                continue
            buf = bytearray(carry)
            for k in range(n):
                off = int(d[k])
                if off >= 0:
                    buf += self._stream[off:off + PAGE_SIZE]
                else:
                    buf += bytes([int(f[k])]) * PAGE_SIZE
            chunk_addr = base + first * PAGE_SIZE - len(carry)
            j = buf.find(needle)
            while j >= 0:
                yield chunk_addr + j
                j = buf.find(needle, j + 1)
            keep = len(needle) - 1
            carry = bytes(buf[-keep:]) if keep else b''
            carry_addr = chunk_addr + len(buf) - keep
