"""Guest strings made safe to print and to log.

Process names, file names and kernel strings come from the guest (or from
a tenant) and may hold anything: a terminal escape sequence that rewrites
the operator's screen, a newline that forges a log line, a bidirectional
override that shows a name backwards. :func:`printable` escapes them so
that what is shown is exactly what the guest wrote, as visible text.
"""

import unicodedata

__all__ = ['printable']

#: Characters shown as escapes besides the control characters (Unicode
#: categories Cc and Cf cover C0, DEL, C1, bidi controls and zero-width
#: characters): line and paragraph separators (Zl, Zp).
_ESCAPED_CATEGORIES = ('Cc', 'Cf', 'Zl', 'Zp', 'Cs', 'Co', 'Cn')

_SHORT = {'\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\'}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if 0xdc80 <= code <= 0xdcff:
        # A byte that was not UTF-8 (decoded with surrogateescape).
        return '\\x%02x' % (code - 0xdc00)
    if code <= 0xff:
        return '\\x%02x' % code
    if code <= 0xffff:
        return '\\u%04x' % code
    return '\\U%08x' % code


def printable(text, limit: int | None = None) -> str:
    """``text`` (any object; str() of it) with every control, format,
    separator, surrogate, private-use or unassigned character escaped as
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN`` (``\\n``, ``\\r``, ``\\t``
    for those), and backslashes doubled, so that the result shows on a
    terminal or in a log line as one line of visible text and can be
    read back unambiguously.

    :param limit: cut the result to at most this many characters (an
        escape is never cut in half; ``...`` marks the cut).
    """
    text = str(text)
    if text.isprintable() and '\\' not in text:
        pieces = text
    else:
        pieces = [_escape(ch) if ch in _SHORT or unicodedata.category(ch)
                  in _ESCAPED_CATEGORIES else ch for ch in text]
    if limit is None or sum(map(len, pieces)) <= limit:
        return ''.join(pieces)
    out, size = [], 0
    for piece in pieces:
        if size + len(piece) > limit - 3:
            break
        out.append(piece)
        size += len(piece)
    return ''.join(out) + '...'
