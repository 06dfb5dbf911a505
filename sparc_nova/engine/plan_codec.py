"""The scrub plan as it crosses the sandbox boundary.

The sandbox child (:mod:`.sandbox`) models the guest kernel and computes
the plan; it returns it as one JSON document (version 3)::

    {"version": 3,
     "report": <the ScrubReport, encoded by encode_value()>,
     "fills": [[fill, [start, count, start, count, ...]], ...],
     "fields": [[paddr, "hex bytes" or count, "what", kind], ...],
     "free": [start, count, ...]}

``fills`` lists, per fill byte, the frames set entirely to it as runs of
consecutive frame numbers; ``free`` (optional) the runs of those frames
that are free memory (a seal scrubs them instead of sealing them);
``fields`` lists the field writes in the order they were made, each with
its kind (:data:`~.patches.KINDS`) and its bytes: as hex, or for the
redacting kinds (:data:`~.patches.REDACTED_KINDS`, which write zeroes
only) as the count of zero bytes. The pages a field write changes are
not sent: the parent rebuilds them from its own copy of the checkpoint
by replaying the writes.

The parent trusts none of it. :func:`decode_plan` checks every type, size
and count, that every frame is a RAM page of the checkpoint the parent
opened itself and outside the firmware-reserved ranges
(:func:`firmware_reserved`), that every field write lies inside one such
page and keeps to its kind's rules (:data:`FIELD_RULES`: size, count, and
what it may change — a ``signal`` write sets one bit, a ``page-flags``
write clears one, a ``redact`` write writes zeroes), then replays the
plan into a :class:`~.patches.PagePatcher` over the parent's memory,
which refuses what the patcher's own rules refuse (a frame scrubbed with
two fills, a field write into a scrubbed frame).

The report is carried generically: every public field of every dataclass
in :mod:`.report` (so new report sections need no change here), numpy
arrays as runs or lists, dicts with non-string keys as pairs. Decoding
builds only those dataclasses and checks each field against its type
annotation.
"""

import dataclasses
import types
import typing

import numpy as np

from sparc_nova.engine import patches
from sparc_nova.engine import report as report_mod
from sparc_nova import exception
from sparc_nova.introspect import arrays

__all__ = ['FIELD_RULES', 'LEGACY_RESERVED', 'MAX_ARRAY', 'MAX_DEPTH',
           'MAX_FIELDS', 'MAX_NODES', 'MAX_PFN', 'MAX_RUNS', 'MAX_WHAT',
           'PARENT_FIELDS', 'RECORDS', 'VERSION', 'PlanError', 'decode_frames',
           'decode_plan', 'decode_value', 'encode_frames', 'encode_plan',
           'encode_value', 'firmware_reserved', 'merge_report']

VERSION = 3
#: Field writes in one plan.
MAX_FIELDS = 1 << 20
#: Per kind of field write: (largest write in bytes, most writes in a
#: plan). A signal write sets a bit in a 64-bit word (two per thread:
#: pending set and thread flags); a timer write is the process_timer or
#: one of the links, counts and wheel fields (a dozen per killed
#: process); page-flags clears a bit in a 64-bit word.
FIELD_RULES = {patches.SIGNAL: (8, 1 << 18), patches.TIMER: (128, 1 << 16),
               patches.PAGE_FLAGS: (8, 1 << 20),
               patches.REDACT: (patches.PAGE_SIZE, MAX_FIELDS),
               patches.FREE_OBJECT: (patches.PAGE_SIZE, MAX_FIELDS)}
#: Guest physical ranges no scrub writes on x86 pc and q35: the legacy
#: VGA window, which is also SMRAM's ASEG, and the option ROM and BIOS
#: shadows ([0xa0000, 0x100000)). No kernel object, user page or free
#: page lives there.
LEGACY_RESERVED = ((0xa0000, 0x100000),)
#: Runs in one frame list.
MAX_RUNS = 1 << 22
#: Characters of a field write's description.
MAX_WHAT = 256
#: Nesting of the report.
MAX_DEPTH = 32
#: Values (numbers, strings, list and dict entries) in a decoded report.
MAX_NODES = 1 << 24
#: Largest frame number (guest physical addresses have at most 52 bits).
MAX_PFN = 1 << 40
#: Frames a report array may hold.
MAX_ARRAY = 1 << 28

