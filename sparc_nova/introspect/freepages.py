"""Free memory of the guest: buddy free lists and per-CPU page lists.

A free block is trusted only when the kernel's own bookkeeping agrees:
buddy heads must carry the PageBuddy marker with their order in
``page->private`` and lie aligned inside their zone; per-CPU pages must
be unreferenced and unmapped. A zone or per-CPU list whose lock was held
when the guest stopped is skipped (its lists may be mid-update) and
reported. The fill a free page must hold is zero, or ``PAGE_POISON``
(0xaa) when the guest runs with page poisoning (the kernel checks the
pattern when it hands the page out again).
"""

import dataclasses

import drgn
from drgn.helpers.linux import mmzone
from drgn.helpers.linux import percpu

import numpy as np

from sparc_nova.introspect import walk

#: Frames numbered at once where free ranges are expanded (int64: 2 MiB).
FRAME_CHUNK = 1 << 18


@dataclasses.dataclass
class FreeMemory:
    """Free frames of the guest, as ranges: frames ``starts[i]`` to
    ``ends[i] - 1`` (int64, ascending, disjoint, not adjacent). A large
    guest has millions of free frames in a few thousand ranges; they are
    numbered :data:`FRAME_CHUNK` at a time (:meth:`frames`).

    :ivar fill: the byte a free page must hold (0 or 0xaa).
    :ivar fill_reason: why that byte.
    """

    starts: np.ndarray
    ends: np.ndarray
    buddy_blocks: int
    buddy_frames: int
    pcp_frames: int
    fill: int
    fill_reason: str
    skipped: list[str]

    @property
    def count(self) -> int:
        """Free frames (each counted once)."""
        return int((self.ends - self.starts).sum())

    def frames(self, chunk: int = FRAME_CHUNK):
        """Every free frame, ascending, as int64 arrays of at most
        ``chunk`` frames.
        """
        return range_frames(self.starts, self.ends, chunk)

    def free_among(self, pfns: np.ndarray) -> np.ndarray:
        """The frames of ``pfns`` that are free (in their order)."""
        pfns = np.asarray(pfns, dtype=np.int64)
        i = np.searchsorted(self.starts, pfns, side='right') - 1
        ends = self.ends[np.maximum(i, 0)] if len(self.ends) else \
            np.zeros(len(pfns), dtype=np.int64)
        return pfns[(i >= 0) & (pfns < ends)]

    def summary(self) -> dict:
        return {'frames': self.count,
                'buddy_blocks': self.buddy_blocks,
                'buddy_frames': self.buddy_frames,
                'pcp_frames': self.pcp_frames,
                'fill': '0x%02x' % self.fill,
                'fill_reason': self.fill_reason,
                'skipped': list(self.skipped)}


def _key_enabled(kernel, name: str) -> bool | None:
    """Whether static key ``name`` is enabled (None: no such key)."""
    addr = kernel.symbol_address(name)
    if addr is None:
        return None
    return int.from_bytes(kernel.prog.read(addr, 4), 'little',
                          signed=True) > 0


def free_fill(kernel) -> tuple[int, str]:
    """The content free pages must have: (byte, reason)."""
    poison = kernel.consts.PAGE_POISON
    if _key_enabled(kernel, '_page_poisoning_enabled'):
        return poison, 'page poisoning is enabled (page_poison=1)'
    early = kernel.symbol_address('_page_poisoning_enabled_early')
    if early is not None and _key_enabled(
            kernel, '_page_poisoning_enabled') is None and \
            kernel.prog.read(early, 1) != b'\0':
        return poison, 'page poisoning is enabled (page_poison=1)'
    if _key_enabled(kernel, 'init_on_free'):
        return 0, 'init_on_free is enabled (free pages are zeroed)'
    return 0, 'no page poisoning'


def _locked(lock: drgn.Object) -> bool:
    """Whether a spinlock_t / raw_spinlock_t is held."""
    raw = lock
    for name in ('rlock', 'raw_lock'):
        try:
            raw = raw.member_(name)
        except LookupError:
            pass
    try:
        return raw.val.counter.value_() != 0
    except (LookupError, AttributeError):
        return False


