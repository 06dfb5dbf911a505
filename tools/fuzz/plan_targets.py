"""Fuzz target for the scrub plan as the parent receives it from the
sandbox child (:mod:`sparc_nova.engine.plan_codec`).

The child is untrusted: its output bytes are parsed as JSON and decoded
against the parent's view of guest RAM. Every input must decode or fail
with :class:`~sparc_nova.engine.plan_codec.PlanError`; anything else is a
bug. Used by ``tools/fuzz/run.py`` (long runs) and by
``tests/unit/engine/test_plan_fuzz_regression.py`` (corpus replay).
"""

import copy
import json

import numpy as np

from sparc_nova.engine import patches
from sparc_nova.engine import plan_codec
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import sandbox

__all__ = ['RamMap', 'decode_plan', 'nodes', 'seed_plans', 'TARGETS']

PAGE = patches.PAGE_SIZE
#: Largest plan document the target decodes (the fuzzer's inputs are
#: small anyway; the parent's own cap is the sandbox policy's).
MAX_INPUT = 1 << 20


class RamMap:
    """Guest RAM in frames [0, 16) and [32, 48); frame N holds byte N.

    The two methods :func:`plan_codec.decode_plan` and the patcher use of
    :class:`~sparc_nova.engine.physview.CheckpointMemory`.
    """

    ranges = [(0, 16 * PAGE), (32 * PAGE, 48 * PAGE)]

    def is_ram(self, pfns) -> np.ndarray:
        pfns = np.asarray(pfns, dtype=np.int64)
        ok = np.zeros(len(pfns), dtype=bool)
        for start, end in self.ranges:
            ok |= (pfns >= start >> 12) & (pfns < end >> 12)
        return ok

    def read(self, addr: int, size: int) -> bytes:
        if not self.is_ram([addr >> 12])[0]:
            raise AssertionError('read outside RAM at 0x%x' % addr)
        return bytes([(addr >> 12) & 0xff]) * size


MEMORY = RamMap()
POLICY = sandbox.SandboxPolicy(max_result=MAX_INPUT)


def decode_plan(data: bytes) -> None:
    """Child output bytes (``{"result": plan}``), read and decoded as the
    parent does (:func:`sandbox._result`, then ``decode_plan``).
    """
    try:
        doc = sandbox._result('fuzz', 0, data, b'', POLICY)
        doc.pop('_sandbox', None)       # as the memory engine does
        rep, patcher = plan_codec.decode_plan(doc, MEMORY)
    except (sandbox.SandboxError, plan_codec.PlanError):
        return
    patcher.replacements()
    plan_codec.merge_report(report_mod.ScrubReport(checkpoint='fuzz'), rep)


def seed_plans() -> list[bytes]:
    """Valid plan documents (JSON bytes) to start the fuzzer from."""
    p = patches.PagePatcher(MEMORY)
    p.scrub(np.array([1, 2, 3, 7, 33]), 0)
    p.scrub(np.array([40, 41]), 0xaa)
    # Frame 5 holds 0x05 bytes: a signal write sets one bit.
    p.write(5 * PAGE + 8, b'\x07', 'task 5 pending', kind=patches.SIGNAL)
    p.zero_phys(36 * PAGE + 100, 50, 'pipe buffer')
    rep = report_mod.ScrubReport(checkpoint='/x.save', selectors=['vault'])
    rep.kernel = {'osrelease': '6.1.0'}
    rep.processes.append(report_mod.ProcessPlan(
        pid=99, comm='vault', exe=None, reasons=['name'], threads=[99],
        frames={'heap': np.array([1, 2, 3]), 'stack': np.array([7, 33])},
        refused=[{'frame': '0x9', 'reason': 'shared'}],
        kill={'wakeup': 'timer'}))
    rep.free_pages = {'frames': 2, 'fill': 0xaa}
    rep.timings = {'parse_and_introspect': 0.5}
    empty = patches.PagePatcher(MEMORY)
    return [json.dumps({'result': plan_codec.encode_plan(r, q)}).encode()
            for r, q in ((rep, p),
                         (report_mod.ScrubReport(checkpoint='x'), empty))]


#: Values the structured target puts into a plan: edges of every check.
_VALUES = (None, True, False, 0, 1, -1, 255, 256, 4095, 4096, 1 << 40,
           (1 << 40) - 1, 1 << 63, -(1 << 63), 1.5, float('inf'), '', 'x',
           '00', 'zz', 'ff' * 4097, [], {}, [0], [1, 1], [0, -1], [1, 0, 2, 1],
           {'$runs': [1, 2]}, {'$array': [1]}, {'$dict': [[1, 2]]},
           {'$record': 'ScrubReport', 'fields': {}},
           {'$record': 'ProcessPlan', 'fields': {'pid': 'x'}},
           {'$record': 'nope', 'fields': {}}, {'$runs': 'x'}, {'$x': 1})


def nodes(doc, path=()):
    """Every (path, value) in a JSON tree, parents first."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from nodes(v, path + (i,))


def _replace(doc, path, value):
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def mutate_plan(data: bytes) -> dict:
    """A seed plan with fuzz-chosen nodes replaced by edge values: each
    pair of bytes picks a node of the tree and a value (or, with the
    value byte's top bit set, a copy of another node), so that mutations
    land on the plan's structure rather than on its JSON syntax.
    """
    seeds = _SEEDS or _SEEDS.extend(json.loads(d)['result']
                                    for d in seed_plans()) or _SEEDS
    doc = copy.deepcopy(seeds[data[0] % len(seeds)] if data else seeds[0])
    for i in range(1, len(data) - 1, 2):
        found = list(nodes(doc))
        if len(found) > 4000 or max(len(p) for p, _ in found) > 48:
            break   # copies of subtrees into themselves grow fast
        path, _ = found[data[i] % len(found)]
        pick = data[i + 1]
        if pick & 0x80:
            value = copy.deepcopy(found[pick % len(found)][1])
        else:
            value = copy.deepcopy(_VALUES[pick % len(_VALUES)])
        doc = _replace(doc, path, value)
    return doc


_SEEDS: list = []


def decode_mutated_plan(data: bytes) -> None:
    """:func:`decode_plan` of :func:`mutate_plan` (at most 32 edits)."""
    doc = mutate_plan(data[:65])
    decode_plan(json.dumps({'result': doc}).encode())


TARGETS = {'plan': decode_plan, 'plan-structured': decode_mutated_plan}
