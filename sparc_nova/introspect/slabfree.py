"""Free objects of the guest's general-purpose slab caches.

A freed ``kmalloc()`` object keeps its old bytes until it is reused: the
head of a socket buffer a reader consumed, a tty buffer, a ``write()``
bounce buffer. Those bytes are free memory at a finer grain than a free
page, so they are scrubbed with it.

SLUB keeps free objects only on non-full slabs: the per-node partial
lists, each CPU's active slab (its lockless ``freelist`` and the slab's
own) and each CPU's partial slabs. Full slabs have none.

Before Linux 5.17 a slab is described by its head ``struct page`` (the
same member names: ``slab_list``, ``freelist``, ``objects``, ``next``) and
a CPU's active slab is ``kmem_cache_cpu.page``; since then by ``struct
slab`` and ``kmem_cache_cpu.slab``.

The freelists are decoded here rather than with drgn's SLUB helper: every
pointer must be checked to lie on an object slot of its own slab before
it is followed (drgn's helper follows any pointer, so a hostile freelist
can lead it anywhere in memory). Hardened freelists
(``CONFIG_SLAB_FREELIST_HARDENED``, a ``random`` member in the cache)
store ``ptr ^ cache->random ^ swab(address of the pointer)`` (Linux
5.7+); plain ones store the pointer.

Caches with debugging on (poisoning, red zones, owner tracking) are
skipped: the kernel poisons their free objects itself, and their layout
has padding the scrub must not touch. The free pointer word of every
object is kept: the allocator reads it.
"""

import dataclasses

from drgn.helpers.linux import cpumask
from drgn.helpers.linux import percpu

from sparc_nova.introspect import walk

#: Caches whose free objects are scrubbed (name prefixes): the kmalloc
#: families (plain, cgroup-accounted, reclaimable, DMA) and the socket
#: buffer head cache.
CACHE_PREFIXES = ('kmalloc-', 'dma-kmalloc-', 'skbuff_small_head')
#: Most caches walked and slabs visited per cache.
MAX_CACHES = 10000
MAX_SLABS_PER_CACHE = 1 << 20
#: Guest memory reads allowed per cache (slab lists and freelists).
CACHE_BUDGET = 4000000
#: Most slabs on one CPU's partial chain (the kernel keeps a few dozen).
MAX_CPU_PARTIAL = 1 << 16
#: SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE
DEBUG_FLAGS = 0x00000400 | 0x00000800 | 0x00010000 | 0x00200000


@dataclasses.dataclass
class FreeObjects:
    """Free objects of one cache.

    :ivar ranges: ``(guest physical address, length)`` to zero: each free
        object minus its free pointer word.
    """

    cache: str
    objects: int = 0
    ranges: list[tuple[int, int]] = dataclasses.field(default_factory=list)


def _name(cache) -> str:
    return cache.name.string_().decode('utf-8', 'replace')


def free_objects(kernel, page_model) -> tuple[list[FreeObjects], list[str]]:
    """Free objects of the caches named by :data:`CACHE_PREFIXES`, and
    notes on caches skipped.

    :raises walk.CorruptStructure: a freelist has a cycle, leaves its slab
        or is longer than the slab.
    """
    prog = kernel.prog
    out, notes = [], []
    base = prog['page_offset_base'].value_()
    cpus = list(cpumask.for_each_online_cpu(prog))
    head = prog['slab_caches'].address_of_().value_()
    # Our bounded, cycle-checked walk rather than drgn's
    # for_each_slab_cache, which follows the list as long as it goes.
    for cache in walk.list_entries(prog, head, 'struct kmem_cache', 'list',
                                   MAX_CACHES, 'the slab cache list'):
        name = _name(cache)
        if not name.startswith(CACHE_PREFIXES):
            continue
        if cache.flags.value_() & DEBUG_FLAGS:
            notes.append('slab cache %s has debugging on: its free objects '
                         'are poisoned by the guest and left alone' % name)
            continue
        try:
            with kernel.budget(CACHE_BUDGET,
                               'the free objects of slab cache %s' % name):
                out.append(_cache_free(kernel, page_model, cache, name,
                                       base, cpus))
        except AttributeError as e:
            # A SLUB layout this code does not know (a future kernel):
            # say so rather than guess.
            notes.append('free objects of slab cache %s not scrubbed: %s'
                         % (name, e))
    return out, notes


def _nodes(cache, prog):
    """The cache's ``kmem_cache_node`` objects (one per NUMA node)."""
    nr = prog['nr_node_ids'].value_()
    if not 0 < nr <= 1024:
        raise walk.CorruptStructure('implausible nr_node_ids %d' % nr)
    for i in range(nr):
        node = cache.node[i].read_()
        if node:
            yield node


