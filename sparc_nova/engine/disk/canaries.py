"""Canaries: short byte strings sampled from files before they are
removed, searched for in the scrubbed image afterwards.

A canary is at most :data:`MAX_BYTES` long, holds no newline, carriage
return or NUL (scanners split on them) and has at least
:data:`MIN_DISTINCT` distinct bytes (runs of one byte or a short pattern
would match unrelated data). Windows are read at the start, the end and
evenly spaced offsets of each file; a file whose sampled windows hold no
usable string has no content canary. Canary bytes are never logged.
"""

import dataclasses
import re

__all__ = ['MAX_BYTES', 'MIN_BYTES', 'MIN_DISTINCT', 'WINDOW',
           'WHOLE_FILE_BYTES', 'MIN_NAME_BYTES', 'Canary', 'usable',
           'best_piece', 'window_offsets', 'windows', 'from_windows',
           'name_canary']

MAX_BYTES = 32
MIN_BYTES = 12
MIN_DISTINCT = 6
#: Bytes read per window: enough to find a usable run in text files.
WINDOW = 256
#: Files up to this size (bytes) are read whole, larger ones by window.
WHOLE_FILE_BYTES = 64 * 1024
#: Shortest file name used as a canary.
MIN_NAME_BYTES = 8

_SEPARATORS = re.compile(b'[\\n\\r\\x00]')


@dataclasses.dataclass(frozen=True)
class Canary:
    """``data`` and the removed path it came from (``kind``: content or
    name).
    """
    data: bytes
    kind: str
    path: str


def usable(piece: bytes) -> bool:
    """Whether ``piece`` can serve as a canary: at least
    :data:`MIN_BYTES` long, :data:`MIN_DISTINCT` distinct bytes, and no
    line or string separator (a scan reads it as one run).
    """
    return len(piece) >= MIN_BYTES and len(set(piece)) >= MIN_DISTINCT \
        and not _SEPARATORS.search(piece)


def best_piece(window: bytes) -> bytes | None:
    """The most distinctive usable run of ``window``, cut to MAX_BYTES."""
    best = None
    for piece in _SEPARATORS.split(window):
        for start in range(0, max(1, len(piece) - MAX_BYTES + 1), MAX_BYTES):
            candidate = piece[start:start + MAX_BYTES]
            if usable(candidate) and (
                    best is None or len(set(candidate)) > len(set(best))):
                best = candidate
    return best


def window_offsets(size: int, count: int) -> list[int]:
    """``count`` window offsets spread over a file of ``size`` bytes,
    first and last windows included.
    """
    if size <= WINDOW or count <= 1:
        return [0]
    last = size - WINDOW
    return sorted({last * i // (count - 1) for i in range(count)})


def windows(path: str, size: int, count: int) -> list[tuple[str, int, int]]:
    """The ``(path, offset, length)`` windows to read from one file."""
    return [(path, offset, min(WINDOW, size - offset))
            for offset in window_offsets(size, count)]


def from_windows(path: str, datas: list[bytes]) -> list[Canary]:
    """Content canaries of one file from the bytes of its windows."""
    found = []
    for data in datas:
        piece = best_piece(data)
        if piece is not None and all(c.data != piece for c in found):
            found.append(Canary(piece, 'content', path))
    return found


def name_canary(path: str) -> Canary | None:
    """The file name as a canary, when long and distinctive enough."""
    name = path.rsplit('/', 1)[-1].encode('utf-8', 'surrogateescape')
    if len(name) < MIN_NAME_BYTES or len(set(name)) < MIN_DISTINCT \
            or _SEPARATORS.search(name):
        return None
    return Canary(name, 'name', path)
