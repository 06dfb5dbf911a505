"""Structure-aware fuzzing of the guest-structure walkers.

The memory engine's whole planning step (:func:`sparc_nova.engine.planner.
plan_scrub`: task list, selectors, page-table walks, the IPC graph and the
kernel-held copies, free pages and free slab objects, kill injection)
runs over a real checkpoint whose guest physical memory is seen through
:class:`OverlayMemory`, which replaces a few words with hostile values.

Structure-aware: a clean planning run records which guest words the
walkers read (:meth:`OverlayMemory.record`); an input picks a few of
those words and a hostile value for each (:func:`build_overrides`): zero,
all ones, the word's own address (a self-pointer: a cycle, a page table
pointing at itself), another recorded word's address (cross-links,
overlapping frames), huge counts, small deltas, addresses just outside
RAM.

Oracle (:meth:`Walkers.check`): the plan is returned, or one of the
errors the engine treats as a clean failure is raised (``GUEST_ERRORS``
and :class:`~sparc_nova.engine.patches.PlanConflict`, less the
IndexError and KeyError of our own code); the run ends within
:data:`TIME_LIMIT` seconds; the plan passes the parent's validator
(:func:`sparc_nova.engine.plan_codec.decode_plan`: every scrubbed frame
and field write inside a RAM page of the checkpoint). Nothing is written.

Reproducers (``tests/fuzz_corpus/walkers/*.json``) are override lists:
``{"overrides": [{"at": LOCATOR, "value": VALUE}, ...]}`` resolved
against whichever checkpoint they are replayed on (:func:`resolve`), or
concrete ``{"paddr": N, "hex": "..."}`` entries for the checkpoint they
were found on.

The long run::

    SPARC_FUZZ_CHECKPOINT=/path/guest.save SPARC_FUZZ_SELECT=pid:99 \\
        python tools/fuzz/run.py walkers -timeout=60 /tmp/corpus
"""

import json
import os
import signal

import drgn

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.engine import patches
from sparc_nova.engine import physview
from sparc_nova.engine import plan_codec
from sparc_nova.engine import planner
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import selectors as selectors_mod
from sparc_nova.engine import session as session_mod
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import tasks

#: Seconds one planning run may take.
TIME_LIMIT = 20
#: Most overrides one input applies.
MAX_OVERRIDES = 6
#: Most guest words a clean run records.
MAX_RECORDED = 400000
#: Words recorded from one read larger than 64 bytes (a page table, an
#: array of struct pages): its nonzero words, evenly spaced.
WORDS_PER_BULK_READ = 32

CLEAN_ERRORS = session_mod.GUEST_ERRORS + (patches.PlanConflict,)
#: Errors of the clean tuple that only a bug in our code raises (drgn
#: reports a missing name as ObjectNotFoundError, a KeyError).
BUG_ERRORS = (IndexError, KeyError)

_MASK = (1 << 64) - 1
#: Counts and sizes a hostile guest may claim.
HUGE = (1 << 31, (1 << 31) - 1, (1 << 32) - 1, 1 << 32, 1 << 40, 1 << 63,
        (1 << 63) - 1, 3_000_000_000)
#: Flags of a present, writable, user page-table entry.
PTE_FLAGS = 0x67


class Hang(Exception):
    """A planning run took longer than :data:`TIME_LIMIT`."""


