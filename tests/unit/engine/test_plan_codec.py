"""The scrub plan across the sandbox boundary: encoding, decoding and
refusing hostile plans.
"""

import copy
import json

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from sparc_nova.engine import patches
from sparc_nova.engine import plan_codec
from sparc_nova.engine import report as report_mod
from tools.fuzz import plan_targets

PAGE = patches.PAGE_SIZE


class FakeMemory:
    """Guest RAM in frames [0, 16), [32, 48) and [0x90, 0x110) (across
    the legacy VGA and BIOS window); frame N holds byte N.
    """

    ranges = [(0, 16 * PAGE), (32 * PAGE, 48 * PAGE),
              (0x90 * PAGE, 0x110 * PAGE)]

    def is_ram(self, pfns):
        pfns = np.asarray(pfns, dtype=np.int64)
        ok = np.zeros(len(pfns), dtype=bool)
        for start, end in self.ranges:
            ok |= (pfns >= start >> 12) & (pfns < end >> 12)
        return ok

    def read(self, addr, size):
        assert self.is_ram([addr >> 12])[0]
        return bytes([(addr >> 12) & 0xff]) * size


def make_plan():
    mem = FakeMemory()
    p = patches.PagePatcher(mem)
    p.scrub(np.array([1, 2, 3, 7, 33]), 0)
    p.scrub(np.array([40, 41]), 0xaa)
    # Frame 5 holds 0x05 bytes: set one bit in its first byte.
    p.write(5 * PAGE + 8, b'\x07\x05', 'task 5 pending', kind=patches.SIGNAL)
    p.write(5 * PAGE + 16, b'\x04', 'page flags', kind=patches.PAGE_FLAGS)
    p.write(34 * PAGE + PAGE - 4, b'abcd', 'timer', kind=patches.TIMER)
    p.zero_phys(36 * PAGE + 100, 50, 'pipe buffer')
    rep = report_mod.ScrubReport(checkpoint='/x.save', selectors=['vault'])
    rep.kernel = {'osrelease': '6.1.0'}
    rep.processes.append(report_mod.ProcessPlan(
        pid=99, comm='vault', exe=None, reasons=['name'], threads=[99, 100],
        frames={'heap': np.array([1, 2, 3]), 'stack': np.array([7, 33])},
        refused=[{'frame': '0x9', 'reason': 'shared'}],
        kill={'wakeup': 'timer'}))
    rep.free_pages = {'frames': 2, 'fill': 0xaa}
    rep.timings = {'parse_and_introspect': 0.5}
    return mem, rep, p


def roundtrip(doc, mem):
    return plan_codec.decode_plan(copy.deepcopy(doc), mem)


def test_plan_roundtrip():
    mem, rep, p = make_plan()
    doc = plan_codec.encode_plan(rep, p)
    assert doc['fills'] == [[0, [1, 3, 7, 1, 33, 1]], [0xaa, [40, 2]]]
    # The zeroes of a redacting write travel as their count.
    assert doc['fields'][-1] == [36 * PAGE + 100, 50, 'pipe buffer', 'redact']
    assert doc['fields'][0][1] == '0705'
    rep2, p2 = roundtrip(doc, mem)
    assert {k: v.tolist() for k, v in p2.scrubbed.items()} == \
        {k: v.tolist() for k, v in p.scrubbed.items()}
    assert p2.fields == p.fields
    assert p2.fields[-1].redacted and p2.fields[-1].old == b''
    assert p2.replacements() == p.replacements()
    assert rep2.to_dict() == rep.to_dict()
    assert rep2.summary() == rep.summary()


def test_report_sections_cross_generically():
    # A section with non-string keys and an array, as a new report
    # section might hold, crosses without this module knowing it.
    rep = report_mod.ScrubReport(checkpoint='/x')
    rep.free_pages = {1: {'pipes': np.array([5, 9, 2])}, '$odd': [None]}
    back = plan_codec.decode_value(plan_codec.encode_value(rep))
    assert back.free_pages[1]['pipes'].tolist() == [5, 9, 2]
    assert back.free_pages['$odd'] == [None]


