"""A redo journal that makes in-place page patching crash safe.

Patching a checkpoint in place writes many pages; a crash half way would
leave some pages old and some new. Before the first write, every patch is
written to a journal next to the checkpoint and fsync'd; then the pages
are written and fsync'd; then the journal is removed. :func:`recover`
finishes an interrupted run by replaying the journal (roll forward), or
discards the journal's temporary when the journal was never completed
(the checkpoint was not touched yet). Either way the checkpoint ends up as
the original or as the completely patched file.

The journal is written by root (the privsep daemon) and replayed by root,
into a file it names: it is hostile input unless it is ours. So:

* the journal and its temporary are created ``O_EXCL|O_NOFOLLOW``, mode
  0600, in a directory owned by root or the running user that no one else
  may write (:func:`.tempfiles.check_private_directory`): the
  checkpoint's own directory, or, where that one is not private (the
  QEMU user's managed-save directory on Debian), a journal directory of
  root's (``[sparc] journal_dir``) where the journal is named after the
  checkpoint's path (:func:`journal_path`); a symbolic link or any file
  already in their place is refused, never followed;
* a journal is replayed only when it is a regular file with one link,
  owned by root or the running user, mode 0600 or stricter, and its
  HMAC-SHA256 under the journal key (``[sparc] journal_key_file``, see
  :func:`load_key`) matches: a planted journal is refused and left for
  the operator to inspect;
* the MAC covers the target's size, inode and device: a journal of
  another file, or of another version of this one, is refused.

Patches come in groups that share their content (typically every
scrubbed page is zero), so a journal stays small; pages that each have
their own content (an unseal puts back a GiB of them) come in one group
that holds them all, one after the other. Layout (little endian)::

    8s  b'SPARCJNL'   u32 version (4)   u32 group count
    u64 target size   u64 target inode   u64 target device
    groups: u8 kind, u8 fill byte, u32 count,
            [4096 content bytes if kind is FULL_PAGE],
            [count x 4096 content bytes if kind is PAGES],
            count x u64 file offsets
    32s HMAC-SHA256 of everything before it, under the journal key

A version 3 journal (no PAGES group; left by a crash before an upgrade)
is still replayed.
"""

import dataclasses
import errno
import hashlib
import hmac
import mmap
import os
import re
import stat
import struct
import tempfile
import typing

import numpy as np
from numpy.lib import stride_tricks

from sparc_nova.checkpoint import tempfiles
from sparc_nova import exception

__all__ = ['MAGIC', 'VERSION', 'SUFFIX', 'PAGE_SIZE', 'FILL_PAGE',
           'FILL_BYTE', 'FULL_PAGE', 'PAGES', 'KEY_SIZE', 'MAC_SIZE', 'Group',
           'Identity', 'JournalRefused', 'journal_path', 'temporary_path',
           'target_name',
           'load_key', 'make_directory', 'encode', 'decode', 'decode_body',
           'max_journal_bytes', 'write', 'apply_to', 'apply', 'remove',
           'pending', 'recover', 'fill_rows']

MAGIC = b'SPARCJNL'
VERSION = 4
#: Versions replayed: 3 has no PAGES groups.
_READ_VERSIONS = (3, 4)
PAGE_SIZE = 4096
KEY_SIZE = 32
MAC_SIZE = 32
_HEAD = struct.Struct('<8sIIQQQ')
_GROUP = struct.Struct('<BBI')

#: Group kinds: 4096 bytes of one value / one byte / given 4096 bytes at
#: each offset / the i-th of given pages at the i-th offset.
FILL_PAGE, FILL_BYTE, FULL_PAGE, PAGES = 1, 2, 3, 4
_LENGTH = {FILL_PAGE: PAGE_SIZE, FILL_BYTE: 1, FULL_PAGE: PAGE_SIZE,
           PAGES: PAGE_SIZE}
#: Pages of a PAGES group asked for, written or applied at once.
_PAGES_BATCH = 256


