import struct

import pytest

from sparc_nova import exception
from sparc_nova.introspect import kallsyms_finder
from tests.unit.introspect import kallsyms_builder as kb

BASE = 0xffffffff81000000


def reader(data: bytes, base: int = BASE):
    def read(addr, count):
        off = addr - base
        if off < 0 or off + count > len(data):
            raise exception.SparcError('outside the image')
        return data[off:off + count]
    return read


@pytest.mark.parametrize('count', [257, 512, 513, 5000])
def test_finds_pre_6_4_layout(count):
    syms = kb.symbols(count, BASE)
    data, where = kb.image(syms, BASE)
    found = kallsyms_finder.find_tables(reader(data), BASE)
    first = found[0]
    assert first.layout == 'pre-6.4'
    assert first.count == len(syms)
    for name in ('names', 'token_table', 'token_index', 'num_syms',
                 'markers', 'offsets', 'relative_base'):
        assert getattr(first, name) == BASE + where[name], name


def test_finds_6_4_layout_among_placements():
    syms = kb.symbols(700, BASE)
    data, where = kb.image(syms, BASE, order=kb.NEW_ORDER)
    found = kallsyms_finder.find_tables(reader(data), BASE)
    new = [t for t in found if t.layout == '6.4' and t.offsets]
    assert new and new[0].offsets == BASE + where['offsets']
    assert new[0].relative_base == BASE + where['relative_base']
    assert new[0].names == BASE + where['names']


def test_the_lowest_table_wins_over_a_later_look_alike():
    real, _ = kb.image(kb.symbols(600, BASE), BASE)
    planted, _ = kb.image(kb.symbols(600, BASE + 0x5000), BASE + 0x5000)
    data = real + planted
    found = kallsyms_finder.find_tables(reader(data), BASE)
    assert found[0].token_index < BASE + len(real)


def test_a_broken_token_table_is_not_a_table():
    data, where = kb.image(kb.symbols(300, BASE), BASE)
    data = bytearray(data)
    # Token 'A' loses its terminating NUL: the 256 tokens no longer match
    # the index.
    at = where['token_table'] + \
        sum(len(t) + 1 for t in kb.TOKENS[:ord('A')]) + 1
    assert data[at] == 0
    data[at] = ord('x')
    with pytest.raises(kallsyms_finder.KallsymsNotFound):
        kallsyms_finder.find_tables(reader(bytes(data)), BASE)


def test_names_that_do_not_end_at_the_markers_are_refused():
    data, where = kb.image(kb.symbols(600, BASE), BASE)
    data = bytearray(data)
    # One name one token longer: every later entry shifts off its marker.
    data[where['names']] += 1
    with pytest.raises(kallsyms_finder.KallsymsNotFound):
        kallsyms_finder.find_tables(reader(bytes(data)), BASE)


def test_look_alike_anchors_are_bounded(monkeypatch):
    monkeypatch.setattr(kallsyms_finder, 'MAX_ANCHORS', 10)
    # 16 increasing u16 offsets from 0, over and over: a token-index
    # look-alike every 32 bytes, none a table.
    decoy = struct.pack('<16H', *range(0, 32, 2)) * 4096
    with pytest.raises(kallsyms_finder.KallsymsNotFound,
                       match='look-alikes'):
        kallsyms_finder.find_tables(reader(decoy), BASE)


def test_scan_stops_at_the_end_of_readable_memory():
    with pytest.raises(kallsyms_finder.KallsymsNotFound):
        kallsyms_finder.find_tables(reader(b'\x11' * 8192), BASE)
