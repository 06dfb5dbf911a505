import numpy as np
import pytest

from sparc_nova.engine import patches
from sparc_nova.introspect import physical

PAGE = physical.PAGE_SIZE


def _patcher():
    data = bytes(range(256)) * (PAGE * 8 // 256)
    return patches.PagePatcher(physical.BytesMemory(data)), data


def test_field_writes_and_replacements():
    p, data = _patcher()
    p.write(PAGE + 8, b'\xff' * 8, 'a field', kind=patches.TIMER)
    p.write(PAGE + 8, b'\x01', 'again', kind=patches.TIMER)
    p.scrub(np.array([3, 4, 3]), 0)
    p.scrub(np.array([5]), 0xaa)
    rep = p.replacements()
    assert set(rep) == {1, 3, 4, 5}
    assert rep[3] == bytes(PAGE) and rep[5] == b'\xaa' * PAGE
    assert rep[1][:8] == data[PAGE:PAGE + 8]
    assert rep[1][8:16] == b'\x01' + b'\xff' * 7
    assert rep[1][16:] == data[PAGE + 16:2 * PAGE]
    assert p.final_bytes(PAGE + 8, 2) == b'\x01\xff'
    assert [f.what for f in p.fields] == ['a field', 'again']


def test_never_crosses_a_page():
    p, _ = _patcher()
    with pytest.raises(patches.PlanConflict, match='crosses'):
        p.write(2 * PAGE - 4, b'12345678', 'x', kind=patches.TIMER)


def test_conflicts():
    p, _ = _patcher()
    p.scrub(np.array([2]), 0)
    with pytest.raises(patches.PlanConflict, match='scrubbed'):
        p.write(2 * PAGE, b'x', 'x', kind=patches.TIMER)
    p.write(6 * PAGE, b'x', 'y', kind=patches.TIMER)
    with pytest.raises(patches.PlanConflict, match='both'):
        p.scrub(np.array([6]), 0)
    with pytest.raises(patches.PlanConflict, match='two fills'):
        p.scrub(np.array([2]), 0xaa)


class _Kernel:
    """Identity translation for write_virt."""

    def phys(self, va):
        return va


def test_write_virt_splits_per_page():
    p, _ = _patcher()
    p.write_virt(_Kernel(), PAGE - 4, b'ABCDEFGH', 'split',
                 kind=patches.TIMER)
    assert len(p.fields) == 2
    assert p.read_virt(_Kernel(), PAGE - 4, 8) == b'ABCDEFGH'


def test_every_write_has_a_known_kind():
    p, _ = _patcher()
    with pytest.raises(patches.PlanConflict, match='unknown kind'):
        p.write(PAGE, b'x', 'x', kind='anything')
    p.zero_phys(PAGE, 4, 'buffer')
    assert p.fields[0].kind == patches.REDACT and p.fields[0].redacted
    assert p.fields[0].old == b''