class JournalRefused(exception.CheckpointError):
    """A journal next to a checkpoint is not one sparc-nova wrote with
    this key (or its file is not as sparc-nova makes it): it is not
    replayed and left in place.
    """


@dataclasses.dataclass
class Group:
    """Patches of one content at many file offsets (a PAGES group: of
    page ``i`` at offset ``i``, ``pages(i, n)`` giving pages ``i`` to
    ``i + n - 1`` one after the other, valid until the next call: they
    are asked for a batch at a time, never all held).
    """

    kind: int
    offsets: np.ndarray
    fill: int = 0
    content: bytes | None = None
    pages: typing.Callable[[int, int], bytes | memoryview] | None = None


def _page_batches(g: Group) -> typing.Iterator[tuple[int, np.ndarray]]:
    """``(first, pages)`` of PAGES group ``g``, a batch at a time
    (``pages``: uint8 rows of 4096, valid until the next batch).

    :raises ValueError: ``g.pages`` gives other than 4096 bytes a page.
    """
    for i in range(0, len(g.offsets), _PAGES_BATCH):
        n = min(_PAGES_BATCH, len(g.offsets) - i)
        data = g.pages(i, n)
        if len(data) != n * PAGE_SIZE:
            raise ValueError('pages %d to %d are %d bytes, not %d'
                             % (i, i + n - 1, len(data), n * PAGE_SIZE))
        yield i, np.frombuffer(data, dtype=np.uint8).reshape(n, PAGE_SIZE)


@dataclasses.dataclass(frozen=True)
class Identity:
    """The version of a checkpoint file a journal patches."""

    size: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> 'Identity':
        return cls(st.st_size, st.st_ino, st.st_dev)


#: What ends the name of a journal (before ``.tmp`` for a temporary).
SUFFIX = '.sparc-journal'


def journal_path(path: str, directory: str | None = None) -> str:
    """Where the journal of checkpoint ``path`` lives.

    :param directory: the journal directory (``[sparc] journal_dir``);
        None: next to the checkpoint, as ``.<name>.sparc-journal``. In a
        journal directory the name is ``<name>.<16 hex digits>`` plus
        :data:`SUFFIX`, the digits from the SHA-256 of the checkpoint's
        absolute path (two checkpoints of one name in two directories
        have two journals).
    """
    path = os.path.abspath(path)
    d, base = os.path.split(path)
    if directory is None:
        return os.path.join(d, '.%s%s' % (base, SUFFIX))
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return os.path.join(os.path.abspath(directory),
                        '%s.%s%s' % (base, digest, SUFFIX))


def temporary_path(path: str, directory: str | None = None) -> str:
    """Where the journal of ``path`` is written before it is complete."""
    return journal_path(path, directory) + '.tmp'


_NEXT_TO_NAME = re.compile(r'\.(?P<target>.+)%s(?P<tmp>\.tmp)?'
                           % re.escape(SUFFIX))
_KEPT_NAME = re.compile(r'(?P<target>.+)\.[0-9a-f]{16}%s(?P<tmp>\.tmp)?'
                        % re.escape(SUFFIX))


def target_name(name: str, kept: bool) -> tuple[str, bool] | None:
    """The name of the checkpoint whose journal (``False``) or journal's
    temporary (``True``) a file named ``name`` would be, next to the
    checkpoint or, with ``kept``, in a journal directory; None for any
    other name. A name only: the caller compares the file's path with
    :func:`journal_path` (or :func:`temporary_path`) of the checkpoint.
    """
    m = (_KEPT_NAME if kept else _NEXT_TO_NAME).fullmatch(name)
    return (m.group('target'), bool(m.group('tmp'))) if m else None


def _check_key_file(fd: int, key_file: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) \
            or st.st_mode & 0o077 or st.st_size != KEY_SIZE:
        raise exception.CheckpointError(
            key_file, 'refused as the journal key: it must be a regular '
                      'file of %d bytes owned by root or uid %d, mode 0600 '
                      '(it has owner %d, mode %o, %d bytes)'
            % (KEY_SIZE, os.geteuid(), st.st_uid, stat.S_IMODE(st.st_mode),
               st.st_size))


