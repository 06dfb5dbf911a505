"""Privacy policies: the metadata keys, their validation and merging.

A privacy policy says what must never be persisted in a checkpoint of an
instance. It comes from three sources, in decreasing authority:

``flavor``
    flavor extra specs ``sparc:*``, set by the operator;
``image``
    image properties ``sparc_*`` (Nova keeps them in the instance's system
    metadata as ``image_sparc_*``);
``instance``
    instance metadata ``sparc:*``, set by any member of the project.

Keys (shown with the ``sparc:`` prefix; images use ``sparc_``):

``exclude_processes``
    comma-separated process selectors (:mod:`sparc_nova.vocabulary.
    selectors`): ``NAME``, ``exe:GLOB``, ``pid:N``, ``uid:N``,
    ``cgroup:PATH``.
``exclude_paths``
    comma-separated guest path rules (:mod:`sparc_nova.vocabulary.paths`):
    globs, ``!GLOB`` negations and ``preset:NAME`` items.
``follow_ipc``, ``scrub_free_memory``
    ``true`` or ``false``.
``on_failure``
    ``abort`` (default: nothing unscrubbed is kept) or ``allow`` (the
    checkpoint proceeds unscrubbed and says so), where the configuration
    lets that source choose ``allow``.
``suspend``
    ``scrub`` (default), ``seal`` (what a scrub would zero is encrypted
    under a key the project holds in the key manager and put back on
    resume: nothing readable at rest, nothing lost) or ``refuse``.

Nova limits values to 255 characters, so the list keys take numbered
continuation keys, ``sparc:exclude_paths.1``, ``sparc:exclude_paths.2``...
whose items are appended in order. A comma inside an item is written
``\\,``.

Nobody below a source can weaken it (flavor > image > instance):

* process selectors and path rules are united; a negation (``!GLOB``)
  narrows only the rules of its own source and of the sources below it,
  never those of a source above (the merged rule list for the engines,
  :attr:`EffectivePolicy.path_rules`, puts each source in a scope of its
  own, with the negations of the sources above it);
* ``follow_ipc`` and ``scrub_free_memory`` are true when any source sets
  them true; a source may set one false only when no source above it
  sets it true or excludes anything (the default, true, protects the
  exclusions of the sources above);
* ``on_failure`` is ``abort`` when any source says so; ``allow`` is
  granted only to a source the configuration names, and only when no
  source above it excludes anything;
* ``suspend`` takes the strictest value any source sets: ``refuse``
  over ``scrub`` over ``seal`` (a seal keeps the excluded processes'
  memory, encrypted, where a scrub discards it), so a source below one
  that sets ``scrub`` or ``refuse`` cannot weaken it to ``seal``.

What a source asked for and did not get is listed in
:attr:`EffectivePolicy.refused`.

Selectors, path rules and presets are the shared vocabulary's
(:mod:`sparc_nova.vocabulary`), which the engines use too: what passes
here is what the engines accept. This module knows nothing of Nova's
objects: callers pass plain ``{key: value}`` mappings.
"""

import dataclasses
import hashlib
import json
import posixpath
import re
from typing import Iterable, Mapping

from sparc_nova import exception
from sparc_nova.vocabulary.errors import InvalidRule
from sparc_nova.vocabulary import paths
from sparc_nova.vocabulary import presets as vocabulary_presets
from sparc_nova.vocabulary import selectors

FLAVOR = 'flavor'
IMAGE = 'image'
INSTANCE = 'instance'

#: The sources, most authoritative first.
SOURCES = (FLAVOR, IMAGE, INSTANCE)

#: How each source spells its keys.
PREFIXES = {FLAVOR: 'sparc:', IMAGE: 'sparc_', INSTANCE: 'sparc:'}

#: Words for error messages.
SOURCE_NAMES = {FLAVOR: 'flavor extra spec', IMAGE: 'image property',
                INSTANCE: 'instance metadata'}

EXCLUDE_PROCESSES = 'exclude_processes'
EXCLUDE_PATHS = 'exclude_paths'
FOLLOW_IPC = 'follow_ipc'
SCRUB_FREE_MEMORY = 'scrub_free_memory'
ON_FAILURE = 'on_failure'
SUSPEND = 'suspend'