#: The dataclasses a report may contain, by name.
RECORDS = {name: obj for name, obj in vars(report_mod).items()
           if isinstance(obj, type) and dataclasses.is_dataclass(obj)}

#: Report fields the parent sets itself and never takes from the child.
PARENT_FIELDS = ('checkpoint', 'output', 'dry_run', 'selectors',
                 'verification', 'timings', 'sandbox', 'seal')


class PlanError(exception.SparcError):
    """A plan (or report) does not decode, or breaks a rule."""


# -- frame runs ---------------------------------------------------------------

def encode_frames(pfns) -> list[int]:
    """Sorted unique frame numbers as ``[start, count, ...]``."""
    a = np.asarray(pfns, dtype=np.int64).ravel()
    if not (a[1:] > a[:-1]).all():     # plans hold sorted frames already
        a = np.unique(a)
    if not len(a):
        return []
    breaks = np.nonzero(np.diff(a) != 1)[0] + 1
    first = np.concatenate([[0], breaks])
    counts = np.diff(np.concatenate([first, [len(a)]]))
    return np.column_stack([a[first], counts]).ravel().tolist()


def _ints(values, what: str, low: int, high: int) -> np.ndarray:
    if not isinstance(values, list) or not all(
            type(v) is int and low <= v < high for v in values):
        raise PlanError('%s: expected a list of integers in [%d, %d)'
                        % (what, low, high))
    return np.array(values, dtype=np.int64)


def decode_frames(runs, limit: int, what: str = 'frames') -> np.ndarray:
    """The frames of ``[start, count, ...]`` runs (ascending, disjoint,
    at most ``limit`` frames) as a sorted int64 array.
    """
    if not isinstance(runs, list) or len(runs) % 2 or \
            len(runs) > 2 * MAX_RUNS:
        raise PlanError('%s: expected an even-length list of at most %d '
                        'integers' % (what, 2 * MAX_RUNS))
    arr = _ints(runs, what, 0, MAX_PFN)
    starts, counts = arr[0::2], arr[1::2]
    if (counts <= 0).any():
        raise PlanError('%s: a run of no frames' % what)
    total = int(counts.sum())
    if total > limit:
        raise PlanError('%s: %d frames, more than the %d allowed'
                        % (what, total, limit))
    ends = starts + counts
    if (starts[1:] < ends[:-1]).any():
        raise PlanError('%s: runs are not ascending and disjoint' % what)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(
        total, dtype=np.int64)


# -- generic report values ----------------------------------------------------

