"""Guest path rules: globs, negations, presets and scopes.

A rule list is a sequence of items:

``GLOB``
    a guest path glob, always matched against absolute guest paths:
    ``*`` any run of characters inside one path component (dot files
    included), ``?`` one character, ``[abc]`` / ``[!abc]`` a class (a
    literal ``[`` is ``[[]``); ``**`` as a whole component is zero or
    more components, except at the end, where ``/dir/**`` means
    "everything below dir" (not dir itself). A glob that does not start
    with ``/`` or ``**`` matches at any depth (``*.kdbx`` is
    ``**/*.kdbx``). ``.`` and ``..`` components, NUL characters, an
    unclosed ``[`` and ``**`` inside a component are refused, and so is a
    glob made of wildcards only (``*``, ``/*``, ``**/*``...): it would
    remove (almost) the whole file system.
``!GLOB``
    a negation: it keeps what the rules of its scope matched. A negation
    may cover everything (``!*`` keeps every path from the rules of its
    scope).
``preset:NAME``
    the globs of a preset (:mod:`.presets`); a preset's own negations
    narrow only the preset's globs.
``scope:LABEL``
    starts a new scope. A negation narrows only the rules of its own
    scope: this is how a merged policy keeps the operator's rules out of
    reach of the tenant's negations. A list starts in an unnamed scope.

A path is selected when, in some scope, it or a directory above it
matches a rule, and neither it nor a directory above it matches a
negation of that scope: a rule that names a directory covers its whole
tree, a negation that names a directory keeps its whole tree.
"""

import dataclasses
import posixpath
import re
from typing import Iterable, Iterator

from sparc_nova.vocabulary.errors import InvalidRule
from sparc_nova.vocabulary import presets as presets_mod

__all__ = ['NEGATION', 'PRESET_PREFIX', 'SCOPE_PREFIX', 'MAX_RULE_LENGTH',
           'PathRule', 'Scope', 'ScopedRules', 'Decider', 'check_glob',
           'check_item', 'glob_to_regex', 'literal_regex', 'parse_items',
           'selects_anything', 'covers']

NEGATION = '!'
PRESET_PREFIX = 'preset:'
SCOPE_PREFIX = 'scope:'
#: Longest glob or held path accepted (characters).
MAX_RULE_LENGTH = 4096
_SCOPE_LABEL_RE = re.compile(r'^[a-z][a-z0-9_-]{0,63}$')
_CLASS_RE = re.compile(r'\[!?\]?[^\]]*\]')


@dataclasses.dataclass(frozen=True)
class PathRule:
    """One glob as written.

    ``origin`` is ``'path'`` for a glob of the list, ``'preset:NAME'`` for
    a glob from a preset, ``'held'`` for a literal path (a file held open
    by an excluded process); ``pattern`` is the anchored regular
    expression of the glob without its ``!``.
    """
    text: str
    origin: str
    negated: bool
    pattern: str

    @property
    def source(self) -> str:
        """The disk engine's name for :attr:`origin`."""
        return self.origin

    @property
    def unit(self) -> str:
        """What reports count matches for: the glob, the preset as a
        whole, or the held path.
        """
        return self.origin if self.origin.startswith(PRESET_PREFIX) else \
            self.text


@dataclasses.dataclass
class Scope:
    """Rules narrowed by negations of the same scope only."""
    label: str
    includes: list[PathRule] = dataclasses.field(default_factory=list)
    excludes: list[PathRule] = dataclasses.field(default_factory=list)


# -- one glob -------------------------------------------------------------


def _class_end(component: str, start: int) -> int:
    """The index of the ``]`` closing the class opened at ``start``, or
    -1. A ``]`` right after ``[`` or ``[!`` is a character of the class.
    """
    first = start + 2 if component[start + 1:start + 2] == '!' else start + 1
    return component.find(']', first + 1)


def _unclosed_class(component: str) -> bool:
    i = 0
    while i < len(component):
        if component[i] == '[':
            end = _class_end(component, i)
            if end < 0:
                return True
            i = end
        i += 1
    return False


def _wildcards_only(component: str) -> bool:
    return not _CLASS_RE.sub('', component).replace('*', '').replace(
        '?', '')


def check_glob(glob: str, negated: bool = False) -> str | None:
    """Why ``glob`` (without its ``!``) is not a valid guest path glob,
    or None. ``negated``: the glob is a negation's, which may cover
    everything.
    """
    if len(glob) > MAX_RULE_LENGTH:
        return 'a guest path glob has at most %d characters' \
            % MAX_RULE_LENGTH
    if '\0' in glob:
        return 'a guest path glob contains no NUL character'
    components = [c for c in glob.split('/') if c]
    if not components or not glob.strip():
        return 'an empty glob, or one that names the root directory'
    if '..' in components or '.' in components:
        return 'a guest path glob has no "." or ".." components'
    for component in components:
        if '**' in component and component != '**':
            return '"**" must be a whole path component (as in /a/**/b)'
        if _unclosed_class(component):
            return 'an unclosed "[" (a literal "[" is written "[[]")'
    if not negated and all(_wildcards_only(c) for c in components):
        return 'this glob covers the whole file system'
    return None