def _read_key(key_file: str) -> bytes:
    fd = os.open(key_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                 os.O_NONBLOCK)
    try:
        _check_key_file(fd, key_file)
        key = os.pread(fd, KEY_SIZE, 0)
    finally:
        os.close(fd)
    if len(key) != KEY_SIZE:
        raise exception.CheckpointError(key_file, 'short journal key')
    return key


def _create_key(key_file: str) -> None:
    """Write a new random key to ``key_file`` unless one appears first:
    written to an ``O_EXCL`` 0600 temporary, fsync'd, then linked to its
    name (which fails if the name exists), so that no reader ever sees a
    partial key.
    """
    d = os.path.dirname(key_file)
    fd, tmp = tempfile.mkstemp(prefix='.journal-key-', dir=d)
    try:
        os.write(fd, os.urandom(KEY_SIZE))
        os.fsync(fd)
        try:
            os.link(tmp, key_file)
        except FileExistsError:
            pass
    finally:
        os.close(fd)
        os.unlink(tmp)
    tempfiles.fsync_parent(key_file)


def load_key(key_file: str, create: bool = False) -> bytes:
    """The journal key held in ``key_file`` (``[sparc] journal_key_file``).

    The file must be a regular file of 32 bytes owned by root or the
    running user, mode 0600 or stricter, in a directory owned by root or
    the running user that no one else may write; a symbolic link is
    refused. With ``create``, a missing key is made (and a missing
    directory, mode 0700).

    :raises CheckpointError: the key or its directory is refused, or the
        key is missing and ``create`` is false.
    """
    key_file = os.path.abspath(key_file)
    d = os.path.dirname(key_file)
    if create:
        make_directory(d, key_file, 'journal key directory')
    else:
        tempfiles.check_private_directory(d, key_file)
    try:
        return _read_key(key_file)
    except FileNotFoundError:
        if not create:
            raise exception.CheckpointError(
                key_file, 'no journal key ([sparc] journal_key_file)')
    except OSError as e:
        raise exception.CheckpointError(
            key_file, 'cannot read the journal key: %s' % (e.strerror or e))
    try:
        _create_key(key_file)
        return _read_key(key_file)
    except OSError as e:
        raise exception.CheckpointError(
            key_file, 'cannot create the journal key: %s'
            % (e.strerror or e))


def _chunks(groups: list[Group], target: Identity):
    """The journal's body, piece by piece."""
    yield _HEAD.pack(MAGIC, VERSION, len(groups), target.size,
                     target.inode, target.device)
    for g in groups:
        if g.kind not in _LENGTH:
            raise ValueError('unknown group kind %r' % g.kind)
        if g.kind == FULL_PAGE and len(g.content or b'') != PAGE_SIZE:
            raise ValueError('a full-page group needs 4096 bytes')
        if g.kind == PAGES and g.pages is None:
            raise ValueError('a PAGES group needs its pages')
        yield _GROUP.pack(g.kind, g.fill, len(g.offsets))
        if g.kind == FULL_PAGE:
            yield bytes(g.content)
        elif g.kind == PAGES:
            for _, rows in _page_batches(g):
                yield rows.tobytes()
        yield np.asarray(g.offsets, dtype='<u8').tobytes()


def encode(groups: list[Group], target: Identity, key: bytes) -> bytes:
    """The journal of ``groups`` for ``target``, MAC included."""
    body = b''.join(_chunks(groups, target))
    return body + hmac.new(key, body, hashlib.sha256).digest()


def max_journal_bytes(target_size: int) -> int:
    """The largest journal a checkpoint of ``target_size`` bytes can have:
    each page patch stands for a 4096-byte payload and each fill patch
    for a 9-byte ZERO record, so the offsets take less than the file;
    page contents add at most the file's size again.
    """
    return _HEAD.size + MAC_SIZE + 2 * target_size + 64 * 1024


