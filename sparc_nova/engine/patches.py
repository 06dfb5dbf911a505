"""Collect the changes a scrub makes to guest physical memory.

Two kinds of change: whole frames set to one byte (scrubbed frames) and
byte writes into kernel objects. Every field write has a kind, one of
those the engine makes (:data:`KINDS`): a bit set in a thread's pending
signals or flags (``signal``), the wake-up timer and the links, counts
and wheel fields it needs (``timer``), a bit cleared in a dropped page
cache page's flags (``page-flags``), and zeroed kernel buffers that held
an excluded process's data (``redact``: their old bytes are neither kept
nor reported), and zeroed free slab objects (``free-object``: free
memory, redacted like ``redact``). The plan carries the kind, and the
privileged side checks each write against its kind's rules
(:mod:`.plan_codec`). A field write never crosses a page boundary here:
:meth:`PagePatcher.write_virt` splits it per page and translates each
part separately, and every write is checked to stay inside its page.
Writes into a frame that is also being scrubbed are refused: that would
mean the plan is inconsistent.

The changes to free memory (free frames, ``free-object`` writes) are
told apart from those to the excluded processes' data
(:attr:`PagePatcher.free_frames`): a seal (:mod:`.seal`) keeps the
latter and scrubs the former for good.
"""

import dataclasses

import numpy as np

from sparc_nova.introspect import arrays
from sparc_nova.introspect import physical

__all__ = ['FREE_OBJECT', 'KINDS', 'PAGE_FLAGS', 'PAGE_SIZE', 'REDACT',
           'REDACTED_KINDS', 'SIGNAL', 'TIMER', 'FieldWrite', 'PagePatcher',
           'PlanConflict']

PAGE_SIZE = physical.PAGE_SIZE

#: Field write kinds (see the module docstring).
SIGNAL = 'signal'
TIMER = 'timer'
PAGE_FLAGS = 'page-flags'
REDACT = 'redact'
FREE_OBJECT = 'free-object'
KINDS = (SIGNAL, TIMER, PAGE_FLAGS, REDACT, FREE_OBJECT)
#: Kinds whose replaced bytes may be secret: zeroes written, the old
#: bytes neither kept nor reported.
REDACTED_KINDS = (REDACT, FREE_OBJECT)


@dataclasses.dataclass
class FieldWrite:
    """One field write, kept for read-back verification."""

    paddr: int
    old: bytes
    new: bytes
    what: str
    kind: str = REDACT

    @property
    def redacted(self) -> bool:
        """The bytes replaced may be secret: not kept, not reported."""
        return self.kind in REDACTED_KINDS

    def as_dict(self) -> dict:
        if self.redacted:
            return {'paddr': '0x%x' % self.paddr, 'what': self.what,
                    'zeroed': len(self.new)}
        return {'paddr': '0x%x' % self.paddr, 'what': self.what,
                'old': self.old.hex(), 'new': self.new.hex()}


class PlanConflict(Exception):
    """Two queued changes contradict each other (a field write into a
    frame being scrubbed, a frame both scrubbed and patched, a write
    crossing a page or of an unknown kind): the plan is wrong and nothing
    may be written.
    """