_STAR = object()


def _class_regex(body: str) -> str:
    """The regex of a class ``[body]``: ``[!...]`` negates, and never
    matches ``/``; every other character is literal except ``-`` ranges.
    """
    negated = body.startswith('!')
    if negated:
        body = body[1:]
    body = ''.join('\\' + ch if ch in '\\[]^&~|' else ch for ch in body)
    return '[^/%s]' % body if negated else '[%s]' % body


def _component_tokens(component: str) -> list:
    """The regex fragments of one component, with :data:`_STAR` for each
    ``*`` (a ``*`` inside a class is a character of the class).
    """
    out: list = []
    i = 0
    while i < len(component):
        c = component[i]
        if c == '*':
            out.append(_STAR)
        elif c == '?':
            out.append('[^/]')
        elif c == '[':
            end = _class_end(component, i)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append(_class_regex(component[i + 1:end]))
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return out


def _linear(pieces: list[str], gap: str, last_gap: str) -> str:
    """``pieces`` joined by ``gap`` (any run of characters, or of
    components), matched without exponential backtracking: every piece
    but the last is found at its earliest place, in an atomic group.
    Each piece matches a fixed number of characters (components), so the
    earliest place is never worse than a later one.
    """
    out = pieces[0]
    for index, piece in enumerate(pieces[1:], 1):
        if index < len(pieces) - 1:
            out += '(?>%s*?%s)' % (gap, piece)
        else:
            out += last_gap + piece
    return out


def _component_regex(component: str) -> str:
    pieces = ['']
    for token in _component_tokens(component):
        if token is _STAR:
            pieces.append('')
        else:
            pieces[-1] += token
    return _linear(pieces, '[^/]', '[^/]*')


def glob_to_regex(glob: str) -> str:
    """The anchored regular expression (a string) for one glob without
    its ``!``. It compiles what :func:`check_glob` accepts, and matches in
    time linear in the path for a given glob (stars and ``**`` do not
    backtrack into each other). InvalidRule for an empty glob or one that
    matches ``/``.
    """
    glob = glob.strip()
    if not glob.startswith('/') and not glob.startswith('**'):
        glob = '**/' + glob
    components = [c for c in glob.split('/') if c]
    if not components:
        raise InvalidRule('glob %r matches the root directory' % glob)
    pieces = ['']
    for component in components:
        if component == '**':
            pieces.append('')
        else:
            pieces[-1] += '/' + _component_regex(component)
    if len(pieces) > 1 and pieces[-1] == '':
        # A final ``/**``: at least one component below.
        return '^' + _linear(pieces[:-1], '(?:/[^/]+)',
                             '(?:/[^/]+)*') + '(?:/[^/]+)+$'
    return '^' + _linear(pieces, '(?:/[^/]+)', '(?:/[^/]+)*') + '$'


def literal_regex(path: str) -> str:
    """The anchored regular expression of one literal absolute path."""
    return '^' + re.escape(posixpath.normpath(path)) + '$'


def covers(regex: 're.Pattern', path: str) -> bool:
    """Whether ``regex`` (of :func:`glob_to_regex`) matches absolute
    ``path`` or a directory above it.
    """
    while path not in ('/', ''):
        if regex.match(path):
            return True
        path = posixpath.dirname(path)
    return False


# -- items and lists -------------------------------------------------------


def check_item(item: str, allow_scopes: bool = True) -> str | None:
    """Why ``item`` is not a valid rule list item, or None.

    :param allow_scopes: whether ``scope:LABEL`` items are accepted (the
        policy's sources may not write them: the merge does)
    """
    if item.startswith(SCOPE_PREFIX):
        if not allow_scopes:
            return 'scope: items are written by the merge of the sources, ' \
                   'not by a source'
        if not _SCOPE_LABEL_RE.match(item[len(SCOPE_PREFIX):]):
            return 'a scope label is a lower-case word (a-z, 0-9, _, -)'
        return None
    if item.startswith(PRESET_PREFIX):
        name = item[len(PRESET_PREFIX):]
        if name not in presets_mod.PRESETS:
            return 'unknown preset %r; presets: %s' % (
                name, ', '.join(sorted(presets_mod.PRESETS)))
        return None
    negated = item.startswith(NEGATION)
    glob = item[1:] if negated else item
    if glob.startswith(PRESET_PREFIX):
        return 'a preset cannot be negated'
    return check_glob(glob, negated)


def _rule(text: str, origin: str) -> PathRule:
    negated = text.startswith(NEGATION)
    glob = text[1:] if negated else text
    reason = check_glob(glob, negated)
    if reason:
        raise InvalidRule('%r: %s' % (text, reason))
    return PathRule(text, origin, negated, glob_to_regex(glob))


