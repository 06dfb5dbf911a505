"""Free objects of the guest's general-purpose slab caches.

A freed ``kmalloc()`` object keeps its old bytes until it is reused: the
head of a socket buffer a reader consumed, a tty buffer, a ``write()``
bounce buffer. Those bytes are free memory at a finer grain than a free
page, so they are scrubbed with it.

SLUB keeps free objects only on non-full slabs: the per-node partial
lists, each CPU's active slab (its lockless ``freelist`` and the slab's
own) and each CPU's partial slabs. Full slabs have none. The freelists
are decoded with drgn's SLUB helper, which knows the hardened
(``CONFIG_SLAB_FREELIST_HARDENED``) pointer encodings; drgn's public API
only reports allocated objects or one address at a time, so its
per-cache helper is used directly (drgn is pinned in requirements.txt).

Caches with debugging on (poisoning, red zones, owner tracking) are
skipped: the kernel poisons their free objects itself, and their layout
has padding the scrub must not touch. The free pointer word of every
object is kept: the allocator reads it.
"""

import dataclasses

from drgn.helpers.linux import cpumask
from drgn.helpers.linux import percpu
from drgn.helpers.linux import slab as slab_helpers

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
#: Guest memory reads allowed per freelist: per object of its slab, and
#: once (a step reads the next pointer and translates its address; drgn
#: walks a freelist twice at most). A hostile freelist that never loops
#: back ends here instead of wandering through memory.
FREELIST_READS_PER_OBJECT = 32
FREELIST_READS = 1024
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
    count = 0
    for cache in slab_helpers.for_each_slab_cache(prog):
        count += 1
        if count > MAX_CACHES:
            raise walk.CorruptStructure('more than %d slab caches'
                                        % MAX_CACHES)
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


def _cache_free(kernel, page_model, cache, name, base, cpus) -> FreeObjects:
    helper = slab_helpers._get_slab_cache_helper(cache)
    size = cache.size.value_()
    obj_size = cache.object_size.value_()
    fp = cache.offset.value_()
    result = FreeObjects(name)
    if not 0 < obj_size <= size <= 1 << 24:
        raise walk.CorruptStructure('slab cache %s: object size %d, slot '
                                    'size %d' % (name, obj_size, size))
    # Objects per slab of the cache's largest slab order (oo: order << 16
    # | objects).
    max_objects = cache.oo.x.value_() & 0xffff
    slabs = []          # (struct slab *, extra freelist or None)
    for node in helper._for_each_per_node():
        head = node.partial.address_of_().value_()
        for slab in walk.list_entries(kernel.prog, head, 'struct slab',
                                      'slab_list', MAX_SLABS_PER_CACHE,
                                      'the partial slabs of %s' % name):
            slabs.append((slab, None))
    for cpu in cpus:
        c = percpu.per_cpu_ptr(cache.cpu_slab, cpu)
        active = c.slab.read_()
        if active:
            slabs.append((active, c.freelist))
        partial = c.partial.read_()
        hops = 0
        while partial:
            hops += 1
            if hops > MAX_SLABS_PER_CACHE:
                raise walk.CorruptStructure('the per-CPU partial slabs of '
                                            '%s do not end' % name)
            slabs.append((partial, None))
            partial = partial.next.read_()
    seen = set()
    for slab, cpu_freelist in slabs:
        addr = slab.value_()
        if addr in seen:
            continue
        seen.add(addr)
        start = page_model.pfn_of_page(addr) << 12
        nobj = slab.objects.value_()
        if not 0 <= nobj <= max_objects:
            raise walk.CorruptStructure(
                'slab cache %s: slab 0x%x claims %d objects, the cache at '
                'most %d' % (name, addr, nobj, max_objects))
        end = start + nobj * size
        free = set()
        for fl in (slab.freelist, cpu_freelist):
            if fl is None:
                continue
            try:
                with kernel.budget(
                        FREELIST_READS_PER_OBJECT * max(nobj, 0) +
                        FREELIST_READS, 'the freelist of slab 0x%x of '
                        'slab cache %s' % (addr, name)):
                    free |= helper._slub_get_freelist(
                        lambda: 'slab 0x%x' % addr, fl)
            except slab_helpers.SlabCorruptionError as e:
                raise walk.CorruptStructure('slab cache %s: %s' % (name, e))
            if len(free) > nobj:
                raise walk.CorruptStructure(
                    'slab cache %s: slab 0x%x lists more free objects than '
                    'its %d' % (name, addr, nobj))
        for va in sorted(free):
            pa = va - base
            if not start <= pa < end or (pa - start) % size:
                raise walk.CorruptStructure(
                    'slab cache %s: free object 0x%x lies outside slab '
                    '0x%x' % (name, va, addr))
            result.objects += 1
            if fp + 8 <= obj_size:
                if fp:
                    result.ranges.append((pa, fp))
                if obj_size > fp + 8:
                    result.ranges.append((pa + fp + 8, obj_size - fp - 8))
            else:
                result.ranges.append((pa, min(obj_size, fp)))
    return result
