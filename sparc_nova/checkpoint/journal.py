"""A redo journal that makes in-place page patching crash safe.

Patching a checkpoint in place writes many pages; a crash half way would
leave some pages old and some new. Before the first write, every patch is
written to a journal next to the checkpoint and fsync'd; then the pages
are written and fsync'd; then the journal is removed. :func:`recover`
finishes an interrupted run by replaying a complete journal (roll
forward), or discards a journal that was never completed (the checkpoint
was not touched yet). Either way the checkpoint ends up as the original or
as the completely patched file.

Journal layout (little endian)::

    8s  b'SPARCJNL'   u32 version (1)   u32 entry count
    u64 target size   u64 target inode
    entries: u64 file offset, u8 kind (0: 4096 bytes follow,
             1: one fill byte follows)
    32s SHA-256 of everything before it
"""

import hashlib
import os
import struct

from sparc_nova import exception

MAGIC = b'SPARCJNL'
VERSION = 1
PAGE_SIZE = 4096
_HEAD = struct.Struct('<8sIIQQ')
_ENTRY = struct.Struct('<QB')
_FULL, _FILL = 0, 1


def journal_path(path: str) -> str:
    """Where the journal of checkpoint ``path`` lives."""
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, '.%s.sparc-journal' % base)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: str, patches: list[tuple[int, bytes]]) -> str:
    """Write and fsync the journal for ``patches`` ((file offset, 4096
    bytes) pairs) to checkpoint ``path``; return the journal's path.
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
            put(_HEAD.pack(MAGIC, VERSION, len(patches), st.st_size,
                           st.st_ino))
            for off, data in patches:
                if len(data) != PAGE_SIZE:
                    raise ValueError('journal entries are whole pages')
                if data == bytes([data[0]]) * PAGE_SIZE:
                    put(_ENTRY.pack(off, _FILL) + data[:1])
                else:
                    put(_ENTRY.pack(off, _FULL) + data)
            f.write(h.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, jpath)
        _fsync_dir(jpath)
    except BaseException:
        for p in (tmp, jpath):
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    return jpath


def _read(path: str, jpath: str):
    """The journal's patches, or None if it is incomplete or not ours."""
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
    patches = []
    pos = _HEAD.size
    for _ in range(count):
        off, kind = _ENTRY.unpack_from(body, pos)
        pos += _ENTRY.size
        if kind == _FILL:
            patches.append((off, body[pos:pos + 1] * PAGE_SIZE))
            pos += 1
        else:
            patches.append((off, body[pos:pos + PAGE_SIZE]))
            pos += PAGE_SIZE
        if off + PAGE_SIZE > size:
            raise exception.CheckpointError(
                path, 'in-place journal %s patches beyond the end of the '
                      'file' % jpath, off)
    return patches


def apply(path: str, patches: list[tuple[int, bytes]]) -> None:
    """Write the patches into ``path`` and fsync it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for off, data in patches:
            if os.pwrite(fd, data, off) != len(data):
                raise exception.CheckpointError(path, 'short write', off)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str) -> None:
    """Remove the journal of ``path`` once its patches are on disk."""
    jpath = journal_path(path)
    os.unlink(jpath)
    _fsync_dir(jpath)


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
    for leftover in (jpath + '.tmp',):
        if os.path.exists(leftover):
            os.unlink(leftover)
    if not os.path.exists(jpath):
        return None
    patches = _read(path, jpath)
    if patches is None:
        os.unlink(jpath)
        _fsync_dir(jpath)
        return 'discarded'
    apply(path, patches)
    remove(path)
    return 'replayed'