def test_merge_report_keeps_parent_fields():
    _, child, _ = make_plan()
    child.checkpoint = '/elsewhere'
    child.verification = {'result': 'ok'}
    rep = report_mod.ScrubReport(checkpoint='/x.save', dry_run=True)
    rep.timings = {'open': 0.1}
    plan_codec.merge_report(rep, child)
    assert rep.checkpoint == '/x.save' and rep.dry_run
    assert rep.verification == {}
    assert rep.processes == child.processes
    assert rep.timings == {'open': 0.1, 'parse_and_introspect': 0.5}


@hypothesis.given(st.sets(st.integers(0, 5000), max_size=300))
def test_frame_runs_roundtrip(frames):
    arr = np.array(sorted(frames), dtype=np.int64)
    runs = plan_codec.encode_frames(arr)
    assert len(runs) <= 2 * len(arr)
    assert plan_codec.decode_frames(runs, 10000).tolist() == arr.tolist()


def test_encode_refuses_state_it_cannot_carry():
    mem, rep, p = make_plan()
    p.extra_pages = {1: b'x'}
    with pytest.raises(plan_codec.PlanError, match='cannot carry'):
        plan_codec.encode_plan(rep, p)
    with pytest.raises(plan_codec.PlanError, match='cannot cross'):
        plan_codec.encode_value(object())


def _mutate(doc, path, value):
    target = doc
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return doc


HOSTILE = [
    # (what, path in the document, value, message)
    ('frame outside RAM', ('fills', 0, 1), [16, 1], 'not a RAM page'),
    ('frame in a hole', ('fills', 0, 1), [20, 3], 'not a RAM page'),
    ('frame far away', ('fills', 0, 1), [1 << 39, 1], 'not a RAM page'),
    ('huge count', ('fills', 0, 1), [0, 1 << 30], 'more than'),
    ('too many runs', ('fills', 0, 1), [0, 1] * (plan_codec.MAX_RUNS + 1),
     'even-length'),
    ('overlapping runs', ('fills', 0, 1), [1, 3, 2, 1], 'disjoint'),
    ('empty run', ('fills', 0, 1), [1, 0], 'no frames'),
    ('negative frame', ('fills', 0, 1), [-1, 2], 'integers'),
    ('odd runs', ('fills', 0, 1), [1, 2, 3], 'even-length'),
    ('float frame', ('fills', 0, 1), [1.0, 2], 'integers'),
    ('bool frame', ('fills', 0, 1), [True, 2], 'integers'),
    ('string fill', ('fills', 0, 0), '0', 'fill byte'),
    ('fill > 255', ('fills', 0, 0), 256, 'fill byte'),
    ('same fill twice', ('fills', 1, 0), 0, 'distinct'),
    ('fills not a list', ('fills',), {'0': [1, 1]}, 'fills'),
    ('two fills on a frame', ('fills', 1, 1), [3, 1], 'two fills'),
    ('field crossing a page', ('fields', 0, 0), 5 * PAGE + PAGE - 1,
     'cross a page'),
    ('field outside RAM', ('fields', 0, 0), 20 * PAGE, 'not in a RAM'),
    ('field in a scrubbed frame', ('fields', 2, 0), 2 * PAGE,
     'being scrubbed'),
    ('field of a page and more', ('fields', 0, 1), '00' * (PAGE + 1),
     'hex bytes'),
    ('empty field', ('fields', 0, 1), '', 'hex bytes'),
    ('field bytes a number', ('fields', 0, 1), 5, 'hex bytes'),
    ('field not hex', ('fields', 0, 1), 'zz', 'not hex'),
    ('field address a string', ('fields', 0, 0), '0x5008', 'address'),
    ('field address negative', ('fields', 0, 0), -8, 'address'),
    ('field description too long', ('fields', 0, 2), 'x' * 1000,
     'description'),
    ('field entry short', ('fields', 0), [5 * PAGE, '01', 'x'], 'address'),
    ('unknown kind', ('fields', 0, 3), 'code', 'kind'),
    ('kind not a string', ('fields', 0, 3), True, 'kind'),
    ('kind a list', ('fields', 0, 3), ['signal'], 'kind'),
    ('signal write sets two bits', ('fields', 0, 1), '0f05', 'one bit'),
    ('signal write clears a bit', ('fields', 0, 1), '0405', 'one bit'),
    ('signal write too long', ('fields', 0, 1), '07' * 9, 'at most 8'),
    ('page-flags write sets a bit', ('fields', 1, 1), '0d', 'one bit'),
    ('timer write too long', ('fields', 2, 1), '00' * 129, 'at most 128'),
    ('redact write as bytes', ('fields', 3, 1), '01', 'count of zero'),
    ('redact write of no bytes', ('fields', 3, 1), 0, 'count of zero'),
    ('redact write over a page', ('fields', 3, 1), PAGE + 1,
     'count of zero'),
    ('redact write a float', ('fields', 3, 1), 50.0, 'count of zero'),
    ('redact write a bool', ('fields', 3, 1), True, 'count of zero'),
    ('field in the BIOS window', ('fields', 2, 0), 0xf0000, 'firmware'),
    ('field in SMRAM (ASEG)', ('fields', 2, 0), 0xa0008, 'firmware'),
    ('fill in SMRAM (ASEG)', ('fills', 0, 1), [0xa0, 2], 'firmware'),
    ('wrong version', ('version',), 1, 'version'),
    ('report not a report', ('report',), {'a': 1}, 'no report'),
    ('unknown record', ('report', '$record'), 'Popen', 'unknown record'),
    ('unknown report field', ('report', 'fields', 'evil'), 1, 'no field'),
    ('report field of the wrong type', ('report', 'fields', 'notes'),
     'x', 'wrong type'),
    ('unknown tag', ('report', 'fields', 'kernel'), {'$eval': 'x'},
     'unknown tagged'),
]


