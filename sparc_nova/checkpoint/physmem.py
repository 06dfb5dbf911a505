"""A read-only view of guest physical memory reconstructed from a stream.

This is the interface the layers above use (guest introspection reads
kernel structures through it); it knows nothing about what the bytes mean.
"""

import bisect

import numpy as np

from sparc_nova.checkpoint import machine as machine_mod
from sparc_nova.checkpoint import ram_index

PAGE_SIZE = ram_index.PAGE_SIZE


class PhysicalAddressError(Exception):
    """An address outside guest RAM was read."""

    def __init__(self, address: int):
        self.address = address
        super().__init__('guest physical address 0x%x is not RAM' % address)


class GuestPhysicalMemory:
    """Guest physical memory backed by the RAM records of a stream.

    Reads return the content of the last copy of each page, as QEMU would
    load it. Pages never sent read as zero (QEMU leaves them untouched,
    i.e. zero, on the destination).
    """

    def __init__(self, buf, index: ram_index.RamIndex,
                 ranges: list[machine_mod.RamRange]):
        self._buf = buf
        self.index = index
        self.ranges = sorted(ranges, key=lambda r: r.gpa)
        self._starts = [r.gpa for r in self.ranges]

    @property
    def size(self) -> int:
        """Bytes of guest RAM."""
        return sum(r.length for r in self.ranges)

    def range_of(self, addr: int) -> machine_mod.RamRange:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self.ranges[i].end:
            raise PhysicalAddressError(addr)
        return self.ranges[i]

    def locate(self, gpa: int) -> tuple[int, int]:
        """(RAMBlock index, page number within it) of a guest physical
        address.
        """
        rng = self.range_of(gpa)
        block = self.index.block(rng.block)
        return block.index, (gpa - rng.gpa + rng.block_offset) >> 12

    def page_record(self, gpa: int) -> int:
        """Record number of the page's last copy (-1: never sent)."""
        b, p = self.locate(gpa)
        return int(self.index.last[b][p])

    def page_records(self, pfns: np.ndarray) -> np.ndarray:
        """For each guest frame of ``pfns``: the record number of its
        last copy (-1: never sent), as :meth:`page_record` gives it for
        one, found for all at once (int64).

        :raises PhysicalAddressError: a frame is not RAM.
        """
        pfns = np.asarray(pfns, dtype=np.int64).reshape(-1)
        out = np.empty(len(pfns), dtype=np.int64)
        done = np.zeros(len(pfns), dtype=bool)
        for rng in self.ranges:
            first = rng.gpa >> 12
            sel = (pfns >= first) & (pfns < rng.end >> 12)
            if not sel.any():
                continue
            block = self.index.block(rng.block)
            pages = pfns[sel] - first + (rng.block_offset >> 12)
            out[sel] = self.index.last[block.index][pages]
            done |= sel
        if not done.all():
            raise PhysicalAddressError(int(pfns[~done][0]) << 12)
        return out

    def record_page(self, record: int) -> bytes:
        """The 4096 bytes PAGE record number ``record`` carries."""
        off = int(self.index.rec_data[record])
        return bytes(self._buf[off:off + PAGE_SIZE])

    def record_pages(self, records) -> bytes:
        """The 4096 bytes each PAGE record of ``records`` carries, one
        after the other (:meth:`record_page` of each, joined).
        """
        buf = self._buf
        return b''.join([buf[o:o + PAGE_SIZE] for o in
                         self.index.rec_data[records].tolist()])

    def frames(self, pfns: np.ndarray) -> bytes:
        """The 4096 bytes of each guest frame of ``pfns``, one after the
        other (:meth:`read_page` of each, joined), found for all at once
        when every one's last copy is a PAGE record.

        :raises PhysicalAddressError: a frame is not RAM.
        """
        records = self.page_records(pfns)
        if len(records) and (records >= 0).all() and \
                (self.index.rec_kind[records] != ram_index.KIND_ZERO).all():
            return self.record_pages(records)
        return b''.join([self.read_page(pfn)
                         for pfn in np.asarray(pfns).reshape(-1).tolist()])

    def read_page(self, pfn: int) -> bytes:
        """The 4096 bytes of guest frame ``pfn``."""
        rec = self.page_record(pfn << 12)
        if rec < 0:
            return bytes(PAGE_SIZE)
        if self.index.rec_kind[rec] == ram_index.KIND_ZERO:
            return bytes([self.index.rec_fill[rec]]) * PAGE_SIZE
        return self.record_page(rec)

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes from guest physical ``addr``.

        :raises PhysicalAddressError: part of the range is not RAM.
        """
        out = bytearray()
        for _ in range(size // PAGE_SIZE + 2):
            if size <= 0:
                break
            page = addr & ~(PAGE_SIZE - 1)
            within = addr - page
            n = min(size, PAGE_SIZE - within)
            data = self.read_page(page >> 12)
            out += data[within:within + n]
            addr += n
            size -= n
        return bytes(out)

    def page_numbers(self) -> np.ndarray:
        """Every guest frame number backed by RAM, ascending."""
        return np.concatenate([
            np.arange(r.gpa >> 12, r.end >> 12, dtype=np.int64)
            for r in self.ranges])

    def chunks(self, rng: machine_mod.RamRange, pages: int = 256):
        """The bytes of range ``rng``, in order, as ``(gpa, data)`` pieces
        of at most ``pages`` pages; ``data`` is None for a piece that
        loads as zeros.
        """
        block = self.index.block(rng.block)
        last = self.index.last[block.index]
        first_page = rng.block_offset >> 12
        npages = rng.length >> 12
        for start in range(0, npages, pages):
            n = min(pages, npages - start)
            recs = last[first_page + start:first_page + start + n]
            kinds, fills = self.index.columns(np.maximum(recs, 0), 'kind',
                                              'fill')
            kinds = np.where(recs >= 0, kinds, 0)
            fills = np.where(recs >= 0, fills, 0)
            gpa = rng.gpa + start * PAGE_SIZE
            if not (kinds == ram_index.KIND_PAGE).any() and \
                    not fills.any():
                yield gpa, None, n * PAGE_SIZE
                continue
            buf = bytearray(n * PAGE_SIZE)
            for i in range(n):
                rec = int(recs[i])
                if rec < 0:
                    continue
                if kinds[i] == ram_index.KIND_PAGE:
                    off = int(self.index.rec_data[rec])
                    buf[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] = \
                        self._buf[off:off + PAGE_SIZE]
                elif fills[i]:
                    buf[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] = \
                        bytes([int(fills[i])]) * PAGE_SIZE
            yield gpa, buf, n * PAGE_SIZE

    def write_raw(self, out, progress=None) -> None:
        """Write guest physical memory as a flat image: byte N of ``out``
        is guest physical address N; holes (e.g. between the end of low
        RAM and 4 GiB) are sparse.
        """
        done = 0
        total = self.size
        for rng in self.ranges:
            for gpa, data, n in self.chunks(rng):
                out.seek(gpa)
                out.write(data if data is not None else bytes(n))
                done += n
                if progress:
                    progress(done, total)
        out.truncate(max(r.end for r in self.ranges))

    def write_range(self, rng: machine_mod.RamRange, out,
                    progress=None) -> None:
        """Write range ``rng``'s bytes at ``out``'s position."""
        zero = bytes(256 * PAGE_SIZE)
        for gpa, data, n in self.chunks(rng):
            out.write(data if data is not None else zero[:n])
            if progress:
                progress(gpa + n - rng.gpa, rng.length)