LIST_KEYS = (EXCLUDE_PROCESSES, EXCLUDE_PATHS)
BOOL_KEYS = (FOLLOW_IPC, SCRUB_FREE_MEMORY)
ON_FAILURE_ABORT = 'abort'
ON_FAILURE_ALLOW = 'allow'
SUSPEND_SCRUB = 'scrub'
SUSPEND_REFUSE = 'refuse'
SUSPEND_SEAL = 'seal'
#: The values of ``suspend``, the weakest first (see :func:`merge`).
SUSPEND_STRICTNESS = (SUSPEND_SEAL, SUSPEND_SCRUB, SUSPEND_REFUSE)

#: Choice keys: their allowed values, the default first.
CHOICE_KEYS = {ON_FAILURE: (ON_FAILURE_ABORT, ON_FAILURE_ALLOW),
               SUSPEND: (SUSPEND_SCRUB, SUSPEND_REFUSE, SUSPEND_SEAL)}
#: The value of each choice key that wins a merge.
STRICTER = {ON_FAILURE: ON_FAILURE_ABORT, SUSPEND: SUSPEND_REFUSE}
KEYS = LIST_KEYS + BOOL_KEYS + tuple(CHOICE_KEYS)

#: Defaults of the boolean keys when no source sets them.
BOOL_DEFAULTS = {FOLLOW_IPC: True, SCRUB_FREE_MEMORY: True}

#: Image properties sparc-nova itself writes on the images it scrubbed.
#: They are records, not policy, and are ignored when read back from an
#: instance booted from such an image.
SCRUBBED_PROPERTY = 'sparc_scrubbed'
DIGEST_PROPERTY = 'sparc_policy_digest'
SUMMARY_PROPERTY = 'sparc_scrub_summary'
RECORD_PROPERTIES = (SCRUBBED_PROPERTY, DIGEST_PROPERTY, SUMMARY_PROPERTY)

#: Nova stores metadata values, extra specs and (truncating silently)
#: image properties in 255 characters.
MAX_VALUE_LENGTH = 255
#: Linux comm names are at most TASK_COMM_LEN - 1 characters.
MAX_COMM_LENGTH = selectors.MAX_COMM_LENGTH
#: Highest continuation number accepted (``sparc:exclude_paths.99``).
MAX_CONTINUATION = 99

_CONTINUATION_RE = re.compile(r'^(?P<key>[a-z_]+)\.(?P<n>[1-9][0-9]*)$')
PRESET_PREFIX = paths.PRESET_PREFIX
#: The label of settings no source set.
DEFAULT = 'default'


@dataclasses.dataclass(frozen=True)
class Problem:
    """One invalid key or value."""

    key: str
    value: str
    source: str
    reason: str

    def __str__(self) -> str:
        return '%s=%r (%s): %s' % (self.key, self.value,
                                   SOURCE_NAMES[self.source], self.reason)