@pytest.mark.parametrize('what,path,value,message', HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_plans_refused(what, path, value, message):
    mem, rep, p = make_plan()
    doc = _mutate(plan_codec.encode_plan(rep, p), path, value)
    with pytest.raises(plan_codec.PlanError, match=message):
        plan_codec.decode_plan(doc, mem)


#: Any JSON value, including the report's tags.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) |
    st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8) | st.sampled_from(
            ['$runs', '$array', '$dict', '$record', 'fields']),
        inner, max_size=4),
    max_leaves=10)


@hypothesis.settings(max_examples=600, deadline=None)
@hypothesis.given(st.data())
def test_any_value_anywhere_is_refused_as_a_plan_error(data):
    # Whatever JSON the child puts wherever in its document, the parent
    # either accepts the plan or refuses it with PlanError, never with
    # another exception (an unhashable kind once raised TypeError).
    mem, rep, p = make_plan()
    doc = json.loads(json.dumps(plan_codec.encode_plan(rep, p)))
    path = data.draw(st.sampled_from(
        [p for p, _ in plan_targets.nodes(doc)][1:]))
    _mutate(doc, path, data.draw(JSON_VALUES))
    try:
        plan_codec.decode_plan(doc, mem)
    except plan_codec.PlanError:
        pass


def test_too_many_fields(monkeypatch):
    mem, rep, p = make_plan()
    monkeypatch.setattr(plan_codec, 'MAX_FIELDS', 2)
    with pytest.raises(plan_codec.PlanError, match='at most 2'):
        plan_codec.decode_plan(plan_codec.encode_plan(rep, p), mem)


def test_extra_keys_and_non_dicts_refused():
    mem, rep, p = make_plan()
    doc = plan_codec.encode_plan(rep, p)
    for bad in (dict(doc, extra=1), [doc], None, 'plan'):
        with pytest.raises(plan_codec.PlanError, match='not a plan'):
            plan_codec.decode_plan(bad, mem)


def test_deep_nesting_refused():
    mem, rep, p = make_plan()
    doc = plan_codec.encode_plan(rep, p)
    deep = 'x'
    for _ in range(plan_codec.MAX_DEPTH + 5):
        deep = [deep]
    doc['report']['fields']['kernel'] = {'k': deep}
    with pytest.raises(plan_codec.PlanError, match='nested'):
        plan_codec.decode_plan(doc, mem)


