import struct

import drgn
import pytest

from sparc_nova.introspect import walk

BASE = 0x10000


def _prog(links):
    """A program whose memory holds list_heads at BASE + 16*i with the
    given (next, prev) indexes.
    """
    data = bytearray(16 * len(links))
    for i, (nxt, prev) in enumerate(links):
        struct.pack_into('<QQ', data, 16 * i, BASE + 16 * nxt,
                         BASE + 16 * prev)
    prog = drgn.Program(drgn.Platform(
        drgn.Architecture.X86_64,
        drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    prog.add_memory_segment(BASE, len(data),
                            lambda a, c, o, p: bytes(data[o:o + c]))
    return prog


def test_walk_ok():
    prog = _prog([(1, 3), (2, 0), (3, 1), (0, 2)])
    assert list(walk.list_nodes(prog, BASE, 10, 'x')) == [
        BASE + 16, BASE + 32, BASE + 48]


def test_cycle_without_head():
    # head -> 1 -> 2 -> 3 -> 1 (prev pointers consistent)
    prog = _prog([(1, 3), (2, 0), (3, 1), (1, 2)])
    with pytest.raises(walk.CorruptStructure, match='cycle'):
        list(walk.list_nodes(prog, BASE, 100, 'the list'))


def test_bad_prev():
    prog = _prog([(1, 2), (2, 0), (0, 0)])
    with pytest.raises(walk.CorruptStructure, match='prev'):
        list(walk.list_nodes(prog, BASE, 100, 'the list'))


def test_limit_and_unmapped():
    prog = _prog([(1, 3), (2, 0), (3, 1), (0, 2)])
    with pytest.raises(walk.CorruptStructure, match='more than 2'):
        list(walk.list_nodes(prog, BASE, 2, 'the list'))
    prog = _prog([(50, 0)])
    with pytest.raises(walk.CorruptStructure, match='unreadable'):
        list(walk.list_nodes(prog, BASE, 10, 'the list'))


def test_vmas_unknown_maple_node(monkeypatch):
    """drgn refuses a maple node type no kernel writes with
    NotImplementedError: a corrupt structure naming the address space.
    """
    def for_each_vma(mm):
        yield 'vma'
        raise NotImplementedError('unknown maple_type 0')
    monkeypatch.setattr(walk.mm_helpers, 'for_each_vma', for_each_vma)
    it = walk.vmas(None, 'pid 7')
    assert next(it) == 'vma'
    with pytest.raises(walk.CorruptStructure, match='pid 7: the VMA tree'):
        next(it)