def _slab_type(prog) -> str:
    """``struct slab`` (5.17+) or ``struct page`` (before)."""
    try:
        prog.type('struct slab')
        return 'struct slab'
    except LookupError:
        return 'struct page'


def _slabs(kernel, cache, name, cpus) -> list[tuple]:
    """``(struct slab *, extra freelist head or None)`` of every slab that
    can hold free objects, each once (``struct page *`` before 5.17).
    """
    prog = kernel.prog
    slab_type = _slab_type(prog)
    out = []
    for node in _nodes(cache, prog):
        head = node.partial.address_of_().value_()
        limit = min(MAX_SLABS_PER_CACHE, max(node.nr_partial.value_(), 0)
                    + 16)
        for slab in walk.list_entries(prog, head, slab_type,
                                      'slab_list', limit,
                                      'the partial slabs of %s' % name):
            out.append((slab, None))
    for cpu in cpus:
        c = percpu.per_cpu_ptr(cache.cpu_slab, cpu)
        active = (c.slab if slab_type == 'struct slab' else c.page).read_()
        if active:
            out.append((active, c.freelist.value_()))
        partial = c.partial.read_()
        chain = set()
        while partial:
            if partial.value_() in chain or len(chain) >= MAX_CPU_PARTIAL:
                raise walk.CorruptStructure(
                    'the partial slabs of CPU %d in slab cache %s are '
                    'cyclic or more than %d' % (cpu, name, MAX_CPU_PARTIAL))
            chain.add(partial.value_())
            out.append((partial, None))
            partial = partial.next.read_()
    seen = set()
    unique = []
    for slab, extra in out:
        if slab.value_() not in seen:
            seen.add(slab.value_())
            unique.append((slab, extra))
    return unique


class _Freelist:
    """Decode the freelists of one cache, each pointer checked against
    its slab before it is followed.
    """

    def __init__(self, prog, cache, name):
        self.prog = prog
        self.name = name
        self.offset = cache.offset.value_()
        try:
            self.random = cache.random.value_()
        except AttributeError:
            self.random = None

    def decode(self, ptr_addr: int) -> int:
        raw = self.prog.read_u64(ptr_addr)
        if self.random is None:
            return raw
        swab = int.from_bytes(ptr_addr.to_bytes(8, 'little'), 'big')
        return raw ^ self.random ^ swab

    def objects(self, first: int, start: int, nobj: int, size: int,
                slab: int) -> set[int]:
        """Free objects from ``first`` (virtual), all on the slab whose
        first object is at ``start``.
        """
        out = set()
        obj = first
        while obj:
            if not start <= obj < start + nobj * size or \
                    (obj - start) % size:
                raise walk.CorruptStructure(
                    'slab cache %s: the freelist of slab 0x%x leads to '
                    '0x%x, outside the slab' % (self.name, slab, obj))
            if obj in out:
                raise walk.CorruptStructure(
                    'slab cache %s: the freelist of slab 0x%x is cyclic'
                    % (self.name, slab))
            out.add(obj)
            obj = self.decode(obj + self.offset)
        return out


def _cache_free(kernel, page_model, cache, name, base, cpus) -> FreeObjects:
    size = cache.size.value_()
    obj_size = cache.object_size.value_()
    fp = cache.offset.value_()
    result = FreeObjects(name)
    if not 0 < obj_size <= size <= 1 << 24 or not 0 <= fp <= size - 8:
        raise walk.CorruptStructure(
            'slab cache %s: object size %d, slot size %d, free pointer at '
            '%d' % (name, obj_size, size, fp))
    # Objects per slab of the cache's largest slab order (oo: order << 16
    # | objects).
    max_objects = cache.oo.x.value_() & 0xffff
    freelist = _Freelist(kernel.prog, cache, name)
    for slab, cpu_freelist in _slabs(kernel, cache, name, cpus):
        addr = slab.value_()
        start = page_model.pfn_of_page(addr) << 12
        nobj = slab.objects.value_()
        if not 0 <= nobj <= max_objects:
            raise walk.CorruptStructure(
                'slab cache %s: slab 0x%x claims %d objects, the cache at '
                'most %d' % (name, addr, nobj, max_objects))
        free = set()
        for first in (slab.freelist.value_(), cpu_freelist):
            if first:
                free |= freelist.objects(first, start + base, nobj, size,
                                         addr)
        if len(free) > nobj:
            raise walk.CorruptStructure(
                'slab cache %s: slab 0x%x lists more free objects than '
                'its %d' % (name, addr, nobj))
        for va in sorted(free):
            pa = va - base
            result.objects += 1
            if fp + 8 <= obj_size:
                if fp:
                    result.ranges.append((pa, fp))
                if obj_size > fp + 8:
                    result.ranges.append((pa + fp + 8, obj_size - fp - 8))
            else:   # the free pointer lies past (or across) the object
                result.ranges.append((pa, min(obj_size, fp)))
    return result
