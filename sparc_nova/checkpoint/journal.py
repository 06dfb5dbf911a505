"""A redo journal that makes in-place page patching crash safe.

Patching a checkpoint in place writes many pages; a crash half way would
leave some pages old and some new. Before the first write, every patch is
written to a journal next to the checkpoint and fsync'd; then the pages
are written and fsync'd; then the journal is removed. :func:`recover`
finishes an interrupted run by replaying a complete journal (roll
forward), or discards a journal that was never completed (the checkpoint
was not touched yet). Either way the checkpoint ends up as the original or
as the completely patched file.

Patches come in groups that share their content (typically every
scrubbed page is zero), so a journal stays small. Layout (little endian)::

    8s  b'SPARCJNL'   u32 version (2)   u32 group count
    u64 target size   u64 target inode
    groups: u8 kind, u8 fill byte, u32 count,
            [4096 content bytes if kind is FULL_PAGE],
            count x u64 file offsets
    32s SHA-256 of everything before it
"""

import dataclasses
import hashlib
import mmap
import os
import struct

import numpy as np
from numpy.lib import stride_tricks

from sparc_nova import exception

MAGIC = b'SPARCJNL'
VERSION = 2
PAGE_SIZE = 4096
_HEAD = struct.Struct('<8sIIQQ')
_GROUP = struct.Struct('<BBI')

#: Group kinds: 4096 bytes of one value / one byte / given 4096 bytes at
#: each offset.
FILL_PAGE, FILL_BYTE, FULL_PAGE = 1, 2, 3
_LENGTH = {FILL_PAGE: PAGE_SIZE, FILL_BYTE: 1, FULL_PAGE: PAGE_SIZE}


@dataclasses.dataclass
class Group:
    """Patches of one content at many file offsets."""

    kind: int
    offsets: np.ndarray
    fill: int = 0
    content: bytes | None = None


def journal_path(path: str) -> str:
    """Where the journal of checkpoint ``path`` lives."""
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, '.%s.sparc-journal' % base)


def fsync_dir(path: str) -> None:
    """fsync the directory holding ``path`` (makes a rename durable)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: str, groups: list[Group]) -> str:
    """Write and fsync the journal of ``groups`` for checkpoint ``path``;
    return the journal's path.
    """
    st = os.stat(path)
    h = hashlib.sha256()
    jpath = journal_path(path)
    tmp = jpath + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, 'wb') as f:
            def put(b):
                h.update(b)
                f.write(b)
            put(_HEAD.pack(MAGIC, VERSION, len(groups), st.st_size,
                           st.st_ino))
            for g in groups:
                if g.kind == FULL_PAGE and len(g.content or b'') != \
                        PAGE_SIZE:
                    raise ValueError('a full-page group needs 4096 bytes')
                put(_GROUP.pack(g.kind, g.fill, len(g.offsets)))
                if g.kind == FULL_PAGE:
                    put(g.content)
                put(np.asarray(g.offsets, dtype='<u8').tobytes())
            f.write(h.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, jpath)
        fsync_dir(jpath)
    except BaseException:
        for p in (tmp, jpath):
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    return jpath


def _read(path: str, jpath: str) -> list[Group] | None:
    """The journal's groups, or None if it is incomplete or not ours."""
    with open(jpath, 'rb') as f:
        data = f.read()
    if len(data) < _HEAD.size + 32:
        return None
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        return None
    magic, version, count, size, ino = _HEAD.unpack_from(body)
    if magic != MAGIC or version != VERSION:
        return None
    st = os.stat(path)
    if (st.st_size, st.st_ino) != (size, ino):
        raise exception.CheckpointError(
            path, 'the in-place journal %s belongs to another version of '
                  'this file (size or inode differ); remove it by hand after '
                  'checking' % jpath)
    groups = []
    pos = _HEAD.size
    for _ in range(count):
        kind, fill, n = _GROUP.unpack_from(body, pos)
        pos += _GROUP.size
        content = None
        if kind == FULL_PAGE:
            content = body[pos:pos + PAGE_SIZE]
            pos += PAGE_SIZE
        offsets = np.frombuffer(body, dtype='<u8', count=n,
                                offset=pos).astype(np.int64)
        pos += 8 * n
        if kind not in _LENGTH or (
                n and int(offsets.max()) + _LENGTH[kind] > size):
            raise exception.CheckpointError(
                path, 'in-place journal %s patches beyond the end of the '
                      'file' % jpath)
        groups.append(Group(kind, offsets, fill, content))
    return groups


def fill_rows(buf: np.ndarray, starts: np.ndarray, length: int,
              value) -> None:
    """Set ``buf[s:s+length] = value`` for every s in ``starts`` (value: a
    byte, or ``length`` bytes as a uint8 array), without a Python loop per
    row.
    """
    if not len(starts):
        return
    rows = stride_tricks.as_strided(buf, shape=(len(buf) - length + 1,
                                                length), strides=(1, 1))
    for i in range(0, len(starts), 4096):
        rows[starts[i:i + 4096]] = value


def apply(path: str, groups: list[Group]) -> None:
    """Write the groups' patches into ``path`` (through a shared mapping,
    so that millions of pages cost one pass of memory writes) and fsync
    it.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            arr = np.frombuffer(mm, dtype=np.uint8)
            for g in groups:
                offs = np.asarray(g.offsets, dtype=np.int64)
                if g.kind == FILL_BYTE:
                    arr[offs] = g.fill
                elif g.kind == FILL_PAGE:
                    fill_rows(arr, offs, PAGE_SIZE, g.fill)
                else:
                    fill_rows(arr, offs, PAGE_SIZE,
                              np.frombuffer(g.content, dtype=np.uint8))
            # The mapping cannot close while an array still views it.
            del arr
            mm.flush()
        finally:
            mm.close()
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str) -> None:
    """Remove the journal of ``path`` once its patches are on disk."""
    jpath = journal_path(path)
    os.unlink(jpath)
    fsync_dir(jpath)


def pending(path: str) -> bool:
    """Whether an interrupted in-place patch of ``path`` needs recovery."""
    return os.path.exists(journal_path(path))


def recover(path: str) -> str | None:
    """Finish or discard an interrupted in-place patch of ``path``.

    :returns: ``'replayed'`` (the patches are now all in the file),
        ``'discarded'`` (an incomplete journal: the file was never
        touched) or None (no journal).
    """
    jpath = journal_path(path)
    if os.path.exists(jpath + '.tmp'):
        os.unlink(jpath + '.tmp')
    if not os.path.exists(jpath):
        return None
    groups = _read(path, jpath)
    if groups is None:
        os.unlink(jpath)
        fsync_dir(jpath)
        return 'discarded'
    apply(path, groups)
    remove(path)
    return 'replayed'
