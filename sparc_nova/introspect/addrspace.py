"""The user frames of a process: VMAs (drgn's ``for_each_vma``: maple
tree since 6.1, linked list before) and their present pages
(:mod:`.pagetable`), with the ``struct page`` facts that decide whether a
frame is anonymous and who else maps it (:mod:`.pages`).
"""

import dataclasses

import drgn
import numpy as np

from sparc_nova.introspect import arrays
from sparc_nova.introspect import pages
from sparc_nova.introspect import pagetable
from sparc_nova.introspect import walk

#: Frame classes, by the VMA that maps the frame.
CLASS_STACK = 0
CLASS_HEAP = 1
CLASS_ANON = 2
CLASS_FILE_COPY = 3
CLASS_NAMES = ('stack', 'heap', 'anonymous', 'private-file-copy')

#: Most VMAs a process may have (the kernel's default max_map_count is
#: 65530; allow for raised sysctls).
MAX_VMAS = 1 << 20
VM_SHARED = 0x8


@dataclasses.dataclass
class UserFrames:
    """Frames a process maps, one row per mapping instance (a frame
    mapped twice by the same process appears twice).

    :ivar pfn: frame numbers.
    :ivar cls: frame class per row (``CLASS_*``).
    :ivar anon: whether the frame is an anonymous page.
    :ivar mapcount: how many page table entries map the frame in the
        whole guest (PTE and PMD mappings).
    :ivar vmas: number of VMAs walked.
    """

    pfn: np.ndarray
    cls: np.ndarray
    anon: np.ndarray
    mapcount: np.ndarray
    vmas: int


def vma_list(kernel, mm: drgn.Object) -> list[tuple[int, int, int, int]]:
    """``(vm_start, vm_end, vm_flags, vm_file)`` of every VMA of ``mm``
    (``struct mm_struct *``), read under a budget, at most its
    ``map_count`` (plus slack) of them, each a page-aligned user range.

    :raises walk.CorruptStructure: more VMAs than ``map_count`` or an
        impossible range.
    """
    limit = min(MAX_VMAS, max(mm.map_count.value_(), 0) + 16)
    out = []
    with kernel.budget(200 * limit + 10000, 'walking the VMAs of mm 0x%x'
                       % mm.value_()):
        for vma in walk.vmas(mm, 'mm 0x%x' % mm.value_()):
            out.append((vma.vm_start.value_(), vma.vm_end.value_(),
                        vma.vm_flags.value_(), vma.vm_file.value_()))
            if len(out) > limit:
                raise walk.CorruptStructure(
                    'mm 0x%x has more VMAs than its map_count %d'
                    % (mm.value_(), limit - 16))
    user_end = kernel.consts.USER_SPACE_END_5LEVEL if \
        kernel.vmcoreinfo.pgtable_l5_enabled else \
        kernel.consts.USER_SPACE_END_4LEVEL
    for start, end, _, _ in out:
        if not 0 <= start < end <= user_end or start & 0xfff or end & 0xfff:
            raise walk.CorruptStructure(
                'mm 0x%x has an impossible VMA 0x%x-0x%x'
                % (mm.value_(), start, end))
    return out


def user_frames(kernel, page_model, memory, mm_addr: int) -> UserFrames:
    """Every present user frame of the address space ``mm_addr``."""
    prog = kernel.prog
    mm = drgn.Object(prog, 'struct mm_struct *', value=mm_addr)
    try:
        vmas = vma_list(kernel, mm)
        start_stack = mm.start_stack.value_()
        start_brk = mm.start_brk.value_()
        brk = mm.brk.value_()
        pgd_pa = kernel.phys(mm.pgd.value_())
    except drgn.FaultError as e:
        raise walk.CorruptStructure('mm 0x%x is unreadable (%s)'
                                    % (mm_addr, e))
    walker = pagetable.UserPageWalker(
        memory, pgd_pa, kernel.vmcoreinfo.pgtable_l5_enabled)
    pfns = []
    classes = []
    for start, end, flags, has_file in vmas:
        if start <= start_stack < end:
            cls = CLASS_STACK
        elif start_brk <= start and end <= max(brk, start_brk) + 0xfff:
            cls = CLASS_HEAP
        elif has_file:
            cls = CLASS_FILE_COPY
        else:
            cls = CLASS_ANON
        frames = walker.frames(start, end)
        pfns.append(frames)
        classes.append(np.full(len(frames), cls, dtype=np.int8))
    if pfns:
        pfn = np.concatenate(pfns)
        cls = np.concatenate(classes)
    else:
        pfn = np.zeros(0, dtype=np.int64)
        cls = np.zeros(0, dtype=np.int8)
    in_ram = memory_is_ram(memory, pfn)
    pfn, cls = pfn[in_ram], cls[in_ram]
    anon, mapcount = classify(page_model, pfn)
    return UserFrames(pfn=pfn, cls=cls, anon=anon, mapcount=mapcount,
                      vmas=len(vmas))


def memory_is_ram(memory, pfns: np.ndarray) -> np.ndarray:
    ok = np.zeros(len(pfns), dtype=bool)
    for start, end in memory.ranges:
        ok |= (pfns >= start >> 12) & (pfns < end >> 12)
    return ok


def classify(page_model, pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is anonymous, total mappings) per frame.

    A tail page of a large folio takes ``mapping`` from its head; its
    mappings are its own PTE mappings plus the folio's PMD mappings.
    """
    if not len(pfns):
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    uniq, inverse = arrays.unique(pfns, return_inverse=True)
    anon = np.empty(len(uniq), dtype=bool)
    mapcount = np.empty(len(uniq), dtype=np.int64)
    # A piece at a time: reading and decoding struct pages costs about
    # 150 bytes a frame until the two answers are made.
    for lo in range(0, len(uniq), pages.READ_CHUNK):
        hi = lo + pages.READ_CHUNK
        anon[lo:hi], mapcount[lo:hi] = _classify_unique(page_model,
                                                        uniq[lo:hi])
    return anon[inverse], mapcount[inverse]


def _classify_unique(page_model, uniq: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`classify` of distinct frames."""
    info = page_model.read(uniq)
    ch = info['compound_head']
    is_tail = (ch & np.uint64(1)) == 1
    head_pfn = uniq.copy()
    if is_tail.any():
        head_pfn[is_tail] = page_model.pfns_of_pages(
            ch[is_tail] - np.uint64(1))
    is_head = (info['flags'] & np.uint64(page_model.pg_head_mask)) != 0
    mapping = info['mapping'].copy()
    if is_tail.any():
        heads, back = arrays.unique(head_pfn[is_tail], return_inverse=True)
        mapping[is_tail] = page_model.read(heads)['mapping'][back]
    anon = (mapping & np.uint64(page_model.kernel.consts.PAGE_MAPPING_ANON)
            ) != 0
    mapcount = info['mapcount'].astype(np.int64) + 1
    large = is_tail | is_head
    if large.any():
        entire = page_model.entire_mapcount(head_pfn[large])
        mapcount[large] += entire + 1
    return anon, mapcount
