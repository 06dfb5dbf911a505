import struct

from sparc_nova.introspect import pagetable
from sparc_nova.introspect import physical

P = 0x1 | 0x2 | 0x4          # present, rw, user


def _tables():
    """PGD at 0x1000 -> PUD 0x2000 -> PMD 0x3000 -> PTE 0x4000.

    Maps va 0x200000 (PTE 0: pfn 0x100, PTE 1: PROT_NONE pfn 0x101,
    PTE 2: swap entry) and va 0x400000 as a 2 MiB page at pfn 0x200.
    """
    mem = bytearray(0x10000)

    def put(table, idx, val):
        struct.pack_into('<Q', mem, table + 8 * idx, val)
    put(0x1000, 0, 0x2000 | P)
    put(0x2000, 0, 0x3000 | P)
    put(0x3000, 1, 0x4000 | P)
    put(0x3000, 2, (0x200 << 12) | P | 0x80)
    put(0x4000, 0, (0x100 << 12) | P)
    put(0x4000, 1, (~(0x101 << 12) & 0x000ffffffffff000) | 0x100)
    put(0x4000, 2, 0x3 << 9)        # a swap entry: not present
    return physical.BytesMemory(bytes(mem))


def test_leaves():
    w = pagetable.UserPageWalker(_tables(), 0x1000, la57=False)
    got = list(w.leaves(0, 1 << 47))
    assert got == [(0x200000, 0x100, 1), (0x201000, 0x101, 1),
                   (0x400000, 0x200, 512)]


def test_clipped_range():
    w = pagetable.UserPageWalker(_tables(), 0x1000, la57=False)
    assert list(w.leaves(0x401000, 0x403000)) == [(0x401000, 0x201, 2)]
    assert list(w.leaves(0x600000, 0x800000)) == []


def test_translate_one_address():
    mem = _tables()
    t = pagetable.translate
    assert t(mem, 0x1000, False, 0x200123) == 0x100123
    assert t(mem, 0x1000, False, 0x456789) == 0x200000 + 0x56789
    # PROT_NONE: present to the kernel, not to the MMU.
    assert t(mem, 0x1000, False, 0x201008) is None
    assert t(mem, 0x1000, False, 0x202000) is None      # swap entry
    assert t(mem, 0x1000, False, 0x600000) is None      # no PTE table
    assert t(mem, 0x1000, False, 1 << 39) is None       # no PUD
    # A table outside RAM is no mapping (a hostile or stale CR3).
    assert t(mem, 0x7fff000000, False, 0x200000) is None