def encode_value(value):
    """``value`` (a report or anything in it) as JSON-ready data."""
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        a = value.astype(np.int64).ravel()
        if len(a) and (np.diff(a) > 0).all() and a[0] >= 0:
            return {'$runs': encode_frames(a)}
        return {'$array': a.tolist()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if RECORDS.get(name) is not type(value):
            raise PlanError('%s cannot cross the sandbox' % name)
        return {'$record': name, 'fields': {
            f.name: encode_value(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.init and not f.name.startswith('_')}}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith('$') for k in value):
            return {k: encode_value(v) for k, v in value.items()}
        return {'$dict': [[encode_value(k), encode_value(v)]
                          for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    raise PlanError('a %s cannot cross the sandbox' % type(value).__name__)


def _conforms(value, tp) -> bool:
    """Whether ``value`` fits annotation ``tp`` (the shapes report
    dataclasses use; annotations not modelled here accept anything).
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return any(_conforms(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and (
            not args or all(_conforms(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and \
            not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


class _Decoder:
    """Rebuilds encode_value() output, within depth and size budgets."""

    def __init__(self):
        self.nodes = 0

    def value(self, v, depth: int = 0):
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise PlanError('report is too large or too deeply nested')
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.value(x, depth + 1) for x in v]
        if not isinstance(v, dict):
            raise PlanError('report holds a %s' % type(v).__name__)
        if not any(isinstance(k, str) and k.startswith('$') for k in v):
            return {k: self.value(x, depth + 1) for k, x in v.items()}
        return self._tagged(v, depth)

    def _tagged(self, v: dict, depth: int):
        keys = set(v)
        if keys == {'$runs'}:
            self.nodes += len(v['$runs']) if isinstance(v['$runs'],
                                                        list) else 0
            return decode_frames(v['$runs'], MAX_ARRAY, 'report array')
        if keys == {'$array'}:
            if isinstance(v['$array'], list) and len(v['$array']) > \
                    MAX_ARRAY:
                raise PlanError('report array is too long')
            self.nodes += len(v['$array']) if isinstance(v['$array'],
                                                         list) else 0
            return _ints(v['$array'], 'report array', -(1 << 63), 1 << 63)
        if keys == {'$dict'} and isinstance(v['$dict'], list):
            out = {}
            for pair in v['$dict']:
                if not isinstance(pair, list) or len(pair) != 2 or \
                        not isinstance(pair[0], (str, int, float, bool,
                                                 type(None))):
                    raise PlanError('report dict entry is not a '
                                    '[key, value] pair')
                out[pair[0]] = self.value(pair[1], depth + 1)
            return out
        if keys == {'$record', 'fields'} and isinstance(v['fields'], dict):
            return self._record(v['$record'], v['fields'], depth)
        raise PlanError('report holds an unknown tagged value %s'
                        % sorted(map(str, keys))[:4])

    def _record(self, name, fields: dict, depth: int):
        cls = RECORDS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise PlanError('report holds an unknown record %r'
                            % str(name)[:64])
        known = {f.name: f for f in dataclasses.fields(cls)
                 if f.init and not f.name.startswith('_')}
        unknown = set(fields) - set(known)
        if unknown:
            raise PlanError('%s has no field %r'
                            % (name, sorted(unknown)[0][:64]))
        values = {k: self.value(x, depth + 1) for k, x in fields.items()}
        for k, x in values.items():
            if not _conforms(x, known[k].type):
                raise PlanError('%s.%s has the wrong type (%s)'
                                % (name, k, type(x).__name__))
        try:
            return cls(**values)
        except TypeError as e:
            raise PlanError('%s does not build: %s' % (name, e))


def decode_value(data):
    """Inverse of :func:`encode_value`, for untrusted ``data`` (the
    sandbox child's JSON).

    :raises PlanError: ``data`` is too large, too deeply nested or holds
        a type :func:`encode_value` never makes
    """
    return _Decoder().value(data)


def merge_report(rep: report_mod.ScrubReport,
                 child: report_mod.ScrubReport) -> None:
    """Take every section of ``child`` into ``rep`` except those the
    parent owns (:data:`PARENT_FIELDS`); the child's timings are added to
    ``rep``'s.
    """
    for f in dataclasses.fields(rep):
        if f.init and not f.name.startswith('_') and \
                f.name not in PARENT_FIELDS:
            setattr(rep, f.name, getattr(child, f.name))
    for k, v in child.timings.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            rep.timings[k] = v


# -- the plan -----------------------------------------------------------------

def encode_plan(rep: report_mod.ScrubReport,
                patcher: patches.PagePatcher) -> dict:
    """The plan document for the parent (see the module docstring)."""
    carried = {'memory', '_pages', '_fills', '_free', 'fields'}
    extra = set(vars(patcher)) - carried
    if extra:
        raise PlanError('the plan holds changes the sandbox cannot carry '
                        '(%s)' % ', '.join(sorted(extra)))
    return {'version': VERSION, 'report': encode_value(rep),
            'fills': [[int(fill), encode_frames(arr)]
                      for fill, arr in sorted(patcher.scrubbed.items())],
            'fields': [[f.paddr,
                        len(f.new) if f.redacted else f.new.hex(),
                        f.what, f.kind]
                       for f in patcher.fields],
            'free': encode_frames(patcher.free_frames)}


def firmware_reserved(memory, devices=()) -> tuple[tuple[int, int], ...]:
    """Guest physical ``[start, end)`` ranges of ``memory`` (the parent's
    view of the checkpoint's RAM-block layout) that belong to the
    firmware: :data:`LEGACY_RESERVED`, and on q35 the TSEG that the
    ``mch`` host bridge's configuration space (``devices``, the device
    state the parent decoded from the stream) enables, at the top of RAM
    below 4 GiB as QEMU places it.
    """
    ranges = list(LEGACY_RESERVED)
    low_end = next((end for start, end in memory.ranges if start == 0), 0)
    size = _tseg_size(devices)
    if size and low_end:
        ranges.append((max(0, low_end - size), low_end))
    return tuple((max(a, start), min(b, end))
                 for a, b in ranges
                 for start, end in memory.ranges
                 if max(a, start) < min(b, end))


#: q35 host bridge registers (QEMU include/hw/pci-host/q35.h).
_MCH_ESMRAMC, _MCH_EXT_TSEG_MBYTES = 0x9e, 0x50
_ESMRAMC_T_EN, _ESMRAMC_TSEG_SZ = 0x01, 0x06
_TSEG_MIB = {0x0: 1, 0x2: 2, 0x4: 8}


def _tseg_size(devices) -> int:
    """Bytes of TSEG the q35 ``mch`` device enables (0: none)."""
    for d in devices:
        if not d.name.endswith('/mch'):
            continue
        parent = d.values.get('parent_obj')
        config = parent.get('config[0]') if isinstance(parent, dict) \
            else None
        if not isinstance(config, bytes) or len(config) < 0x100:
            continue
        esmramc = config[_MCH_ESMRAMC]
        if not esmramc & _ESMRAMC_T_EN:
            return 0
        code = esmramc & _ESMRAMC_TSEG_SZ
        mib = _TSEG_MIB.get(code) or int.from_bytes(
            config[_MCH_EXT_TSEG_MBYTES:_MCH_EXT_TSEG_MBYTES + 2], 'little')
        return mib << 20
    return 0


def _in_reserved(pfns: np.ndarray, reserved) -> np.ndarray:
    out = np.zeros(len(pfns), dtype=bool)
    for start, end in reserved:
        out |= (pfns >= start >> 12) & (pfns < (end + 4095) >> 12)
    return out


def _ram_frames(memory) -> int:
    return sum((end - start) >> 12 for start, end in memory.ranges)


def _fills(doc, memory, reserved) -> list[tuple[int, np.ndarray]]:
    fills = doc['fills']
    if not isinstance(fills, list) or len(fills) > 256:
        raise PlanError('fills: expected a list of at most 256 entries')
    limit = _ram_frames(memory)
    seen = set()
    out = []
    for entry in fills:
        if not isinstance(entry, list) or len(entry) != 2 or \
                type(entry[0]) is not int or not 0 <= entry[0] < 256 or \
                entry[0] in seen:
            raise PlanError('fills: expected [fill byte, runs] with '
                            'distinct fill bytes')
        fill = entry[0]
        seen.add(fill)
        frames = decode_frames(entry[1], limit, 'frames of fill 0x%02x'
                               % fill)
        outside = frames[~memory.is_ram(frames)]
        if len(outside):
            raise PlanError('frame 0x%x is not a RAM page of the '
                            'checkpoint' % int(outside[0]))
        firmware = frames[_in_reserved(frames, reserved)]
        if len(firmware):
            raise PlanError('frame 0x%x is reserved for the firmware'
                            % int(firmware[0]))
        out.append((fill, frames))
    return out


def _field_bytes(value, kind: str, paddr: int, what: str) -> bytes:
    """The bytes a field write carries: a count of zero bytes for the
    redacting kinds, hex for the others.
    """
    if kind in patches.REDACTED_KINDS:
        if type(value) is not int or not 1 <= value <= patches.PAGE_SIZE:
            raise PlanError('fields: a %s write at 0x%x carries a count of '
                            'zero bytes (1 to %d)'
                            % (kind, paddr, patches.PAGE_SIZE))
        return bytes(value)
    if not isinstance(value, str) or \
            not 2 <= len(value) <= 2 * patches.PAGE_SIZE:
        raise PlanError('fields: a %s write at 0x%x carries hex bytes (1 to '
                        '%d)' % (kind, paddr, patches.PAGE_SIZE))
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise PlanError('fields: %s at 0x%x is not hex' % (what[:64], paddr))


def _fields(doc, memory, reserved) -> list[tuple[int, bytes, str, str]]:
    fields = doc['fields']
    if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
        raise PlanError('fields: expected a list of at most %d writes'
                        % MAX_FIELDS)
    counts = dict.fromkeys(FIELD_RULES, 0)
    out = []
    for entry in fields:
        if not isinstance(entry, list) or len(entry) != 4 or \
                type(entry[0]) is not int or \
                not 0 <= entry[0] < MAX_PFN << 12 or \
                not isinstance(entry[2], str) or \
                len(entry[2]) > MAX_WHAT or \
                not isinstance(entry[3], str) or \
                entry[3] not in FIELD_RULES:
            raise PlanError('fields: expected [address, bytes, description, '
                            'kind (%s)]' % ', '.join(FIELD_RULES))
        paddr, what, kind = entry[0], entry[2], entry[3]
        data = _field_bytes(entry[1], kind, paddr, what)
        size, most = FIELD_RULES[kind]
        counts[kind] += 1
        if len(data) > size or counts[kind] > most:
            raise PlanError('fields: %s writes are at most %d bytes and %d '
                            'in a plan' % (kind, size, most))
        if (paddr & (patches.PAGE_SIZE - 1)) + len(data) > \
                patches.PAGE_SIZE:
            raise PlanError('fields: %d bytes at 0x%x cross a page'
                            % (len(data), paddr))
        out.append((paddr, data, what, kind))
    # The frames are checked together: one numpy pass instead of one per
    # write (a plan holds thousands of free-object writes).
    pfns = np.fromiter((paddr >> 12 for paddr, _, _, _ in out),
                       dtype=np.int64, count=len(out))
    outside = np.nonzero(~memory.is_ram(pfns))[0]
    if len(outside):
        raise PlanError('fields: 0x%x is not in a RAM page of the '
                        'checkpoint' % out[outside[0]][0])
    firmware = np.nonzero(_in_reserved(pfns, reserved))[0]
    if len(firmware):
        raise PlanError('fields: 0x%x is reserved for the firmware'
                        % out[firmware[0]][0])
    return out


def _one_bit(old: bytes, new: bytes, kind: str) -> bool:
    """Whether ``new`` sets (signal) or clears (page-flags) at most one
    bit of ``old`` and changes nothing else.
    """
    a, b = int.from_bytes(old, 'little'), int.from_bytes(new, 'little')
    changed = a ^ b
    if changed & (changed - 1):
        return False
    return not changed & a if kind == patches.SIGNAL else not changed & b


def decode_plan(doc, memory, devices=()) -> tuple[report_mod.ScrubReport,
                                                  patches.PagePatcher]:
    """Validate a plan document against ``memory`` (the parent's
    :class:`~.physview.CheckpointMemory`) and rebuild it.

    :param devices: the device state the parent decoded from the stream
        (``layout.devices``), for the firmware-reserved ranges.

    :returns: ``(report, patcher)``; the patcher's pages are built from
        ``memory``.
    :raises PlanError: anything is out of shape or out of bounds.
    """
    if not isinstance(doc, dict) or \
            set(doc) - {'free'} != {'version', 'report', 'fills', 'fields'}:
        raise PlanError('not a plan document')
    if doc['version'] != VERSION:
        raise PlanError('plan version %r, expected %d'
                        % (str(doc['version'])[:16], VERSION))
    reserved = firmware_reserved(memory, devices)
    fills = _fills(doc, memory, reserved)
    free = decode_frames(doc.get('free', []), _ram_frames(memory),
                         'free frames')
    fields = _fields(doc, memory, reserved)
    rep = decode_value(doc['report'])
    if not isinstance(rep, report_mod.ScrubReport):
        raise PlanError('the plan holds no report')
    patcher = patches.PagePatcher(memory)
    try:
        for fill, frames in fills:
            is_free = arrays.isin_sorted(frames, free)
            patcher.scrub(frames[~is_free], fill)
            patcher.scrub(frames[is_free], fill, free=True)
        if len(patcher.free_frames) != len(free):
            raise PlanError('free frames: frame 0x%x is not scrubbed'
                            % int(np.setdiff1d(free, patcher.free_frames)[0]))
        for paddr, data, what, kind in fields:
            if kind in (patches.SIGNAL, patches.PAGE_FLAGS) and not \
                    _one_bit(patcher.read_phys(paddr, len(data)), data,
                             kind):
                raise PlanError('fields: the %s write at 0x%x changes more '
                                'than %s one bit' % (
                                    kind, paddr, 'setting' if kind ==
                                    patches.SIGNAL else 'clearing'))
            patcher.write(paddr, data, what, kind=kind)
    except patches.PlanConflict as e:
        raise PlanError(str(e))
    return rep, patcher