def test_process_plan_missing_field_refused():
    mem, rep, p = make_plan()
    doc = plan_codec.encode_plan(rep, p)
    del doc['report']['fields']['processes'][0]['fields']['pid']
    with pytest.raises(plan_codec.PlanError, match='does not build'):
        plan_codec.decode_plan(doc, mem)


def test_kind_counts_are_bounded(monkeypatch):
    mem, rep, p = make_plan()
    monkeypatch.setitem(plan_codec.FIELD_RULES, patches.SIGNAL, (8, 0))
    with pytest.raises(plan_codec.PlanError, match='signal writes are at '
                                                   'most 8 bytes and 0'):
        plan_codec.decode_plan(plan_codec.encode_plan(rep, p), mem)


def test_firmware_reserved_from_the_ram_layout():
    assert plan_codec.firmware_reserved(FakeMemory()) == ((0xa0000,
                                                           0x100000),)

    class Small(FakeMemory):
        ranges = [(0, 0x9f000)]
    assert plan_codec.firmware_reserved(Small()) == ()


class _Device:
    def __init__(self, name, config):
        self.name = name
        self.values = {'parent_obj': {'config[0]': bytes(config)}}


def _mch(esmramc, ext_mib=16):
    config = bytearray(256)
    config[0x9e] = esmramc
    config[0x50:0x52] = ext_mib.to_bytes(2, 'little')
    return _Device('0000:00:00.0/mch', config)


class _Q35Memory(FakeMemory):
    ranges = [(0, 0x7ff00000)]      # 2 GiB - 1 MiB below 4 GiB


@pytest.mark.parametrize('esmramc,size', [
    (0x00, 0), (0x01, 1 << 20), (0x03, 2 << 20), (0x05, 8 << 20),
    (0x07, 16 << 20)])
def test_q35_tseg_from_the_host_bridge(esmramc, size):
    got = plan_codec.firmware_reserved(_Q35Memory(), [_mch(esmramc)])
    want = ((0xa0000, 0x100000),) + (
        ((0x7ff00000 - size, 0x7ff00000),) if size else ())
    assert got == want


def test_field_in_tseg_refused():
    class Low(FakeMemory):
        ranges = [(0, 0x110000)]        # TSEG of 1 MiB: [0x10000, 0x110000)
    mem = Low()
    rep = report_mod.ScrubReport(checkpoint='/x.save')
    for paddr, ok in ((0x5000, True), (0x10f000, False)):
        p = patches.PagePatcher(mem)
        p.write(paddr, b'abcd', 'timer', kind=patches.TIMER)
        doc = plan_codec.encode_plan(rep, p)
        if ok:
            plan_codec.decode_plan(doc, mem, [_mch(0x01)])
            continue
        with pytest.raises(plan_codec.PlanError,
                           match='0x10f000 is reserved for the firmware'):
            plan_codec.decode_plan(doc, mem, [_mch(0x01)])
        plan_codec.decode_plan(doc, mem, [_mch(0x00)])     # TSEG off


def test_free_memory_crosses_apart_from_the_processes_data():
    mem, rep, p = make_plan()
    p.scrub(np.array([8, 9]), 0, free=True)
    p.zero_phys(37 * PAGE, 16, 'free object of kmalloc-16',
                kind=patches.FREE_OBJECT)
    doc = plan_codec.encode_plan(rep, p)
    assert doc['free'] == [8, 2]
    _, back = roundtrip(doc, mem)
    assert back.free_frames.tolist() == [8, 9]
    assert back.scrubbed[0].tolist() == [1, 2, 3, 7, 8, 9, 33]
    assert back.fields[-1].kind == patches.FREE_OBJECT
    assert back.fields[-1].redacted


def test_free_frames_must_be_scrubbed():
    mem, rep, p = make_plan()
    doc = plan_codec.encode_plan(rep, p)
    doc['free'] = [12, 1]
    with pytest.raises(plan_codec.PlanError, match='not scrubbed'):
        roundtrip(doc, mem)


def test_free_object_writes_are_zeroes():
    mem, rep, p = make_plan()
    doc = plan_codec.encode_plan(rep, p)
    doc['fields'].append([37 * PAGE, 'ff', 'free object', 'free-object'])
    with pytest.raises(plan_codec.PlanError, match='count of zero'):
        roundtrip(doc, mem)