def decode(data: bytes, target: Identity, key: bytes,
           label: str) -> list[Group]:
    """The groups of journal ``data`` for ``target``.

    Every byte is checked: the MAC first (under ``key``), then the magic
    and version, that the journal is for ``target`` (size, inode,
    device), that every group has a known kind and fits in ``data``, that
    every patch lies inside the target and that nothing follows the last
    group.

    :param label: the journal's path, for errors.
    :raises JournalRefused: not a journal written with ``key``, or not
        well formed.
    :raises CheckpointError: a journal of another version of the file.
    """
    if len(data) < _HEAD.size + MAC_SIZE:
        raise JournalRefused(label, 'refused: %d bytes, too short for a '
                                    'journal' % len(data))
    if len(data) > max_journal_bytes(target.size):
        raise JournalRefused(label, 'refused: %d bytes, more than a journal '
                                    'of a %d-byte file can hold'
                             % (len(data), target.size))
    body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(),
                               mac):
        raise JournalRefused(
            label, 'refused: its MAC does not match the journal key: '
                   'sparc-nova did not write it (planted or damaged); it '
                   'was not replayed')
    return decode_body(body, target, label)


def decode_body(body: bytes, target: Identity, label: str) -> list[Group]:
    """:func:`decode` past the MAC check: the groups of ``body`` (the
    journal without its MAC), checked as :func:`decode` says. Fuzzed on
    its own (``tools/fuzz/journal_targets.py``).
    """
    if len(body) < _HEAD.size:
        raise JournalRefused(label, 'refused: truncated header')
    magic, version, count, size, ino, dev = _HEAD.unpack_from(body)
    if magic != MAGIC or version not in _READ_VERSIONS:
        raise JournalRefused(label, 'refused: not a version %s journal'
                             % ' or '.join(map(str, _READ_VERSIONS)))
    if Identity(size, ino, dev) != target:
        raise exception.CheckpointError(
            label, 'this in-place journal belongs to another version of its '
                   'checkpoint (size, inode or device differ); remove it by '
                   'hand after checking')
    groups = []
    pos = _HEAD.size
    for i in range(count):
        if pos + _GROUP.size > len(body):
            raise JournalRefused(label, 'refused: group %d is truncated' % i)
        kind, fill, n = _GROUP.unpack_from(body, pos)
        pos += _GROUP.size
        if kind not in _LENGTH or (kind == PAGES and version < 4):
            raise JournalRefused(label, 'refused: group %d has unknown kind '
                                        '%d' % (i, kind))
        content = pages = None
        if kind == FULL_PAGE:
            content = body[pos:pos + PAGE_SIZE]
            pos += PAGE_SIZE
        elif kind == PAGES:
            if pos + PAGE_SIZE * n > len(body):
                raise JournalRefused(label, 'refused: group %d is truncated'
                                     % i)
            pages = _pages_of(memoryview(body)[pos:pos + PAGE_SIZE * n])
            pos += PAGE_SIZE * n
        if pos + 8 * n > len(body):
            raise JournalRefused(label, 'refused: group %d is truncated' % i)
        offsets = np.frombuffer(body, dtype='<u8', count=n, offset=pos)
        pos += 8 * n
        if n and int(offsets.max()) > target.size - _LENGTH[kind]:
            raise JournalRefused(label, 'refused: group %d patches beyond '
                                        'the end of the file' % i)
        groups.append(Group(kind, offsets.astype(np.int64), fill, content,
                            pages))
    if pos != len(body):
        raise JournalRefused(label, 'refused: %d bytes after the last group'
                             % (len(body) - pos))
    return groups


def _pages_of(view: memoryview) -> typing.Callable[[int, int], memoryview]:
    """A PAGES group's ``pages`` over ``view``, its pages one after the
    other.
    """
    def pages(i: int, n: int) -> memoryview:
        return view[i * PAGE_SIZE:(i + n) * PAGE_SIZE]
    return pages