@dataclasses.dataclass
class PolicyPart:
    """What one source sets: only the keys present in it."""

    source: str
    exclude_processes: list[str] = dataclasses.field(default_factory=list)
    exclude_paths: list[str] = dataclasses.field(default_factory=list)
    settings: dict[str, object] = dataclasses.field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.exclude_processes or self.exclude_paths or
                    self.settings)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A setting a source asked for that the merge did not grant."""

    key: str
    value: str
    source: str
    reason: str

    def __str__(self) -> str:
        return '%s%s=%s (%s): %s' % (
            PREFIXES[self.source], self.key, self.value,
            SOURCE_NAMES[self.source], self.reason)


@dataclasses.dataclass
class EffectivePolicy:
    """The merged policy of an instance, with where each part came from.

    ``origins`` maps every list item and every setting to the sources that
    asked for it (``'default'`` for a setting no source set).
    ``exclude_paths`` lists every source's path items (for people);
    ``path_rules`` is what the engines get: the same items, each source
    in a ``scope:SOURCE`` of its own followed by the negations of the
    sources above it, so that no negation reaches up (see
    :mod:`sparc_nova.vocabulary.paths`).
    """

    exclude_processes: list[str]
    exclude_paths: list[str]
    follow_ipc: bool
    scrub_free_memory: bool
    on_failure: str
    suspend: str
    origins: dict[str, object]
    refused: list[Refusal]
    path_rules: list[str] = dataclasses.field(default_factory=list)

    @property
    def excludes_anything(self) -> bool:
        """Whether checkpoints of the instance must be scrubbed."""
        return bool(self.exclude_processes or
                    paths.selects_anything(self.path_rules))

    @property
    def allows_unscrubbed(self) -> bool:
        return self.on_failure == ON_FAILURE_ALLOW

    def effective(self) -> dict:
        """The effective settings only (what the digest covers)."""
        return {EXCLUDE_PROCESSES: list(self.exclude_processes),
                EXCLUDE_PATHS: list(self.exclude_paths),
                'path_rules': list(self.path_rules),
                FOLLOW_IPC: self.follow_ipc,
                SCRUB_FREE_MEMORY: self.scrub_free_memory,
                ON_FAILURE: self.on_failure,
                SUSPEND: self.suspend}

    @property
    def digest(self) -> str:
        """``sha256:HEX`` of the effective settings (canonical JSON)."""
        text = json.dumps(self.effective(), sort_keys=True,
                          separators=(',', ':'))
        return 'sha256:' + hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict:
        data = self.effective()
        data['origins'] = self.origins
        data['refused'] = [dataclasses.asdict(r) for r in self.refused]
        data['digest'] = self.digest
        return data


# -- values --------------------------------------------------------------


def split_list(value: str) -> list[str]:
    """Split a comma-separated value; ``\\,`` is a comma inside an item
    and ``\\\\`` a backslash. Items are stripped of surrounding blanks.
    """
    items, current, escaped = [], [], False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == '\\':
            escaped = True
        elif ch == ',':
            items.append(''.join(current).strip())
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append('\\')
    items.append(''.join(current).strip())
    return items


def join_list(items: Iterable[str]) -> str:
    """The inverse of :func:`split_list`."""
    return ','.join(i.replace('\\', '\\\\').replace(',', '\\,')
                    for i in items)


def list_pairs(key: str, items: Iterable[str],
               source: str = INSTANCE) -> dict[str, str]:
    """The keys that hold the list ``items`` of the list key ``key``
    (e.g. ``exclude_paths``) in ``source``: ``sparc:KEY`` then, when the
    items do not fit in :data:`MAX_VALUE_LENGTH` characters, numbered
    continuation keys ``sparc:KEY.1``, ... An item too long on its own
    gets a key of its own (which :func:`parse` then refuses). No items:
    no keys.
    """
    if key not in LIST_KEYS:
        raise ValueError('%r is not a list key' % key)
    values: list[str] = []
    for item in items:
        piece = join_list([item])
        if values and len(values[-1]) + 1 + len(piece) <= MAX_VALUE_LENGTH:
            values[-1] += ',' + piece
        else:
            values.append(piece)
    prefix = PREFIXES[source] + key
    return {prefix if n == 0 else '%s.%d' % (prefix, n): value
            for n, value in enumerate(values)}


def check_selector(selector: str) -> str | None:
    """Why ``selector`` is not a valid process selector, or None (the
    shared vocabulary's rule, :func:`sparc_nova.vocabulary.selectors.
    check`).
    """
    return selectors.check(selector)


def check_path_glob(glob: str) -> str | None:
    """Why ``glob`` is not a valid ``exclude_paths`` item (a guest path
    glob, a ``!`` negation or a ``preset:NAME``), or None. The grammar is
    the shared vocabulary's (:mod:`sparc_nova.vocabulary.paths`);
    ``scope:`` items are the merge's, not a source's.
    """
    return paths.check_item(glob, allow_scopes=False)


def split_presets(items: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(globs, preset_names)`` of an ``exclude_paths`` list."""
    globs, presets = [], []
    for item in items:
        if item.startswith(PRESET_PREFIX):
            presets.append(item[len(PRESET_PREFIX):])
        else:
            globs.append(item)
    return globs, presets


def expand_presets(items: Iterable[str]) -> list[str]:
    """An ``exclude_paths`` list with each ``preset:NAME`` replaced by the
    preset's globs (for consumers that take plain globs).
    """
    globs = []
    for item in items:
        if item.startswith(PRESET_PREFIX):
            name = item[len(PRESET_PREFIX):]
            globs.extend(vocabulary_presets.get(name).globs)
        else:
            globs.append(item)
    return _unique(globs)


# -- parsing -------------------------------------------------------------


def keys_of(pairs: Mapping[str, str] | None, source: str
            ) -> dict[str, str] | None:
    """The sparc-nova policy keys of one source, prefix kept (``None``
    stays ``None``: the source could not be read). The records sparc-nova
    leaves on the images it scrubbed are not policy and are left out.
    """
    if pairs is None:
        return None
    return {PREFIXES[source] + key: value
            for key, value in _source_keys(pairs, source).items()}


def _source_keys(pairs: Mapping[str, str], source: str) -> dict[str, str]:
    """The pairs of ``pairs`` that belong to sparc-nova in ``source``,
    with the prefix removed (record properties left out).
    """
    prefix = PREFIXES[source]
    found = {}
    for key, value in pairs.items():
        if not key.startswith(prefix):
            continue
        if source == IMAGE and key in RECORD_PROPERTIES:
            continue
        found[key[len(prefix):]] = value
    return found


def parse(pairs: Mapping[str, str], source: str) -> PolicyPart:
    """Validate the sparc-nova keys of one source.

    :param pairs: every key of the source (other keys are ignored)
    :param source: :data:`FLAVOR`, :data:`IMAGE` or :data:`INSTANCE`
    :raises InvalidPolicy: naming every invalid key and value at once
    """
    if source not in SOURCES:
        raise ValueError('unknown policy source %r' % source)
    prefix = PREFIXES[source]
    part = PolicyPart(source)
    problems = []

    def problem(name, value, reason):
        problems.append(Problem(prefix + name, value, source, reason))

    raw = _source_keys(pairs, source)
    lists = {}
    for name in sorted(raw, key=_continuation_order):
        value = raw[name]
        if not isinstance(value, str):
            problem(name, repr(value), 'values are strings')
            continue
        if len(value) > MAX_VALUE_LENGTH:
            problem(name, value, 'longer than %d characters; split it with '
                    'numbered continuation keys (%s%s.1, ...)'
                    % (MAX_VALUE_LENGTH, prefix, _base(name)))
            continue
        if source == IMAGE and len(value.encode()) >= MAX_VALUE_LENGTH:
            problem(name, value, 'Nova truncates image properties to %d '
                    'bytes, so this value may be incomplete; split it with '
                    'numbered continuation keys (%s%s.1, ...)'
                    % (MAX_VALUE_LENGTH, prefix, _base(name)))
            continue
        m = _CONTINUATION_RE.match(name)
        base = m.group('key') if m else name
        if m and base not in LIST_KEYS:
            problem(name, value, 'only %s take continuation keys'
                    % ' and '.join(prefix + k for k in LIST_KEYS)
                    if base in KEYS else _unknown_key(prefix))
            continue
        if m and int(m.group('n')) > MAX_CONTINUATION:
            problem(name, value, 'continuation numbers go up to %d'
                    % MAX_CONTINUATION)
            continue
        if base not in KEYS:
            if _base(name) in LIST_KEYS:
                problem(name, value, 'continuation keys are numbered 1, 2, '
                        '... up to %d, without leading zeros'
                        % MAX_CONTINUATION)
            else:
                problem(name, value, _unknown_key(prefix))
            continue
        if base in LIST_KEYS:
            lists.setdefault(base, []).append((name, value))
        elif base in BOOL_KEYS:
            parsed = _parse_bool(value)
            if parsed is None:
                problem(name, value, 'expected true or false')
            else:
                part.settings[base] = parsed
        else:
            allowed = CHOICE_KEYS[base]
            if value.strip().lower() not in allowed:
                problem(name, value, 'expected one of: %s'
                        % ', '.join(allowed))
            else:
                part.settings[base] = value.strip().lower()

    for base, entries in lists.items():
        numbers = [_continuation_order(n)[1] for n, _ in entries]
        expected = list(range(len(numbers)))
        if numbers != expected:
            missing = min(set(range(max(numbers) + 1)) - set(numbers))
            gap = base if missing == 0 else '%s.%d' % (base, missing)
            problem(entries[-1][0], entries[-1][1],
                    'continuation keys are numbered without gaps, but '
                    '%s%s is missing' % (prefix, gap))
            continue
        check = (check_selector if base == EXCLUDE_PROCESSES
                 else check_path_glob)
        items = []
        for name, value in entries:
            for item in split_list(value):
                if not item:
                    problem(name, value, 'an empty item (two commas in a '
                            'row, or a comma at either end)')
                    continue
                reason = check(item)
                if reason:
                    problem(name, value, '%r: %s' % (item, reason))
                else:
                    items.append(item)
        target = (part.exclude_processes if base == EXCLUDE_PROCESSES
                  else part.exclude_paths)
        target.extend(_unique(items))
    if problems:
        raise exception.InvalidPolicy(problems)
    return part


def _base(name: str) -> str:
    return name.split('.', 1)[0]


def _continuation_order(name: str) -> tuple[str, int]:
    m = _CONTINUATION_RE.match(name)
    if m:
        return m.group('key'), int(m.group('n'))
    return name, 0


def _unknown_key(prefix: str) -> str:
    known = ', '.join(prefix + k for k in KEYS)
    return 'unknown key; known keys: %s' % known


def _parse_bool(value: str) -> bool | None:
    return {'true': True, 'false': False}.get(value.strip().lower())


def _unique(items: Iterable[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


# -- merging -------------------------------------------------------------


def _excludes(part: PolicyPart) -> bool:
    return bool(part.exclude_processes or
                paths.selects_anything(part.exclude_paths))


def scoped_path_rules(ordered: list[PolicyPart]) -> list[str]:
    """The rule list the engines get for the parts ``ordered`` (most
    authoritative first): for each source with a rule that selects
    something, ``scope:SOURCE``, its items, then the negations of the
    sources above it. A negation thus narrows its own source's rules and
    those below, never a source above.
    """
    rules: list[str] = []
    negations: list[str] = []
    for part in ordered:
        own = [i for i in part.exclude_paths
               if i.startswith(paths.NEGATION)]
        negations = _unique(negations + own)
        if not paths.selects_anything(part.exclude_paths):
            continue
        inherited = [n for n in negations if n not in own]
        rules.append(paths.SCOPE_PREFIX + part.source)
        rules.extend(part.exclude_paths + inherited)
    return rules


def _merge_bool(key: str, ordered: list[PolicyPart], origins: dict,
                refused: list) -> bool:
    """True wins; a source's false is granted only when no source above
    it sets true or excludes anything.
    """
    granted: dict[bool, list[str]] = {True: [], False: []}
    for index, part in enumerate(ordered):
        if key not in part.settings:
            continue
        value = part.settings[key]
        above = ordered[:index]
        if value is False:
            strict = [p.source for p in above
                      if p.settings.get(key) is True]
            guarded = [p.source for p in above if _excludes(p)]
            if strict or guarded:
                refused.append(Refusal(
                    key, 'false', part.source,
                    'the %s requires %s=true' % (SOURCE_NAMES[strict[0]],
                                                 key)
                    if strict else
                    'it would weaken what the %s excludes; only that '
                    'source can set it to false' % SOURCE_NAMES[guarded[0]]))
                continue
        granted[value].append(part.source)
    for value in (True, False):
        if granted[value]:
            origins[key] = granted[value]
            return value
    origins[key] = [DEFAULT]
    return BOOL_DEFAULTS[key]


def _merge_on_failure(ordered: list[PolicyPart], allow_from: set,
                      origins: dict, refused: list) -> str:
    """``abort`` wins; ``allow`` only from a source the configuration
    names and when no source above it excludes anything.
    """
    setters = [(i, p.source, p.settings[ON_FAILURE])
               for i, p in enumerate(ordered) if ON_FAILURE in p.settings]
    strict_sources = [s for _, s, v in setters if v == ON_FAILURE_ABORT]
    granted = []
    for index, source, value in setters:
        if value != ON_FAILURE_ALLOW:
            continue
        guarded = [p.source for p in ordered[:index] if _excludes(p)]
        if source not in allow_from:
            reason = ('the configuration ([sparc] on_failure_allow_from) '
                      'does not let the %s choose it' % SOURCE_NAMES[source])
        elif strict_sources:
            reason = 'the %s requires on_failure=%s' % (
                SOURCE_NAMES[strict_sources[0]], ON_FAILURE_ABORT)
        elif guarded:
            reason = ('it would let what the %s excludes be kept; only that '
                      'source can choose it' % SOURCE_NAMES[guarded[0]])
        else:
            granted.append(source)
            continue
        refused.append(Refusal(ON_FAILURE, value, source, reason))
    if granted:
        origins[ON_FAILURE] = granted
        return ON_FAILURE_ALLOW
    origins[ON_FAILURE] = strict_sources or [DEFAULT]
    return ON_FAILURE_ABORT


def _merge_suspend(ordered: list[PolicyPart], origins: dict,
                   refused: list) -> str:
    """The strictest value set wins (:data:`SUSPEND_STRICTNESS`:
    ``refuse`` over ``scrub`` over ``seal``); a value below a source that
    sets a stricter one is refused. No source: ``scrub``.
    """
    setters = [(p.source, p.settings[SUSPEND]) for p in ordered
               if SUSPEND in p.settings]
    if not setters:
        origins[SUSPEND] = [DEFAULT]
        return SUSPEND_SCRUB
    rank = SUSPEND_STRICTNESS.index
    winner = max((v for _, v in setters), key=rank)
    for index, (source, value) in enumerate(setters):
        stricter = [(s, v) for s, v in setters[:index]
                    if rank(v) > rank(value)]
        if stricter:
            refused.append(Refusal(
                SUSPEND, value, source, 'the %s requires suspend=%s'
                % (SOURCE_NAMES[stricter[0][0]], stricter[0][1])))
    origins[SUSPEND] = [s for s, v in setters if v == winner]
    return winner


def merge(parts: Iterable[PolicyPart],
          on_failure_allow_from: Iterable[str] = (FLAVOR,)
          ) -> EffectivePolicy:
    """Merge the parts of the sources into the effective policy (the
    rules are in this module's docstring: nobody below a source can
    weaken it).

    :param parts: at most one part per source, in any order
    :param on_failure_allow_from: the sources whose ``on_failure=allow`` is
        honoured (from configuration); ``allow`` from any other source is
        refused, and so is any ``allow`` when another source asks for
        ``abort`` or a source above excludes something
    """
    by_source = {}
    for part in parts:
        if part.source in by_source:
            raise ValueError('two policy parts for source %r' % part.source)
        by_source[part.source] = part
    ordered = [by_source[s] for s in SOURCES if s in by_source]

    origins: dict[str, object] = {}
    lists = {}
    for key in LIST_KEYS:
        items: dict[str, list[str]] = {}
        for part in ordered:
            for item in getattr(part, key):
                items.setdefault(item, []).append(part.source)
        lists[key] = list(items)
        origins[key] = items

    refused: list[Refusal] = []
    settings = {key: _merge_bool(key, ordered, origins, refused)
                for key in BOOL_KEYS}
    settings[ON_FAILURE] = _merge_on_failure(
        ordered, set(on_failure_allow_from), origins, refused)
    settings[SUSPEND] = _merge_suspend(ordered, origins, refused)

    return EffectivePolicy(
        exclude_processes=lists[EXCLUDE_PROCESSES],
        exclude_paths=lists[EXCLUDE_PATHS],
        follow_ipc=settings[FOLLOW_IPC],
        scrub_free_memory=settings[SCRUB_FREE_MEMORY],
        on_failure=settings[ON_FAILURE],
        suspend=settings[SUSPEND],
        origins=origins,
        refused=refused,
        path_rules=scoped_path_rules(ordered))


def from_sources(flavor: Mapping[str, str] | None = None,
                 image: Mapping[str, str] | None = None,
                 instance: Mapping[str, str] | None = None,
                 on_failure_allow_from: Iterable[str] = (FLAVOR,)
                 ) -> EffectivePolicy:
    """Parse and merge the three sources.

    :raises InvalidPolicy: listing the problems of every source
    """
    parts, problems = [], []
    for source, pairs in ((FLAVOR, flavor), (IMAGE, image),
                          (INSTANCE, instance)):
        try:
            parts.append(parse(pairs or {}, source))
        except exception.InvalidPolicy as e:
            problems.extend(e.problems)
    if problems:
        raise exception.InvalidPolicy(problems)
    return merge(parts, on_failure_allow_from)


def validate_source(pairs: Mapping[str, str], source: str) -> list[str]:
    """The problems of one source's keys, in the words ``sparc policy
    check`` prints (``KEY='VALUE' (SOURCE): what is wrong``); empty when
    the source is valid. Keys of other services are ignored, as
    :func:`parse` does.

    :param pairs: every key of the source (e.g. a flavor's extra specs or
        a server's metadata)
    :param source: :data:`FLAVOR`, :data:`IMAGE` or :data:`INSTANCE`
    """
    try:
        parse(pairs, source)
    except exception.InvalidPolicy as e:
        return [str(p) for p in e.problems]
    return []


# -- explaining ------------------------------------------------------------


def explain_path(effective: EffectivePolicy, path: str) -> dict:
    """Whether guest ``path`` is excluded, and by which sources' rules.

    :param path: an absolute guest path
    :returns: ``{'path', 'excluded', 'by': [source, ...], 'rules':
        [{'source', 'rule', 'kept_by'}]}``, one rule entry per source
        whose rule covers the path (``kept_by`` is the negation that
        keeps it from that rule, or None)
    :raises InvalidRule: ``path`` is not an absolute path
    """
    if not path.startswith('/') or '\0' in path or \
            len(path) > paths.MAX_RULE_LENGTH:
        raise InvalidRule('%r is not an absolute guest path' % path)
    normalized = posixpath.normpath(path)
    if normalized.startswith('//'):
        normalized = '/' + normalized.lstrip('/')
    decider = paths.ScopedRules(paths.parse_items(
        effective.path_rules)).decider()
    rules, by = [], []
    for scope, rule, keeper in decider.explain(normalized):
        rules.append({'source': scope.label, 'rule': rule.text
                      if rule.origin == 'path' else rule.origin,
                      'kept_by': keeper.text if keeper else None})
        if keeper is None and scope.label not in by:
            by.append(scope.label)
    return {'path': path, 'excluded': bool(by), 'by': by, 'rules': rules}


def explain_process(effective: EffectivePolicy,
                    process: selectors.Process) -> dict:
    """Whether a guest process is excluded, and by which sources'
    selectors (pid 1 never is; kernel threads, which a description cannot
    show, never are either).

    :returns: ``{'process', 'excluded', 'by': [source, ...],
        'selectors': [{'selector', 'sources'}]}``
    """
    matched = []
    by: list[str] = []
    origins = effective.origins.get(EXCLUDE_PROCESSES, {})
    if process.pid != 1:
        for text in effective.exclude_processes:
            if selectors.parse(text).matches(process):
                sources = list(origins.get(text, []))
                matched.append({'selector': text, 'sources': sources})
                by.extend(s for s in sources if s not in by)
    by.sort(key=SOURCES.index)
    return {'process': describe_process(process), 'excluded': bool(by),
            'by': by, 'selectors': matched}


def describe_process(process: selectors.Process) -> str:
    """``name=...,pid=...,exe=...,uid=...,cgroup=...`` of what is known."""
    fields = (('name', process.comm), ('pid', process.pid),
              ('exe', process.exe), ('uid', process.uid),
              ('cgroup', process.cgroup))
    return ','.join('%s=%s' % (k, v) for k, v in fields if v is not None)