def parse_items(items: Iterable[str], label: str = '') -> list[Scope]:
    """The scopes of a rule list (see the module docstring).

    Every preset becomes a scope of its own (its globs, its negations and
    the negations of the scope it is named in), labelled like that scope.
    Scopes without a rule that selects something are left out.

    :param label: the label of the list's first scope
    :raises InvalidRule: naming the first invalid item
    """
    sections: list[tuple[str, list[str]]] = [(label, [])]
    for item in items:
        if not isinstance(item, str):
            raise InvalidRule('a path rule is a string, not %r' % (item,))
        reason = check_item(item)
        if reason:
            raise InvalidRule('%r: %s' % (item, reason))
        if item.startswith(SCOPE_PREFIX):
            sections.append((item[len(SCOPE_PREFIX):], []))
        else:
            sections[-1][1].append(item)
    scopes = []
    for name, section in sections:
        globs = [i for i in section if not i.startswith(PRESET_PREFIX)]
        negations = [_rule(g, 'path') for g in globs
                     if g.startswith(NEGATION)]
        own = Scope(name, [_rule(g, 'path') for g in globs
                           if not g.startswith(NEGATION)], negations)
        scopes.append(own)
        for item in dict.fromkeys(i for i in section
                                  if i.startswith(PRESET_PREFIX)):
            preset = presets_mod.get(item[len(PRESET_PREFIX):])
            rules = [_rule(g, item) for g in preset.globs]
            scopes.append(Scope(
                name, [r for r in rules if not r.negated],
                [r for r in rules if r.negated] + negations))
    return [s for s in scopes if s.includes]


def selects_anything(items: Iterable[str]) -> bool:
    """Whether a rule list has an item that selects something (a glob or
    a preset; negations and scope markers select nothing).
    """
    return any(not (i.startswith(NEGATION) or i.startswith(SCOPE_PREFIX))
               for i in items)


# -- deciding paths ----------------------------------------------------------


class _Matcher:
    """Rules compiled into one expression; ``match`` names the first rule
    that matches a path.
    """

    def __init__(self, rules: list[PathRule]):
        self.rules = rules
        alternatives = ['(?P<r%d>%s)' % (i, r.pattern[1:-1])
                        for i, r in enumerate(rules)]
        self._regex = re.compile('^(?:%s)$' % '|'.join(alternatives),
                                 re.DOTALL) if rules else None

    def match(self, path: str) -> PathRule | None:
        if self._regex is None:
            return None
        m = self._regex.match(path)
        return self.rules[int(m.lastgroup[1:])] if m else None


class ScopedRules:
    """Compiled scopes; :meth:`decider` decides paths."""

    def __init__(self, scopes: list[Scope]):
        self.scopes = scopes
        self._compiled = [(_Matcher(s.includes), _Matcher(s.excludes))
                          for s in scopes]

    def decider(self) -> 'Decider':
        """A decider with caches of its own (for one tree listing)."""
        return Decider(self)


class Decider:
    """Decides paths against :class:`ScopedRules`, caching the decision
    of every directory above the paths it saw.
    """

    def __init__(self, rules: ScopedRules):
        self._rules = rules
        self._covered: list[dict[str, PathRule | None]] = [
            {} for _ in rules.scopes]
        self._kept: list[dict[str, bool]] = [{} for _ in rules.scopes]

    def _cover(self, index: int, path: str) -> PathRule | None:
        if path == '/':
            return None
        cache = self._covered[index]
        if path not in cache:
            cache[path] = (self._rules._compiled[index][0].match(path)
                           or self._cover(index, posixpath.dirname(path)))
        return cache[path]

    def _negated(self, index: int, path: str) -> bool:
        if path == '/':
            return False
        cache = self._kept[index]
        if path not in cache:
            cache[path] = bool(
                self._rules._compiled[index][1].match(path)
                or self._negated(index, posixpath.dirname(path)))
        return cache[path]

    def selecting(self, path: str) -> Iterator[tuple[Scope, PathRule]]:
        """Every scope that selects absolute ``path``, with the rule that
        covers it there, in scope order.
        """
        for index, scope in enumerate(self._rules.scopes):
            rule = self._cover(index, path)
            if rule is not None and not self._negated(index, path):
                yield scope, rule

    def explain(self, path: str
                ) -> Iterator[tuple[Scope, PathRule, PathRule | None]]:
        """Every scope with a rule that covers absolute ``path``: the
        scope, that rule, and the negation that keeps the path (None when
        the scope selects it).
        """
        for index, scope in enumerate(self._rules.scopes):
            rule = self._cover(index, path)
            if rule is None:
                continue
            keeper, current = None, path
            while keeper is None and current != '/':
                keeper = self._rules._compiled[index][1].match(current)
                current = posixpath.dirname(current)
            yield scope, rule, keeper

    def first(self, path: str) -> PathRule | None:
        """The rule that selects ``path`` in the first scope that does."""
        for _, rule in self.selecting(path):
            return rule
        return None