def make_directory(directory: str, subject: str,
                   what: str = 'journal directory') -> None:
    """Make ``directory`` (mode 0700) if it is missing, and check that it
    is private (:func:`.tempfiles.check_private_directory`).

    :param subject: the checkpoint (or key) it is needed for, named in
        errors.
    :param what: what the directory is, in errors.
    :raises CheckpointError: it cannot be made, or it is not private.
    """
    try:
        os.makedirs(directory, mode=0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise exception.CheckpointError(
            subject, 'cannot make the %s %s: %s'
            % (what, directory, e.strerror or e))
    tempfiles.check_private_directory(directory, subject)


def _create_exclusive(path: str, subject: str) -> int:
    """A new file at ``path``, mode 0600, opened for writing; never
    through a symbolic link, never over an existing file.
    """
    try:
        return tempfiles.create_exclusive(path)
    except FileExistsError:
        raise exception.CheckpointError(
            subject, 'refused: %s already exists (left by a killed scrub, '
                     'or planted); run "sparc checkpoint recover %s"'
            % (path, subject))
    except OSError as e:
        raise exception.CheckpointError(
            subject, 'cannot create %s: %s' % (path, e.strerror or e))


def write(path: str, groups: list[Group], key_file: str,
          target: Identity | None = None,
          directory: str | None = None) -> str:
    """Write and fsync the journal of ``groups`` for checkpoint ``path``
    (MAC'd with the key in ``key_file``, made if missing); return the
    journal's path. With ``target``, ``path`` must still be that version
    of the file (the one the caller parsed). ``directory``: the journal
    directory (see :func:`journal_path`), which must exist.

    :raises CheckpointError: the directory is not private, a journal or
        its temporary already exists (or is a link), or the key is
        refused.
    """
    key = load_key(key_file, create=True)
    jpath = journal_path(path, directory)
    tmp = temporary_path(path, directory)
    tempfiles.check_private_directory(os.path.dirname(jpath), path)
    if os.path.lexists(jpath):
        raise exception.CheckpointError(
            path, 'an in-place journal %s already exists; run "sparc '
                  'checkpoint recover %s"' % (jpath, path))
    current = Identity.of(os.stat(path, follow_symlinks=False))
    if target is not None and current != target:
        raise exception.CheckpointError(
            path, 'is no longer the file that was parsed (replaced or '
                  'changed since)')
    target = current
    fd = _create_exclusive(tmp, path)
    try:
        with os.fdopen(fd, 'wb') as f:
            mac = hmac.new(key, digestmod=hashlib.sha256)
            for chunk in _chunks(groups, target):
                mac.update(chunk)
                f.write(chunk)
            f.write(mac.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, jpath)
        tempfiles.fsync_parent(jpath)
    except BaseException:
        for p in (tmp, jpath):
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    return jpath


def fill_rows(buf: np.ndarray, starts: np.ndarray, length: int,
              value) -> None:
    """Set ``buf[s:s+length] = value`` for every s in ``starts`` (value: a
    byte, ``length`` bytes as a uint8 array, or one such row per start),
    without a Python loop per row.
    """
    if not len(starts):
        return
    rows = stride_tricks.as_strided(buf, shape=(len(buf) - length + 1,
                                                length), strides=(1, 1))
    value = np.asarray(value)
    for i in range(0, len(starts), 4096):
        rows[starts[i:i + 4096]] = value[i:i + 4096] if value.ndim == 2 \
            else value


def apply_to(arr: np.ndarray, groups: list[Group]) -> None:
    """Write the groups' patches into ``arr`` (the file's bytes as a
    writable uint8 array).
    """
    for g in groups:
        offs = np.asarray(g.offsets, dtype=np.int64)
        if g.kind == FILL_BYTE:
            arr[offs] = g.fill
        elif g.kind == FILL_PAGE:
            fill_rows(arr, offs, PAGE_SIZE, g.fill)
        elif g.kind == PAGES:
            for i, rows in _page_batches(g):
                fill_rows(arr, offs[i:i + len(rows)], PAGE_SIZE, rows)
        else:
            fill_rows(arr, offs, PAGE_SIZE,
                      np.frombuffer(g.content, dtype=np.uint8))


def apply(path: str, groups: list[Group],
          target: Identity | None = None) -> None:
    """Write the groups' patches into ``path`` (through a shared mapping,
    so that millions of pages cost one pass of memory writes) and fsync
    it.

    :param target: when given, the file opened must be this version of
        it (checked on the open descriptor; a symbolic link is refused).
    """
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if target is not None and (not stat.S_ISREG(st.st_mode) or
                                   Identity.of(st) != target):
            raise exception.CheckpointError(
                path, 'changed while its journal was being checked')
        size = st.st_size
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            arr = np.frombuffer(mm, dtype=np.uint8)
            apply_to(arr, groups)
            # The mapping cannot close while an array still views it.
            del arr
            mm.flush()
        finally:
            mm.close()
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str, directory: str | None = None) -> None:
    """Remove the journal of ``path`` (kept in ``directory``, see
    :func:`journal_path`) once its patches are on disk.
    """
    jpath = journal_path(path, directory)
    os.unlink(jpath)
    tempfiles.fsync_parent(jpath)


