"""Read ``struct page`` fields for many frames at once.

With SPARSEMEM_VMEMMAP (every x86-64 distribution kernel) the page of
frame N is at ``vmemmap_base + N * sizeof(struct page)``; the vmemmap is
read a run of pages at a time (64 struct pages per page) and decoded with
numpy.
Field offsets come from the kernel's types, so they follow the kernel
version.
"""

import drgn
import numpy as np

from sparc_nova.introspect import arrays
from sparc_nova.introspect import walk

PAGE_SIZE = 4096
#: Frames whose struct pages :meth:`PageModel.read` reads and decodes at
#: once (bounds its temporaries to about 13 MiB).
READ_CHUNK = 1 << 16
#: Most vmemmap pages read at once (1 MiB: struct pages of 1 GiB of RAM).
MAX_RUN_PAGES = 256


class PageModel:
    """Field layout of ``struct page`` for one kernel, and the page
    predicates the engine needs (all vectorised over frames).
    """

    def __init__(self, kernel):
        self.kernel = kernel
        prog = kernel.prog
        ptype = prog.type('struct page')
        self.size = ptype.size
        off = drgn.offsetof
        self.off_flags = off(ptype, 'flags')
        self.off_mapping = off(ptype, 'mapping')
        self.off_private = off(ptype, 'private')
        self.off_mapcount = off(ptype, '_mapcount')
        self.off_refcount = off(ptype, '_refcount')
        self.off_compound_head = off(ptype, 'compound_head')
        # The PMD-mapping count of a large folio lives in its second page:
        # page[1].compound_mapcount (<= 6.2) or folio->_entire_mapcount.
        try:
            self.off_entire_mapcount = off(ptype, 'compound_mapcount')
        except LookupError:
            folio = prog.type('struct folio')
            self.off_entire_mapcount = off(folio, '_entire_mapcount') - \
                self.size
        vmci = kernel.vmcoreinfo
        self.pg_head_mask = vmci.numbers.get('PG_head_mask', 1 << 16)
        self.buddy_value = vmci.numbers.get('PAGE_BUDDY_MAPCOUNT_VALUE',
                                            -129) & 0xffffffff
        base = kernel.symbol_address('vmemmap_base')
        if base is None:
            raise walk.CorruptStructure('no vmemmap_base symbol: only '
                                        'SPARSEMEM_VMEMMAP kernels are '
                                        'supported')
        self.vmemmap = prog.read_u64(base)

    def is_buddy(self, page_type: np.ndarray) -> np.ndarray:
        """PageBuddy from the ``page_type`` word. Up to 6.8 a type is a
        cleared bit under PAGE_TYPE_BASE (vmcoreinfo gives ~PG_buddy);
        from 6.9 the top byte holds the type (vmcoreinfo gives it << 24).
        """
        v = self.buddy_value
        pt = page_type.astype(np.uint32)
        if v & 0xffffff == 0:
            return (pt >> 24) == (v >> 24)
        pg_buddy = (~v) & 0xffffffff
        return (pt & np.uint32(0xf0000000 | pg_buddy)) == np.uint32(
            0xf0000000)

    def read(self, pfns) -> dict[str, np.ndarray]:
        """Fields of the struct pages of ``pfns``: flags, mapping,
        private, mapcount (``_mapcount``, signed), page_type (same word,
        unsigned), refcount, compound_head.
        """
        pfns = np.asarray(pfns, dtype=np.int64)
        if len(pfns) > READ_CHUNK:
            # A piece at a time: the raw struct pages and the vmemmap
            # pages read cost about 200 bytes a frame until decoded.
            parts = [self._read(pfns[lo:lo + READ_CHUNK])
                     for lo in range(0, len(pfns), READ_CHUNK)]
            out = {k: np.concatenate([p[k] for p in parts])
                   for k in parts[0] if k != 'mapcount'}
            out['mapcount'] = out['page_type'].view('<i4')
            return out
        return self._read(pfns)

    def _read(self, pfns: np.ndarray) -> dict[str, np.ndarray]:
        n = len(pfns)
        size = self.size
        if not n:
            return self._decode(np.zeros((0, size), dtype=np.uint8))
        addrs = np.uint64(self.vmemmap) + \
            pfns.astype(np.uint64) * np.uint64(size)
        vpages = addrs >> np.uint64(12)
        # One read per run of consecutive vmemmap pages (64 struct pages
        # each), then a gather.
        uniq, inverse = arrays.unique(vpages, return_inverse=True)
        buf = np.empty((len(uniq), PAGE_SIZE), dtype=np.uint8)
        prog = self.kernel.prog
        cut = np.nonzero(np.diff(uniq) != 1)[0] + 1
        runs = zip(np.concatenate([[0], cut]).tolist(),
                   np.concatenate([cut, [len(uniq)]]).tolist())
        for first, end in runs:
            for lo in range(first, end, MAX_RUN_PAGES):
                hi = min(end, lo + MAX_RUN_PAGES)
                buf[lo:hi] = self._read_vmemmap(prog, uniq, lo, hi, pfns,
                                                inverse)
        within = (addrs & np.uint64(PAGE_SIZE - 1)).astype(np.int64)
        if PAGE_SIZE % size == 0:
            # Struct pages tile the vmemmap page: gather whole rows.
            rows = buf.reshape(-1, size)
            return self._decode(rows[inverse * (PAGE_SIZE // size) +
                                     within // size])
        cross = within + size > PAGE_SIZE
        within[cross] = 0
        raw = buf[inverse[:, None],
                  within[:, None] + np.arange(size, dtype=np.int64)]
        for i in np.nonzero(cross)[0].tolist():
            # A struct page straddling two vmemmap pages (sizes that do
            # not divide 4096).
            raw[i] = np.frombuffer(prog.read(int(addrs[i]), size),
                                   dtype=np.uint8)
        return self._decode(raw)

    @staticmethod
    def _read_vmemmap(prog, vpages, lo, hi, pfns, inverse) -> np.ndarray:
        """vmemmap pages ``vpages[lo:hi]`` (consecutive) as a (hi - lo,
        4096) array, in one read; a fault names the first frame whose
        struct page is not mapped.
        """
        try:
            data = prog.read(int(vpages[lo]) << 12, (hi - lo) * PAGE_SIZE)
            return np.frombuffer(data, dtype=np.uint8).reshape(hi - lo,
                                                               PAGE_SIZE)
        except drgn.FaultError:
            for i in range(lo, hi):
                try:
                    prog.read(int(vpages[i]) << 12, PAGE_SIZE)
                except drgn.FaultError:
                    raise walk.CorruptStructure(
                        'struct page of frame 0x%x is not mapped'
                        % int(pfns[inverse == i][0]))
            raise

    def _decode(self, raw):
        def u64(off):
            return raw[:, off:off + 8].copy().view('<u8').ravel()

        def u32(off):
            return raw[:, off:off + 4].copy().view('<u4').ravel()
        page_type = u32(self.off_mapcount)
        return {'flags': u64(self.off_flags),
                'mapping': u64(self.off_mapping),
                'private': u64(self.off_private),
                'page_type': page_type,
                'mapcount': page_type.view('<i4'),
                'refcount': u32(self.off_refcount).view('<i4'),
                'compound_head': u64(self.off_compound_head)}

    def entire_mapcount(self, head_pfns) -> np.ndarray:
        """PMD mappings of the large folios whose head frames are given
        (-1 means none).
        """
        head_pfns = np.asarray(head_pfns, dtype=np.int64)
        uniq, inverse = arrays.unique(head_pfns, return_inverse=True)
        vals = np.empty(len(uniq), dtype=np.int64)
        prog = self.kernel.prog
        for i, pfn in enumerate(uniq.tolist()):
            addr = self.vmemmap + (pfn + 1) * self.size + \
                self.off_entire_mapcount
            vals[i] = int.from_bytes(prog.read(addr, 4), 'little',
                                     signed=True)
        return vals[inverse]

    def pfns_of_pages(self, page_addrs: np.ndarray) -> np.ndarray:
        """:meth:`pfn_of_page` for many addresses (uint64 array)."""
        rel = page_addrs.astype(np.uint64) - np.uint64(self.vmemmap)
        bad = (page_addrs.astype(np.uint64) < np.uint64(self.vmemmap)) | \
            (rel % np.uint64(self.size) != 0) | \
            (rel // np.uint64(self.size) >= np.uint64(1 << 52))
        if bad.any():
            raise walk.CorruptStructure('0x%x is not a struct page address'
                                        % int(page_addrs[bad][0]))
        return (rel // np.uint64(self.size)).astype(np.int64)

    def pfn_of_page(self, page_addr: int) -> int:
        rel = page_addr - self.vmemmap
        if rel < 0 or rel % self.size:
            raise walk.CorruptStructure('0x%x is not a struct page address'
                                        % page_addr)
        return rel // self.size
