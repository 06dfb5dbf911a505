"""Which guest paths a disk scrub removes.

Syntax of a glob (always matched against absolute guest paths):

* ``*`` any run of characters inside one path component (dot files
  included), ``?`` one character, ``[abc]`` / ``[!abc]`` a class;
* ``**`` as a whole component: zero or more components, except at the
  end, where ``/dir/**`` means "everything below dir" (not dir itself);
* a glob that does not start with ``/`` or ``**`` matches at any depth
  (``*.kdbx`` is ``**/*.kdbx``);
* a leading ``!`` makes a negation.

A path is removed when it, or a directory above it, matches a rule, and
neither it nor a directory above it matches a negation: a rule that
names a directory covers its whole tree, and a negation that names a
directory keeps its whole tree. Directories themselves are removed only
when they are covered and end up empty.

Paths of files held open by excluded processes (from the memory engine)
are literal paths, not globs.
"""

import dataclasses
import posixpath
import re
from typing import Iterable

from sparc_nova.engine.disk import presets


@dataclasses.dataclass(frozen=True)
class Rule:
    """One glob as the caller wrote it.

    ``source`` is ``'path'`` for a caller glob, ``'preset:NAME'`` for a
    glob from a preset, ``'held'`` for a held-open file's path.
    """
    text: str
    source: str
    negated: bool
    pattern: str

    @property
    def unit(self) -> str:
        """What reports count matches for: the glob, the preset as a
        whole, or the held path.
        """
        return self.source if self.source.startswith('preset:') else \
            self.text


def _component_regex(component: str) -> str:
    out = []
    i = 0
    while i < len(component):
        c = component[i]
        if c == '*':
            out.append('[^/]*')
        elif c == '?':
            out.append('[^/]')
        elif c == '[':
            end = component.find(']', i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = component[i + 1:end]
                if body.startswith('!'):
                    body = '^' + body[1:]
                out.append('[%s]' % body.replace('\\', '\\\\'))
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return ''.join(out)


def glob_to_regex(glob: str) -> str:
    """The anchored regular expression (a string) for one glob without
    its ``!``. ValueError for an empty glob or one that matches ``/``.
    """
    glob = glob.strip()
    if not glob.startswith('/') and not glob.startswith('**'):
        glob = '**/' + glob
    components = [c for c in glob.split('/') if c]
    if not components:
        raise ValueError('glob %r matches the root directory' % glob)
    parts = []
    for i, component in enumerate(components):
        if component == '**':
            last = i == len(components) - 1
            parts.append('(?:/[^/]+)+' if last else '(?:/[^/]+)*')
        else:
            parts.append('/' + _component_regex(component))
    return '^' + ''.join(parts) + '$'


def _literal_regex(path: str) -> str:
    return '^' + re.escape(posixpath.normpath(path)) + '$'


def _make_rule(text: str, source: str) -> Rule:
    negated = text.startswith('!')
    glob = text[1:] if negated else text
    if not glob.strip():
        raise ValueError('empty rule %r' % text)
    return Rule(text, source, negated, glob_to_regex(glob))


class _Matcher:
    """All rules of one kind compiled into one expression; ``match``
    names the first rule that matches a path.
    """

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        alternatives = ['(?P<r%d>%s)' % (i, r.pattern[1:-1])
                        for i, r in enumerate(rules)]
        self._regex = re.compile('^(?:%s)$' % '|'.join(alternatives),
                                 re.DOTALL) if rules else None

    def match(self, path: str) -> Rule | None:
        if self._regex is None:
            return None
        m = self._regex.match(path)
        return self.rules[int(m.lastgroup[1:])] if m else None


class Rules:
    """The compiled rules of one scrub.

    :param globs: caller globs (negations with a leading ``!``).
    :param preset_names: names from :data:`presets.PRESETS`.
    :param held_paths: absolute guest paths of files held open by
        excluded processes (literal; a missing one is reported, never an
        error).
    :param strict: a caller glob or preset that matches nothing makes
        the scrub fail instead of being reported.
    :raises ValueError: an unknown preset or a malformed glob.
    """

    def __init__(self, globs: Iterable[str] = (),
                 preset_names: Iterable[str] = (),
                 held_paths: Iterable[str] = (), strict: bool = False):
        rules = [_make_rule(g, 'path') for g in globs]
        for name in preset_names:
            try:
                preset = presets.get(name)
            except KeyError as e:
                raise ValueError(e.args[0]) from None
            rules.extend(_make_rule(g, 'preset:' + name)
                         for g in preset.globs)
        for path in held_paths:
            if not path.startswith('/'):
                raise ValueError('held path %r is not absolute' % path)
            rules.append(Rule(path, 'held', False, _literal_regex(path)))
        self.strict = strict
        self.rules = rules
        self._include = _Matcher([r for r in rules if not r.negated])
        self._exclude = _Matcher([r for r in rules if r.negated])
        if not self._include.rules:
            raise ValueError('no rule selects anything: give at least one '
                             'glob, preset or held path')

    @property
    def units(self) -> list[str]:
        """Every reportable unit (glob, ``preset:NAME``, held path), in
        rule order, without repeats.
        """
        return list(dict.fromkeys(r.unit for r in self.rules
                                  if not r.negated))

    def select(self, paths: Iterable[str]) -> 'Selection':
        """Decide every path of one filesystem tree.

        ``paths`` are absolute guest paths; parents need not be listed
        before children. Returns which are removed and by which rule.
        """
        covered: dict[str, Rule | None] = {}
        kept_by_negation: dict[str, bool] = {}

        def cover(path: str) -> Rule | None:
            if path == '/':
                return None
            if path not in covered:
                covered[path] = (self._include.match(path)
                                 or cover(posixpath.dirname(path)))
            return covered[path]

        def negated(path: str) -> bool:
            if path == '/':
                return False
            if path not in kept_by_negation:
                kept_by_negation[path] = bool(
                    self._exclude.match(path)
                    or negated(posixpath.dirname(path)))
            return kept_by_negation[path]

        selection = Selection()
        for path in paths:
            rule = cover(path)
            if rule is not None and not negated(path):
                selection.removed[path] = rule
                selection.counts[rule.unit] = \
                    selection.counts.get(rule.unit, 0) + 1
            else:
                selection.kept.append(path)
        return selection

    def matches_anything(self, paths: list[str],
                         known: set[str] = frozenset()) -> set[str]:
        """The units that match at least one of ``paths`` on their own (a
        rule shadowed by an earlier one still counts). ``paths`` must
        list directories too (as a tree listing does); units in ``known``
        are taken as matching without looking.
        """
        found = set(known)
        by_unit: dict[str, list[str]] = {}
        for rule in self.rules:
            if not rule.negated and rule.unit not in found:
                by_unit.setdefault(rule.unit, []).append(rule.pattern)
        for unit, patterns in by_unit.items():
            regex = re.compile('|'.join(patterns), re.DOTALL)
            if any(regex.match(path) for path in paths):
                found.add(unit)
        return found


@dataclasses.dataclass
class Selection:
    """The outcome of :meth:`Rules.select` for one tree.

    ``removed`` maps each removed path to the rule that covers it;
    ``kept`` lists the other paths; ``counts`` counts removed paths per
    rule unit.
    """
    removed: dict[str, Rule] = dataclasses.field(default_factory=dict)
    kept: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