def pending(path: str, directory: str | None = None) -> bool:
    """Whether an interrupted in-place patch of ``path`` needs recovery
    (a journal, or a journal's temporary, is next to it, or in
    ``directory`` when given).
    """
    places = [None] if directory is None else [None, directory]
    return any(os.path.lexists(journal_path(path, d)) or
               os.path.lexists(temporary_path(path, d)) for d in places)


def _read_journal(path: str, jpath: str) -> bytes:
    """The journal's bytes, if its file is as :func:`write` makes it."""
    try:
        fd = os.open(jpath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                     os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise JournalRefused(jpath, 'refused: a symbolic link')
        raise exception.CheckpointError(jpath, 'cannot open: %s'
                                        % (e.strerror or e))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or \
                st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o077:
            raise JournalRefused(
                jpath, 'refused: owner %d, mode %o, %d links (a journal is '
                       'a regular file with one link, owned by root or uid '
                       '%d, mode 0600)' % (st.st_uid,
                                           stat.S_IMODE(st.st_mode),
                                           st.st_nlink, os.geteuid()))
        limit = max_journal_bytes(os.stat(path).st_size)
        if st.st_size > limit:
            raise JournalRefused(jpath, 'refused: %d bytes, more than a '
                                        'journal of its file can hold'
                                 % st.st_size)
        data = os.pread(fd, limit + 1, 0)
    finally:
        os.close(fd)
    return data


def recover(path: str, key_file: str,
            directory: str | None = None) -> str | None:
    """Finish or discard an interrupted in-place patch of ``path`` whose
    journal is next to it, or in ``directory`` (see :func:`journal_path`;
    the caller looks in each place it may have used).

    :param key_file: the journal key (``[sparc] journal_key_file``).
    :returns: ``'replayed'`` (the patches are now all in the file),
        ``'discarded'`` (an incomplete journal: the file was never
        touched) or None (no journal).
    :raises JournalRefused: a journal that is not ours (owner, mode, link
        count or MAC): nothing was written, the journal is left in place.
    :raises CheckpointError: a journal of another version of the file,
        or a directory that is not private.
    """
    jpath = journal_path(path, directory)
    tmp = temporary_path(path, directory)
    outcome = None
    if os.path.lexists(tmp):
        # Never renamed into place: the checkpoint was not touched. (A
        # link is removed, never followed.)
        os.unlink(tmp)
        tempfiles.fsync_parent(tmp)
        outcome = 'discarded'
    if not os.path.lexists(jpath):
        return outcome
    tempfiles.check_private_directory(os.path.dirname(jpath), path)
    data = _read_journal(path, jpath)
    key = load_key(key_file)
    target = Identity.of(os.stat(path))
    groups = decode(data, target, key, jpath)
    apply(path, groups, target)
    remove(path, directory)
    return 'replayed'
