"""Parse JSON from an untrusted writer with a bound on its nesting.

:func:`json.loads` recurses once per nested array or object; a document
nested 100,000 deep ends in a RecursionError at best. :func:`loads`
measures the nesting first, in chunks with numpy (brackets outside
strings, escapes taken into account), and parses only a document within
the bound.
"""

import json

import numpy as np

__all__ = ['TooDeep', 'depth', 'loads']

#: Bytes scanned at a time.
CHUNK = 4 * 1024 * 1024

_QUOTE, _BACKSLASH = ord('"'), ord('\\')
_OPEN = (ord('['), ord('{'))
_CLOSE = (ord(']'), ord('}'))


class TooDeep(ValueError):
    """The document nests deeper than allowed."""


def depth(data: bytes, limit: int) -> int:
    """The deepest nesting of ``data`` (0 for a scalar), or the first
    depth above ``limit`` once it is reached (the scan stops there).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    in_string = 0           # 1 while inside a string
    escapes = 0             # backslashes just before this chunk
    level = deepest = 0
    for pos in range(0, len(buf), CHUNK):
        c = buf[pos:pos + CHUNK]
        n = len(c)
        idx = np.arange(n, dtype=np.int64)
        not_bs = c != _BACKSLASH
        # The index of the last non-backslash before each byte (-1: none
        # in this chunk), hence the run of backslashes before it.
        last = np.maximum.accumulate(np.where(not_bs, idx, -1))
        before = np.empty(n, dtype=np.int64)
        before[0] = -1
        before[1:] = last[:-1]
        run = idx - 1 - before
        run[before < 0] += escapes
        quote = (c == _QUOTE) & (run % 2 == 0)
        toggles = np.cumsum(quote, dtype=np.int64) + in_string
        outside = (toggles % 2 == 0) & ~quote
        step = (np.isin(c, _OPEN) & outside).astype(np.int8) - \
            (np.isin(c, _CLOSE) & outside).astype(np.int8)
        levels = np.cumsum(step, dtype=np.int64) + level
        if n:
            deepest = max(deepest, int(levels.max()))
            level = int(levels[-1])
            in_string = int(toggles[-1] % 2)
            escapes = escapes + n if last[-1] < 0 else n - 1 - int(last[-1])
        if deepest > limit:
            break
    return deepest


def loads(data: bytes, max_depth: int):
    """:func:`json.loads` of ``data`` nested at most ``max_depth`` deep.

    :raises TooDeep: it nests deeper.
    :raises ValueError: it is not JSON.
    """
    d = depth(data, max_depth)
    if d > max_depth:
        raise TooDeep('a document nested more than %d deep' % max_depth)
    return json.loads(data)