class PagePatcher:
    """Pending changes to guest memory ``memory``."""

    def __init__(self, memory):
        self.memory = memory
        self._pages: dict[int, bytearray] = {}
        self._fills: dict[int, np.ndarray] = {}
        self._free = np.zeros(0, dtype=np.int64)
        self.fields: list[FieldWrite] = []

    def write(self, paddr: int, data: bytes, what: str, *,
              kind: str) -> None:
        """Write ``data`` at guest physical ``paddr`` (within one page).

        :param kind: one of :data:`KINDS`; for :data:`REDACTED_KINDS` the
            bytes replaced are not kept (the write is still read back after the
            rewrite).
        """
        if kind not in KINDS:
            raise PlanConflict('%s: unknown kind of write %r' % (what, kind))
        pfn = paddr >> 12
        within = paddr & (PAGE_SIZE - 1)
        if within + len(data) > PAGE_SIZE:
            raise PlanConflict('write of %d bytes at 0x%x crosses a page'
                               % (len(data), paddr))
        if self._scrubbed(pfn):
            raise PlanConflict('%s at 0x%x lies in a frame being scrubbed'
                               % (what, paddr))
        page = self._pages.get(pfn)
        if page is None:
            page = bytearray(self.memory.read(pfn << 12, PAGE_SIZE))
            self._pages[pfn] = page
        old = bytes(page[within:within + len(data)])
        page[within:within + len(data)] = data
        self.fields.append(FieldWrite(paddr,
                                      b'' if kind in REDACTED_KINDS else old,
                                      bytes(data), what, kind))

    def write_virt(self, kernel, vaddr: int, data: bytes, what: str, *,
                   kind: str) -> None:
        """Write ``data`` at kernel virtual ``vaddr``, page by page."""
        pos = 0
        while pos < len(data):
            va = vaddr + pos
            n = min(len(data) - pos, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
            self.write(kernel.phys(va), data[pos:pos + n], what, kind=kind)
            pos += n

    def zero_virt(self, kernel, vaddr: int, size: int, what: str) -> None:
        """Zero ``size`` bytes at kernel virtual ``vaddr`` (redacted)."""
        pos = 0
        while pos < size:
            va = vaddr + pos
            n = min(size - pos, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
            self.write(kernel.phys(va), bytes(n), what, kind=REDACT)
            pos += n

    def zero_phys(self, paddr: int, size: int, what: str, *,
                  kind: str = REDACT) -> None:
        """Zero ``size`` bytes at guest physical ``paddr`` (``kind``: one
        of :data:`REDACTED_KINDS`).
        """
        pos = 0
        while pos < size:
            pa = paddr + pos
            n = min(size - pos, PAGE_SIZE - (pa & (PAGE_SIZE - 1)))
            self.write(pa, bytes(n), what, kind=kind)
            pos += n

    def read_phys(self, paddr: int, size: int) -> bytes:
        """Current bytes at guest physical ``paddr`` (within one page),
        including pending writes.
        """
        page = self._pages.get(paddr >> 12)
        if page is None:
            return self.memory.read(paddr, size)
        within = paddr & (PAGE_SIZE - 1)
        return bytes(page[within:within + size])

    def read_virt(self, kernel, vaddr: int, size: int) -> bytes:
        """Current bytes at ``vaddr`` including pending writes."""
        out = b''
        pos = 0
        while pos < size:
            va = vaddr + pos
            n = min(size - pos, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
            pa = kernel.phys(va)
            page = self._pages.get(pa >> 12)
            within = pa & (PAGE_SIZE - 1)
            if page is not None:
                out += bytes(page[within:within + n])
            else:
                out += self.memory.read(pa, n)
            pos += n
        return out

    def scrub(self, pfns: np.ndarray, fill: int, *,
              free: bool = False) -> None:
        """Set every frame of ``pfns`` to ``fill`` bytes; ``free``: they
        are free memory (:attr:`free_frames`).
        """
        pfns = arrays.unique(np.asarray(pfns, dtype=np.int64))
        clash = [p for p in pfns.tolist() if p in self._pages] \
            if self._pages else []
        if clash:
            raise PlanConflict('frame 0x%x is both scrubbed and patched'
                               % clash[0])
        for other_fill, arr in self._fills.items():
            if other_fill != fill and arrays.isin_sorted(pfns, arr).any():
                raise PlanConflict('a frame is scrubbed with two fills')
        old = self._fills.get(fill)
        self._fills[fill] = pfns if old is None else arrays.unique(
            np.concatenate([old, pfns]))
        if free and len(pfns):
            self._free = arrays.unique(np.concatenate([self._free, pfns]))

    def _scrubbed(self, pfn: int) -> bool:
        # One scalar search per fill: called once per field write, where
        # building arrays for isin_sorted() cost more than the search.
        for arr in self._fills.values():
            i = int(arr.searchsorted(pfn))
            if i < len(arr) and arr[i] == pfn:
                return True
        return False

    @property
    def scrubbed(self) -> dict[int, np.ndarray]:
        return dict(self._fills)

    @property
    def free_frames(self) -> np.ndarray:
        """The scrubbed frames that are free memory (sorted, unique)."""
        return self._free

    @property
    def patched_pfns(self) -> list[int]:
        return sorted(self._pages)

    def replacements_for(self, pfn: int) -> bytes:
        """The new content of patched frame ``pfn``."""
        return bytes(self._pages[pfn])

    def final_bytes(self, paddr: int, size: int) -> bytes:
        """What ``size`` bytes at ``paddr`` hold after all writes."""
        page = self._pages[paddr >> 12]
        within = paddr & (PAGE_SIZE - 1)
        return bytes(page[within:within + size])

    def replacements(self) -> dict[int, bytes]:
        """Frame -> new 4096 bytes, for the checkpoint rewriter (uniform
        frames share one bytes object per fill).
        """
        out = {}
        for fill, arr in self._fills.items():
            page = bytes([fill]) * PAGE_SIZE
            for pfn in arr.tolist():
                out[pfn] = page
        for pfn, page in self._pages.items():
            out[pfn] = bytes(page)
        return out