def _pcp_orders(kernel, nlists: int) -> list[int]:
    """Order of the pages on each per-CPU list: MIGRATE_PCPTYPES lists per
    order up to PAGE_ALLOC_COSTLY_ORDER, then THP-order lists.
    """
    c = kernel.consts
    types = kernel.prog['MIGRATE_PCPTYPES'].value_()
    low = types * (c.PAGE_ALLOC_COSTLY_ORDER + 1)
    if nlists == types:
        return [0] * nlists           # before 5.14: order-0 lists only
    return [i // types if i < low else c.HPAGE_PMD_ORDER
            for i in range(nlists)]


def _zones(kernel):
    prog = kernel.prog
    for pgdat in mmzone.for_each_online_pgdat(prog):
        zones = pgdat.node_zones
        for i in range(len(zones)):
            zone = zones[i]
            if zone.present_pages.value_() == 0:
                continue
            yield zone


def free_memory(kernel, page_model, cpus: list[int],
                max_blocks: int = 16 * 1024 * 1024) -> FreeMemory:
    """Enumerate free frames.

    :raises walk.CorruptStructure: a free list is cyclic, too long, or
        holds a page the allocator would not consider free.
    """
    prog = kernel.prog
    lru_off = drgn.offsetof(prog.type('struct page'), 'lru')
    fill, reason = free_fill(kernel)
    skipped = []
    blocks = []                 # (pfn, order)
    pcp = []                    # (pfn, order)
    with kernel.budget(50 * max_blocks, 'walking the free lists'):
        for zone in _zones(kernel):
            zname = zone.name.string_().decode('ascii', 'replace')
            start = zone.zone_start_pfn.value_()
            end = start + zone.spanned_pages.value_()
            if _locked(zone.lock):
                skipped.append('zone %s: its lock was held, free lists '
                               'not scrubbed' % zname)
                continue
            zone_blocks = []
            for order in range(len(zone.free_area)):
                area = zone.free_area[order]
                limit = area.nr_free.value_() + 16
                n = 0
                for mt in range(len(area.free_list)):
                    head = area.free_list[mt].address_of_().value_()
                    for node in walk.list_nodes(
                            prog, head, limit,
                            'free list order %d type %d of zone %s'
                            % (order, mt, zname)):
                        n += 1
                        if n > limit or len(blocks) > max_blocks:
                            raise walk.CorruptStructure(
                                'zone %s order %d: more free blocks than '
                                'nr_free=%d' % (zname, order, limit - 16))
                        zone_blocks.append(
                            (page_model.pfn_of_page(node - lru_off), order))
            _check_buddy(page_model, zone_blocks, start, end, zname)
            blocks += zone_blocks
            pcp += _pcp_pages(kernel, page_model, zone, zname, cpus,
                              lru_off, skipped)
    starts, ends = block_ranges(blocks + pcp)
    return FreeMemory(starts=starts, ends=ends, buddy_blocks=len(blocks),
                      buddy_frames=sum(1 << o for _, o in blocks),
                      pcp_frames=sum(1 << o for _, o in pcp),
                      fill=fill, fill_reason=reason, skipped=skipped)


