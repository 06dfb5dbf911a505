"""Keep guest file names out of the error messages of a disk scrub.

When a step in the appliance fails, the message of the tool that failed
(``shred``, ``rm``, ``e2fsck``, a libguestfs call) is the best clue to
why, and it often names the file it was working on: the very file the
policy hides, whose name can be a secret itself. :class:`Redactor` cleans
such text before it goes into an exception (and from there into logs,
reports, notifications and instance faults):

- every path-like token (a run of non-blank characters holding a ``/``)
  becomes ``<path>``, except device names (``/dev/...``), which say
  which volume failed and are the image's, not the guest's files;
- every quoted string (``'...'``, ``"..."``, ```...'``, ``‘...’``)
  becomes ``<name>``: tools quote the names they complain about;
- every name the scrub knows to be sensitive (each path a rule selected,
  its last component, and each literal segment of the caller's globs and
  held paths) becomes ``<redacted>`` wherever it is left.

The result is also escaped (:func:`sparc_nova.printable.printable`).
"""

import re

from sparc_nova.printable import printable

__all__ = ['Redactor']

#: A path-like token; device names are kept.
_PATH_TOKEN = re.compile(r'(?<!\S)(?!/dev/)[^\s/]*/\S*')
#: A quoted string, as tools quote file names.
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^'`\n]*'|‘[^’\n]*’")
#: Glob syntax between the literal segments of a rule.
_GLOB_SYNTAX = re.compile(r'[/*?\[\]{}!,]+')
#: Shorter literal segments are not redacted on their own (they would
#: turn every word of a message into ``<redacted>``); whole paths and
#: quoted names are redacted whatever their length.
_MIN_SEGMENT = 3
#: Longest message kept, characters.
MAX_MESSAGE = 800


class Redactor:
    """The sensitive names of one scrub, and the cleaning of messages."""

    def __init__(self, rule_texts=()):
        self._names: set[str] = set()
        for text in rule_texts:
            self.add_rule(text)

    def add_rule(self, text: str) -> None:
        """A caller's glob or held path: the whole text and its literal
        segments are sensitive.
        """
        text = text.lstrip('!')
        self._names.add(text)
        self._names.update(s for s in _GLOB_SYNTAX.split(text)
                           if len(s) >= _MIN_SEGMENT)

    def add_paths(self, paths) -> None:
        """Guest paths a rule selected: each, and its last component."""
        for path in paths:
            self._names.add(path)
            base = path.rstrip('/').rpartition('/')[2]
            if base:
                self._names.add(base)

    def clean(self, text) -> str:
        """``text`` (an appliance or tool message) with paths, quoted
        names and sensitive names replaced, escaped and cut to
        :data:`MAX_MESSAGE` characters.
        """
        text = str(text)
        text = _QUOTED.sub('<name>', text)
        text = _PATH_TOKEN.sub('<path>', text)
        for name in sorted(self._names, key=len, reverse=True):
            if name:
                text = text.replace(name, '<redacted>')
        return printable(text, limit=MAX_MESSAGE)