class OverlayMemory:
    """Guest physical memory ``base`` with ``overrides`` (``{paddr:
    bytes}``) applied to every read; everything else is ``base``'s.
    """

    def __init__(self, base):
        self.base = base
        self.ranges = base.ranges
        self.overrides = {}
        self._recorded = None

    def __getattr__(self, name):
        return getattr(self.base, name)

    def record(self) -> None:
        self._recorded = {}

    def recorded(self) -> list[tuple[int, int]]:
        """``[(paddr, width)]`` read since :meth:`record`, first read
        first.
        """
        out, self._recorded = list(self._recorded.items()), None
        return out

    def _note(self, addr: int, data: bytes) -> None:
        rec = self._recorded
        if len(rec) >= MAX_RECORDED:
            return
        size = len(data)
        if size in (4, 8) and addr % size == 0:
            rec.setdefault(addr, size)
            return
        first = (-addr) % 8
        words = range(first, size - 7, 8)
        if size > 64:
            words = [w for w in words if data[w:w + 8] != bytes(8)]
            step = max(1, len(words) // WORDS_PER_BULK_READ)
            words = words[::step]
        for w in words:
            rec.setdefault(addr + w, 8)

    def read(self, addr: int, size: int) -> bytes:
        data = self.base.read(addr, size)
        if self.overrides:
            end = addr + size
            hits = [(a, v) for a, v in self.overrides.items()
                    if a < end and a + len(v) > addr]
            if hits:
                buf = bytearray(data)
                for a, v in hits:
                    lo, hi = max(a, addr), min(a + len(v), end)
                    buf[lo - addr:hi - addr] = v[lo - a:hi - a]
                data = bytes(buf)
        if self._recorded is not None:
            self._note(addr, data)
        return data


def _direct_map(kernel) -> int:
    try:
        return kernel.prog['page_offset_base'].value_()
    except (LookupError, ValueError):
        return kernel.consts.PAGE_OFFSET


def _vmemmap(kernel) -> int:
    try:
        return kernel.prog['vmemmap_base'].value_()
    except (LookupError, ValueError):
        return 0xffffea0000000000


class Walkers:
    """A real checkpoint, its guest kernel modelled once over an
    :class:`OverlayMemory`, and the words a clean plan reads.

    :param selectors: process selectors of the planning runs.
    """

    def __init__(self, path: str, selectors, work_dir: str | None = None):
        self.ck = checkpoint_mod.open_checkpoint(path, work_dir=work_dir)
        self.base = physview.CheckpointMemory(self.ck)
        self.memory = OverlayMemory(self.base)
        self.kernel = kernel_mod.open_kernel(self.memory)
        self.selectors = selectors_mod.parse_all(selectors)
        self.direct = _direct_map(self.kernel)
        self.vmemmap = _vmemmap(self.kernel)
        self.ram_end = max(end for _, end in self.base.ranges)
        self.memory.record()
        self.clean = self.plan()
        self.words = self.memory.recorded()

    def close(self) -> None:
        self.base.close()
        self.ck.close()

    def plan(self):
        """Run the engine's planning step; ``(report, patcher)``."""
        rep = report_mod.ScrubReport(checkpoint=self.ck.path, dry_run=True,
                                     selectors=[str(s)
                                                for s in self.selectors])
        patcher = planner.plan_scrub(
            self.kernel, self.memory,
            planner.Exclusion(selectors=tuple(self.selectors)), rep)
        return rep, patcher

    def check(self, overrides: dict) -> str:
        """Plan with ``overrides`` applied; the oracle (see the module
        docstring). Returns ``'plan'`` or the clean error's class name;
        anything else propagates (:class:`Hang` past the time limit,
        :class:`~sparc_nova.engine.plan_codec.PlanError` for a plan
        outside RAM).
        """
        self.memory.overrides = overrides
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
        try:
            try:
                rep, patcher = self.plan()
            except CLEAN_ERRORS as e:
                if isinstance(e, BUG_ERRORS) and \
                        not isinstance(e, drgn.ObjectNotFoundError):
                    raise
                return type(e).__name__
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            self.memory.overrides = {}
        plan_codec.decode_plan(plan_codec.encode_plan(rep, patcher),
                               self.base)
        return 'plan'

    # -- hostile values ------------------------------------------------------

    def virt(self, paddr: int) -> int:
        return (self.direct + paddr) & _MASK

    def hostile(self, choose, paddr: int, width: int, orig: int) -> int:
        """A hostile value for the ``width``-byte word at ``paddr`` that
        holds ``orig``; ``choose(lo, hi)`` picks an integer.
        """
        other, _ = self.words[choose(0, len(self.words) - 1)]
        kind = choose(0, 11)
        if kind == 0:
            return 0
        if kind == 1:
            return _MASK
        if kind == 2:
            return self.virt(paddr)
        if kind == 3:
            return (paddr & ~0xfff) | PTE_FLAGS
        if kind == 4:
            return self.virt(other)
        if kind == 5:
            return (other & ~0xfff) | PTE_FLAGS
        if kind == 6:
            return HUGE[choose(0, len(HUGE) - 1)]
        if kind == 7:
            return orig + choose(-16, 16)
        if kind == 8:
            return orig ^ (1 << choose(0, 8 * width - 1))
        if kind == 9:
            edge = self.ram_end + 8 * choose(-2, 2)
            return (edge | PTE_FLAGS) if choose(0, 1) else self.virt(edge)
        if kind == 10:
            pfn = (self.ram_end >> 12) + choose(-1, 1 << 20)
            return self.vmemmap + 64 * pfn
        return int.from_bytes(self.base.read(other, width), 'little')


def _alarm(signum, frame):
    raise Hang('a planning run took more than %d s' % TIME_LIMIT)


def _log_index(choose, n: int) -> int:
    """An index below ``n``, early indices as likely per octave as late
    ones (the task list and IPC words come before the free lists).
    """
    bits = choose(0, max(n - 1, 1).bit_length())
    hi = min(n - 1, (1 << bits) - 1)
    return choose(hi >> 1, hi)


def build_overrides(w: Walkers, choose) -> dict:
    """``{paddr: bytes}``: a few recorded words of ``w`` with hostile
    values, every choice made by ``choose(lo, hi)`` (inclusive).
    """
    out = {}
    for _ in range(choose(1, MAX_OVERRIDES)):
        if choose(0, 1):
            i = _log_index(choose, len(w.words))
        else:
            i = choose(0, len(w.words) - 1)
        paddr, width = w.words[i]
        orig = int.from_bytes(w.base.read(paddr, width), 'little')
        value = w.hostile(choose, paddr, width, orig)
        value &= (1 << (8 * width)) - 1
        out[paddr] = value.to_bytes(width, 'little')
    return out


# -- reproducers ------------------------------------------------------------

def _locate(w: Walkers, locator: str) -> tuple[int, int]:
    """``(paddr, size)`` of ``locator``: ``ROOT.member.member[i]...`` where
    ROOT is ``task`` (the first process the selectors choose) or a kernel
    symbol; pointers are followed implicitly.
    """
    parts = locator.replace('[', '.[').split('.')
    root, parts = parts[0], parts[1:]
    if root == 'task':
        procs = tasks.processes(w.kernel)
        chosen, _ = selectors_mod.select(procs, w.selectors, False)
        leader = next(p for p in procs if p.pid == min(chosen))
        obj = drgn.Object(w.kernel.prog, 'struct task_struct *',
                          leader.address)
    else:
        obj = w.kernel.prog[root]
    for part in parts:
        if obj.type_.kind == drgn.TypeKind.POINTER and not \
                part.startswith('['):
            obj = obj[0]
        obj = obj[int(part[1:-1])] if part.startswith('[') else \
            obj.member_(part)
    return w.kernel.phys(obj.address_), drgn.sizeof(obj)


def _value(w: Walkers, spec, paddr: int, size: int) -> int:
    """The value of reproducer value ``spec`` for the word at ``paddr``:
    an integer, ``ones``, ``self`` (the word's own kernel virtual
    address), ``at:LOCATOR`` (another word's), ``table:self`` (a
    page-table entry naming the word's own page), ``table:at:LOCATOR``,
    ``table:ram_end`` (one naming the first page past RAM),
    ``delta:N`` (the original value plus N) or ``and:N`` (the original
    value and N).
    """
    if isinstance(spec, int):
        return spec
    if spec == 'ones':
        return _MASK
    if spec == 'self':
        return w.virt(paddr)
    if spec.startswith('at:'):
        return w.virt(_locate(w, spec[3:])[0])
    if spec == 'table:self':
        return (paddr & ~0xfff) | PTE_FLAGS
    if spec == 'table:ram_end':
        return w.ram_end | PTE_FLAGS
    if spec.startswith('table:at:'):
        return (_locate(w, spec[9:])[0] & ~0xfff) | PTE_FLAGS
    orig = int.from_bytes(w.base.read(paddr, size), 'little')
    if spec.startswith('delta:'):
        return orig + int(spec[6:])
    if spec.startswith('and:'):
        return orig & int(spec[4:], 0)
    raise ValueError('unknown value %r' % spec)


def resolve(w: Walkers, doc: dict) -> dict:
    """The ``{paddr: bytes}`` overrides of reproducer ``doc``."""
    out = {}
    for entry in doc['overrides']:
        if 'paddr' in entry:
            out[entry['paddr']] = bytes.fromhex(entry['hex'])
            continue
        paddr, size = _locate(w, entry['at'])
        size = entry.get('size', size)
        value = _value(w, entry['value'], paddr, size)
        value &= (1 << (8 * size)) - 1
        out[paddr] = value.to_bytes(size, 'little')
    return out


def dump(overrides: dict) -> str:
    return json.dumps({'overrides': [{'paddr': a, 'hex': v.hex()}
                                     for a, v in sorted(overrides.items())]})


# -- atheris ----------------------------------------------------------------

_W = []


def _walkers() -> Walkers:
    if not _W:
        _W.append(Walkers(os.environ['SPARC_FUZZ_CHECKPOINT'],
                          os.environ.get('SPARC_FUZZ_SELECT',
                                         'pid:99').split(',')))
    return _W[0]


def fuzz_walkers(data: bytes) -> None:
    import atheris
    w = _walkers()
    fdp = atheris.FuzzedDataProvider(data)
    overrides = build_overrides(w, fdp.ConsumeIntInRange)
    try:
        w.check(overrides)
    except BaseException:
        print('OVERRIDES', dump(overrides), flush=True)
        raise


TARGETS = {'walkers': fuzz_walkers}
