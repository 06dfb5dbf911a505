"""Which guest paths a disk scrub removes.

The rule grammar (globs, ``!`` negations, ``preset:NAME``,
``scope:LABEL``) is the shared vocabulary's:
:mod:`sparc_nova.vocabulary.paths` documents it. In short, a path is
removed when, in some scope, it or a directory above it matches a rule
and neither it nor a directory above it matches a negation of that
scope; a preset's own negations narrow only that preset. Directories
themselves are removed only when they are covered and end up empty.

Paths of files held open by excluded processes (from the memory engine)
are literal paths, not globs, and no negation keeps them.
"""

import dataclasses
import re
from typing import Iterable

from sparc_nova.vocabulary import paths
from sparc_nova.vocabulary.paths import glob_to_regex
from sparc_nova.vocabulary.paths import PathRule as Rule

__all__ = ['Rule', 'Rules', 'Selection', 'glob_to_regex']


class Rules:
    """The compiled rules of one scrub.

    :param globs: rule list items (globs, ``!`` negations, and
        ``preset:NAME`` / ``scope:LABEL`` items, see
        :mod:`sparc_nova.vocabulary.paths`).
    :param preset_names: names from :data:`presets.PRESETS`, added to the
        first scope of ``globs``.
    :param held_paths: absolute guest paths of files held open by
        excluded processes (literal; a missing one is reported, never an
        error).
    :param strict: a caller glob or preset that matches nothing makes
        the scrub fail instead of being reported.
    :raises ValueError: an unknown preset or a malformed glob
        (:class:`~sparc_nova.vocabulary.InvalidRule`), or nothing that
        selects anything.
    """

    def __init__(self, globs: Iterable[str] = (),
                 preset_names: Iterable[str] = (),
                 held_paths: Iterable[str] = (), strict: bool = False):
        items = list(globs)
        presets = [paths.PRESET_PREFIX + n for n in preset_names]
        first_scope = next((i for i, item in enumerate(items)
                            if item.startswith(paths.SCOPE_PREFIX)),
                           len(items))
        items[first_scope:first_scope] = presets
        scopes = paths.parse_items(items)
        held = []
        for path in held_paths:
            if not path.startswith('/') or len(path) > paths.MAX_RULE_LENGTH:
                raise ValueError('held path %r is not absolute' % path)
            held.append(Rule(path, 'held', False, paths.literal_regex(path)))
        if held:
            scopes.append(paths.Scope('held', held))
        self.strict = strict
        self._scoped = paths.ScopedRules(scopes)
        self.rules = [r for s in scopes for r in s.includes + s.excludes]
        if not scopes:
            raise ValueError('no rule selects anything: give at least one '
                             'glob, preset or held path')

    @property
    def units(self) -> list[str]:
        """Every reportable unit (glob, ``preset:NAME``, held path), in
        rule order, without repeats.
        """
        return list(dict.fromkeys(r.unit for r in self.rules
                                  if not r.negated))

    def select(self, paths_: Iterable[str]) -> 'Selection':
        """Decide every path of one filesystem tree.

        ``paths_`` are absolute guest paths; parents need not be listed
        before children. Returns which are removed and by which rule.
        """
        decider = self._scoped.decider()
        selection = Selection()
        for path in paths_:
            rule = decider.first(path)
            if rule is not None:
                selection.removed[path] = rule
                selection.counts[rule.unit] = \
                    selection.counts.get(rule.unit, 0) + 1
            else:
                selection.kept.append(path)
        return selection

    def matches_anything(self, paths_: list[str],
                         known: set[str] = frozenset()) -> set[str]:
        """The units that match at least one of ``paths_`` on their own
        (a rule shadowed by an earlier one still counts). ``paths_`` must
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
            if any(regex.match(path) for path in paths_):
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