def block_ranges(
        blocks: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The frames of ``blocks`` (``(first frame, order)``, in any order,
    possibly overlapping) as ranges: ``(starts, ends)``, int64, ascending,
    disjoint, overlapping or adjacent blocks joined.
    """
    if not blocks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.array([p for p, _ in blocks], dtype=np.int64)
    ends = starts + np.left_shift(1, np.array([o for _, o in blocks],
                                              dtype=np.int64))
    order = np.argsort(starts, kind='stable')
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    first = np.flatnonzero(np.concatenate([[True],
                                           starts[1:] > reach[:-1]]))
    last = np.append(first[1:] - 1, len(starts) - 1)
    return starts[first], reach[last]


def range_frames(starts: np.ndarray, ends: np.ndarray,
                 chunk: int = FRAME_CHUNK):
    """Every frame of the ranges ``starts[i]`` to ``ends[i] - 1``
    (ascending, disjoint), in order, as int64 arrays of at most ``chunk``
    frames; no temporary is larger than a chunk or the ranges' arrays.
    """
    # Ranges longer than a chunk are cut into chunk-sized pieces.
    lens = ends - starts
    cuts = (lens + chunk - 1) // chunk
    which = np.repeat(np.arange(len(starts)), cuts)
    k = np.arange(len(which), dtype=np.int64)
    k -= np.repeat(np.cumsum(cuts) - cuts, cuts)
    lo_frame = starts[which] + k * chunk
    sizes = np.minimum(lo_frame + chunk, ends[which]) - lo_frame
    del which, k
    total = np.cumsum(sizes)
    lo = 0
    while lo < len(sizes):
        done = int(total[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(total, done + chunk,
                                             side='right')))
        size = sizes[lo:hi]
        # Frame j of the piece is j + (start of its range - frames of
        # the piece before that range).
        out = np.repeat(lo_frame[lo:hi] - (np.cumsum(size) - size), size)
        out += np.arange(len(out), dtype=np.int64)
        yield out
        lo = hi


def _check_buddy(page_model, blocks, start, end, zname):
    if not blocks:
        return
    pfns = np.array([p for p, _ in blocks], dtype=np.int64)
    orders = np.array([o for _, o in blocks], dtype=np.int64)
    info = page_model.read(pfns)
    bad = ~page_model.is_buddy(info['page_type'])
    bad |= info['private'].astype(np.int64) != orders
    bad |= (pfns & ((1 << orders) - 1)) != 0
    bad |= (pfns < start) | (pfns + (1 << orders) > end)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise walk.CorruptStructure(
            'zone %s: free block at frame 0x%x (order %d) is not a buddy '
            'block of that order (%d such blocks)'
            % (zname, int(pfns[i]), int(orders[i]), int(bad.sum())))


def _pcp_pages(kernel, page_model, zone, zname, cpus, lru_off, skipped):
    prog = kernel.prog
    try:
        pcp_ptr, nested = zone.per_cpu_pageset, False
    except AttributeError:
        try:
            # Before 5.14: struct per_cpu_pageset, lists in its ``pcp``.
            pcp_ptr, nested = zone.pageset, True
        except AttributeError:
            skipped.append('zone %s: neither per_cpu_pageset nor pageset, '
                           'per-CPU lists not scrubbed' % zname)
            return []
    out = []
    for cpu in cpus:
        pcp = percpu.per_cpu_ptr(pcp_ptr, cpu)[0]
        if nested:
            pcp = pcp.pcp
        try:
            if _locked(pcp.lock):
                skipped.append('zone %s cpu %d: per-CPU list lock held'
                               % (zname, cpu))
                continue
        except AttributeError:
            pass
        count = pcp.count.value_()
        lists = pcp.lists
        orders = _pcp_orders(kernel, len(lists))
        found = []
        for i in range(len(lists)):
            head = lists[i].address_of_().value_()
            for node in walk.list_nodes(
                    prog, head, max(count, 0) + 16,
                    'per-CPU list %d of zone %s cpu %d' % (i, zname, cpu)):
                found.append((page_model.pfn_of_page(node - lru_off),
                              orders[i]))
        if found:
            pfns = np.array([p for p, _ in found], dtype=np.int64)
            info = page_model.read(pfns)
            bad = (info['refcount'] != 0) | (info['mapcount'] != -1) | \
                page_model.is_buddy(info['page_type'])
            if bad.any():
                i = int(np.nonzero(bad)[0][0])
                raise walk.CorruptStructure(
                    'zone %s cpu %d: page at frame 0x%x on a per-CPU free '
                    'list is in use (refcount %d, mapcount %d)'
                    % (zname, cpu, int(pfns[i]), int(info['refcount'][i]),
                       int(info['mapcount'][i])))
        out += found
    return out
