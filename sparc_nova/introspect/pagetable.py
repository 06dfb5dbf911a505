"""Enumerate the present user pages of an address space, in bulk.

drgn's ``follow_phys`` translates one address at a time; an address space
is enumerated here by reading each page-table page once (512 entries,
decoded with numpy) and skipping empty subtrees, which also keeps a sparse
multi-terabyte reservation cheap. Results agree with ``follow_phys``
(tests check it).

x86-64 4- and 5-level paging; 1 GiB and 2 MiB leaf entries; PROT_NONE
entries (present to the kernel, not to the MMU, PFN inverted against L1TF)
count as present; swap entries do not.
"""

import numpy as np

from sparc_nova.introspect import physical
from sparc_nova.introspect import walk

PAGE_SIZE = 4096
_PRESENT = 1 << 0
_PSE = 1 << 7
_PROTNONE = 1 << 8
_PFN_MASK = 0x000ffffffffff000
_PAT_LARGE = 1 << 12


def _entries(memory, table_pa: int) -> np.ndarray:
    return np.frombuffer(memory.read(table_pa, PAGE_SIZE), dtype='<u8')


def _present(e: np.ndarray) -> np.ndarray:
    return (e & (_PRESENT | _PROTNONE)) != 0


def _pfn(e: int, level_shift: int) -> int:
    """The first frame a (leaf or table) entry points to."""
    if not e & _PRESENT:
        e = ~e          # PROT_NONE entries hold the inverted PFN
    pa = e & _PFN_MASK
    if level_shift > 12:
        pa &= ~_PAT_LARGE & ~((1 << level_shift) - 1)
    return pa >> 12


class UserPageWalker:
    """Walks one page table (``mm->pgd``, physical address ``pgd_pa``).

    :param max_entries: bound on leaf entries returned (hostile tables).
    """

    def __init__(self, memory, pgd_pa: int, la57: bool,
                 max_entries: int = 64 * 1024 * 1024):
        self.memory = memory
        self.pgd_pa = pgd_pa
        self.levels = 5 if la57 else 4
        self.max_entries = max_entries
        self._count_total = 0

    def leaves(self, start: int, end: int):
        """``(vaddr, first_pfn, npages)`` of every present leaf entry
        mapping ``[start, end)`` (clipped to the range).
        """
        for vas, pfns, n in self.batches(start, end):
            for va, pfn in zip(vas.tolist(), pfns.tolist()):
                yield va, pfn, n

    def frames(self, start: int, end: int) -> np.ndarray:
        """Every present frame mapping ``[start, end)``, in address
        order (huge mappings expanded).
        """
        parts = []
        for _, pfns, n in self.batches(start, end):
            if n == 1:
                parts.append(pfns)
            else:
                parts.append((pfns[:, None] + np.arange(
                    n, dtype=np.int64)[None, :]).ravel())
        return np.concatenate(parts) if parts else \
            np.zeros(0, dtype=np.int64)

    def batches(self, start: int, end: int):
        """Present leaf entries in batches ``(vaddrs, first_pfns,
        npages)``: a whole page-table page of 4 KiB entries at once, or
        one huge entry (clipped to ``[start, end)``).
        """
        top_shift = 12 + 9 * self.levels
        yield from self._walk(self.pgd_pa, top_shift - 9, start, end, 0)

    def _count(self, n):
        self._count_total += n
        if self._count_total > self.max_entries:
            raise walk.CorruptStructure(
                'page table at 0x%x maps more than %d entries'
                % (self.pgd_pa, self.max_entries))

    def _walk(self, table_pa, shift, start, end, base):
        entries = _entries(self.memory, table_pa)
        span = 1 << shift
        first = max(0, (start - base) >> shift)
        last = min(511, (end - 1 - base) >> shift)
        if first > last:
            return
        sl = entries[first:last + 1]
        present = _present(sl)
        if shift == 12:
            idx = np.nonzero(present)[0]
            if not len(idx):
                return
            e = sl[idx]
            # PROT_NONE entries hold the inverted PFN.
            e = np.where((e & _PRESENT) != 0, e, ~e)
            pfns = ((e & _PFN_MASK) >> 12).astype(np.int64)
            vas = base + ((idx + first).astype(np.int64) << 12)
            self._count(len(idx))
            yield vas, pfns, 1
            return
        for i in (np.nonzero(present)[0] + first).tolist():
            e = int(entries[i])
            va = base + (i << shift)
            lo = max(start, va)
            hi = min(end, va + span)
            if shift in (21, 30) and e & _PSE:
                self._count(1)
                pfn = _pfn(e, shift) + ((lo - va) >> 12)
                yield (np.array([lo], dtype=np.int64),
                       np.array([pfn], dtype=np.int64), (hi - lo) >> 12)
            elif e & _PRESENT:
                yield from self._walk(_pfn(e, 12) << 12, shift - 9, lo, hi,
                                      va)


_WRITABLE = 1 << 1


def kernel_range_read_only(memory, pgd_pa: int, la57: bool, start: int,
                           end: int) -> bool:
    """Whether every page of kernel virtual ``[start, end)`` is present
    and read-only in the page table at ``pgd_pa`` (x86-64: a mapping is
    writable only when every level's entry has the RW bit).

    The kernel maps its text and ``.rodata`` read-only; pages the guest
    can write (freed ``.init`` pages, anything past ``_end``) are either
    unmapped in the kernel image range or writable.
    """
    va = start & ~(PAGE_SIZE - 1)
    while va < end:
        leaf = _leaf(memory, pgd_pa, la57, va)
        if leaf is None or leaf[2]:
            return False
        shift = leaf[1]
        va = ((va >> shift) + 1) << shift
    return True


def translate(memory, pgd_pa: int, la57: bool, vaddr: int) -> int | None:
    """The guest physical address the page table at ``pgd_pa`` maps
    virtual ``vaddr`` to for the MMU (4 KiB, 2 MiB and 1 GiB leaves), or
    None when it does not map it (not present, PROT_NONE included, or a
    table outside RAM).
    """
    try:
        leaf = _leaf(memory, pgd_pa, la57, vaddr)
    except physical.PhysicalAddressError:
        return None
    if leaf is None:
        return None
    e, shift, _ = leaf
    return (_pfn(e, shift) << 12) + (vaddr & ((1 << shift) - 1))


def _leaf(memory, pgd_pa: int, la57: bool,
          vaddr: int) -> tuple[int, int, bool] | None:
    """The entry that maps ``vaddr`` in the page table at ``pgd_pa``:
    ``(entry, shift of the page it maps, writable at every level)``, or
    None when a level's entry is not present.

    :raises PhysicalAddressError: a table lies outside RAM.
    """
    shift = 12 + 9 * (5 if la57 else 4)
    table_pa = pgd_pa
    writable = True
    while True:
        shift -= 9
        e = int(_entries(memory, table_pa)[(vaddr >> shift) & 511])
        if not e & _PRESENT:
            return None
        writable = writable and bool(e & _WRITABLE)
        if shift == 12 or (shift in (21, 30) and e & _PSE):
            return e, shift, writable
        table_pa = _pfn(e, 12) << 12
