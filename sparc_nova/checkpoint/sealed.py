"""The sealed-pages file: what a seal took out of a checkpoint, encrypted.

A seal (:mod:`sparc_nova.engine.seal`) zeroes in a checkpoint what a
scrub would zero, but first encrypts the bytes it zeroes into this file,
next to the checkpoint (:func:`sealed_path`); an unseal puts them back.
The file holds two kinds of record:

* a **frame run**: consecutive guest frames (at most
  :data:`MAX_RUN_FRAMES`) that the seal set entirely to one fill byte;
  the plaintext is their original 4096-byte pages;
* a **byte range**: bytes inside one guest page that the seal changed
  (a kernel buffer zeroed, a page-cache page's flags); the plaintext is
  the original bytes followed by the bytes the seal wrote.

Cryptography (``cryptography``'s AES-256-GCM throughout):

* every seal draws a fresh random 32-byte **data key**; the records are
  encrypted with it, record *i* under the 96-bit nonce ``0^4 || le64(i)``
  (a data key encrypts one file, so a counter never repeats a nonce);
* the data key is **wrapped** with AES-256-GCM under the caller's 32-byte
  key (a random nonce; key-wrap use is a handful of seals per key, far
  from GCM's random-nonce bound), with the whole file header as
  associated data. AES-GCM rather than RFC 3394 key wrap: the same
  primitive also authenticates the header (magic, version, checkpoint
  identity, record count and sizes), so a wrong key and an altered
  header are refused in one step, before any record is read;
* each record's associated data is the checkpoint identity, the record's
  index and its 16-byte record header (kind, fill, length, guest physical
  address): a record cannot be moved to another frame, another index or
  another checkpoint, and the header's record count makes dropping or
  appending records fail.

The **checkpoint identity** (:func:`identity_of`) is a SHA-256 over what
a seal and an unseal never change and what tells two checkpoints apart:
the libvirt header with its domain and cookie XML, the machine type, the
RAM blocks and the guest physical RAM layout, and every device section
of the stream (vCPU registers among them).

Layout (little endian)::

    8s  b'SPARCSLD'  u32 version (1)  u32 flags (0)
    32s checkpoint identity   u64 record count   u64 plaintext bytes
    12s wrap nonce   48s wrapped data key (32 bytes + 16-byte tag)
    records: u8 kind (1 frames, 2 bytes), u8 fill, u16 0,
             u32 plaintext length, u64 guest physical address,
             ciphertext (plaintext length + 16-byte tag)

The file is hostile input until its tags check: every count and size is
bounded before it is used (:data:`MAX_RECORDS`, :data:`MAX_RUN_FRAMES`,
the size of the checkpoint's RAM), the file must end exactly after its
last record, and every error names the file and what is wrong. It is
written ``O_EXCL``/``O_NOFOLLOW``, mode 0600, fsync'd, under a temporary
name, and linked to its name only when complete (never over an existing
file); it is read only when it is a regular file with one link, owned by
root or the running user, that neither group nor others may access.

:func:`read` returns every record decrypted. :func:`open_pages` checks
the same and keeps the file open instead (:class:`SealedPages`): the
frame runs' pages are decrypted again, a record at a time, when they are
asked for, so that their reader never holds them all. A reader whose
writes can be undone until it commits (an unseal to a new file) defers
the frame runs' tags to when it reads them, checking those it did not
read before it commits (``defer_frame_runs``,
:meth:`SealedPages.check_unread`), and reads the file once; it checks
what it wrote by the runs' tags (:meth:`SealedPages.run_holds`).
"""

import bisect
import dataclasses
import functools
import hashlib
import os
import stat
import struct
import tempfile
import typing

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import aead
import numpy as np

from sparc_nova.checkpoint import qemu_stream
from sparc_nova.checkpoint import queued_writer
from sparc_nova.checkpoint import tempfiles
from sparc_nova.checkpoint import writeback
from sparc_nova import exception

__all__ = ['BYTES', 'FRAMES', 'KEY_SIZE', 'MAGIC', 'MAX_RECORDS',
           'MAX_RUN_FRAMES', 'PAGE_SIZE', 'SUFFIX', 'VERSION', 'ByteRange',
           'FrameRun', 'SealedHeader', 'SealedFileError', 'check_key',
           'identity_of', 'load_key_file', 'open_pages', 'peek', 'read',
           'sealed_path', 'SealedPages', 'write']

MAGIC = b'SPARCSLD'
VERSION = 1
KEY_SIZE = 32
PAGE_SIZE = 4096
#: Name suffix of a checkpoint's sealed-pages file.
SUFFIX = '.sparc-sealed'
#: Record kinds.
FRAMES, BYTES = 1, 2
#: Frames in one frame-run record (1 MiB of plaintext).
MAX_RUN_FRAMES = 256
#: Records in one file (a 16 TiB guest in full runs is 2^16 records;
#: byte ranges are at most a few per kernel buffer).
MAX_RECORDS = 1 << 22

_TAG = 16
_NONCE = 12
_PREFIX = struct.Struct('<8sII32sQQ')
_HEAD = struct.Struct('<8sII32sQQ12s48s')
_RECORD = struct.Struct('<BBHIQ')


class SealedFileError(exception.CheckpointError):
    """A sealed-pages file is refused: not ours, altered, truncated, for
    another checkpoint, or the key does not open it.
    """


@dataclasses.dataclass(frozen=True)
class FrameRun:
    """Consecutive frames from ``first_pfn`` the seal set to ``fill``;
    ``pages`` is their original content (a multiple of 4096 bytes; a
    memoryview when the seal reads them into a reused buffer).
    """

    first_pfn: int
    fill: int
    pages: bytes | memoryview

    @property
    def frames(self) -> int:
        return len(self.pages) // PAGE_SIZE


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """Bytes at guest physical ``paddr`` (inside one page): ``original``
    before the seal, ``sealed`` what the seal wrote (same length).
    """

    paddr: int
    original: bytes
    sealed: bytes


@dataclasses.dataclass(frozen=True)
class SealedHeader:
    """What a sealed-pages file says of itself before it is opened."""

    path: str
    version: int
    identity: bytes
    records: int
    plaintext_bytes: int

    def as_dict(self) -> dict:
        return {'file': self.path, 'version': self.version,
                'identity': self.identity.hex(), 'records': self.records,
                'plaintext_bytes': self.plaintext_bytes}


Record = typing.Union[FrameRun, ByteRange]


def sealed_path(checkpoint: str) -> str:
    """Where the sealed-pages file of ``checkpoint`` lives."""
    return os.path.abspath(checkpoint) + SUFFIX


def check_key(key: bytes, label: str = 'the sealing key') -> None:
    """Refuse a key that is not exactly :data:`KEY_SIZE` bytes."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError('%s must be %d bytes' % (label, KEY_SIZE))


def load_key_file(key_file: str) -> bytes:
    """The 32-byte sealing key held in ``key_file``.

    The file must be a regular file (a symbolic link is refused) owned by
    root or the running user that neither group nor others may read or
    write, holding exactly 32 bytes.

    :raises CheckpointError: naming ``key_file``.
    """
    try:
        fd = os.open(key_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                     os.O_NONBLOCK)
    except OSError as e:
        raise exception.CheckpointError(
            key_file, 'cannot open the sealing key: %s' % (e.strerror or e))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or \
                st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o077 \
                or st.st_size != KEY_SIZE:
            raise exception.CheckpointError(
                key_file, 'refused as the sealing key: it must be a regular '
                          'file of exactly %d bytes owned by root or uid %d '
                          'that group and others cannot access (mode 0600 '
                          'or 0400; it has owner %d, mode %o, %d bytes)'
                % (KEY_SIZE, os.geteuid(), st.st_uid,
                   stat.S_IMODE(st.st_mode), st.st_size))
        key = os.pread(fd, KEY_SIZE + 1, 0)
    finally:
        os.close(fd)
    if len(key) != KEY_SIZE:
        raise exception.CheckpointError(key_file, 'the sealing key changed '
                                                  'while it was read')
    return key


def identity_of(ck) -> bytes:
    """The checkpoint identity (32 bytes) of ``ck``, an open
    :class:`~.checkpoint.Checkpoint` (see the module docstring).
    """
    h = hashlib.sha256(b'sparc-nova sealed checkpoint identity 1\0')

    def part(data: bytes) -> None:
        h.update(struct.pack('<Q', len(data)))
        h.update(data)
    part(ck.header.raw if ck.header else b'')
    part(ck.layout.machine.encode('utf-8', 'surrogateescape'))
    for b in ck.layout.ram.blocks:
        part(b.name.encode('utf-8', 'surrogateescape'))
        h.update(struct.pack('<Q', b.length))
    for r in ck.memory.ranges:
        part(r.block.encode('utf-8', 'surrogateescape'))
        h.update(struct.pack('<QQQ', r.gpa, r.block_offset, r.length))
    stream = ck.stream
    for sec in ck.layout.sections:
        if sec.kind == qemu_stream.SEC_FULL:
            part(bytes(stream[sec.offset:sec.end]))
    return h.digest()


def _record_head(rec: Record) -> tuple[bytes, bytes]:
    """(16-byte record header, plaintext) of ``rec``."""
    if isinstance(rec, FrameRun):
        n = rec.frames
        if not 1 <= n <= MAX_RUN_FRAMES or len(rec.pages) % PAGE_SIZE or \
                not 0 <= rec.fill < 256:
            raise ValueError('a frame run holds 1 to %d whole pages'
                             % MAX_RUN_FRAMES)
        return _RECORD.pack(FRAMES, rec.fill, 0, len(rec.pages),
                            rec.first_pfn * PAGE_SIZE), rec.pages
    n = len(rec.original)
    if not 1 <= n <= PAGE_SIZE or len(rec.sealed) != n or \
            (rec.paddr % PAGE_SIZE) + n > PAGE_SIZE:
        raise ValueError('a byte range holds 1 to 4096 bytes inside one '
                         'page, with as many sealed bytes')
    return (_RECORD.pack(BYTES, 0, 0, 2 * n, rec.paddr),
            rec.original + rec.sealed)


def _nonce(index: int) -> bytes:
    return bytes(4) + struct.pack('<Q', index)


def _aad(identity: bytes, index: int, head: bytes) -> bytes:
    return identity + struct.pack('<Q', index) + head


def _create_temporary(path: str) -> tuple[int, str]:
    """A 0600 temporary next to ``path``, made ``O_EXCL|O_NOFOLLOW`` by
    :func:`tempfile.mkstemp`, and named so that ``sparc checkpoint
    recover --sweep`` removes it if the writer dies.
    """
    return tempfile.mkstemp(prefix=tempfiles.temp_prefix(path),
                            dir=os.path.dirname(os.path.abspath(path)))


def write(path: str, key: bytes, identity: bytes,
          records: typing.Iterable[Record]) -> dict:
    """Write the sealed-pages file ``path`` holding ``records`` (in
    order), sealed under a fresh data key wrapped with ``key``.

    ``records`` may be a generator: each record is encrypted and written
    as it comes, so that the plaintext of a whole seal is never held at
    once; a record is not used once the next one is asked for (a
    generator may reuse its buffer). The header (record count, plaintext
    size and the wrapped key, which authenticates both) is written last,
    at the file's start.

    Nothing is at ``path`` until the file is complete and fsync'd: it is
    written to a 0600 ``O_EXCL|O_NOFOLLOW`` temporary, then linked to
    ``path`` (refused if anything is there) and the directory fsync'd.

    :returns: ``{'file', 'records', 'frames', 'byte_ranges',
        'plaintext_bytes', 'file_bytes'}``.
    :raises CheckpointError: ``path`` exists, or the file cannot be
        written (the temporary is removed).
    :raises ValueError: a bad key, identity or record, or more than
        :data:`MAX_RECORDS` records (the temporary is removed).
    """
    check_key(key)
    if len(identity) != 32:
        raise ValueError('bad identity')
    if os.path.lexists(path):
        raise exception.CheckpointError(
            path, 'refused: a sealed-pages file is already there (unseal '
                  'or remove it first)')
    data_key = aead.AESGCM.generate_key(bit_length=256)
    stats = {'file': path, 'records': 0, 'frames': 0, 'byte_ranges': 0,
             'plaintext_bytes': 0}
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(bytes(_HEAD.size))
            cipher = aead.AESGCM(data_key)
            # The records are written in a thread of their own while the
            # next are read and encrypted (copying a GiB into the page
            # cache takes as long as reading and encrypting it), from
            # three ciphertext buffers allocated once.
            writer = queued_writer.QueuedWriter(
                'sparc-sealed-writer',
                functools.partial(_write_record, f,
                                  writeback.Writeback(f.fileno())),
                3, MAX_RUN_FRAMES * PAGE_SIZE + _TAG)
            count = 0
            try:
                for rec in records:
                    if count == MAX_RECORDS:
                        raise ValueError('more than %d records'
                                         % MAX_RECORDS)
                    head, payload = _record_head(rec)
                    buf = writer.buffer()
                    out = memoryview(buf)[:len(payload) + _TAG]
                    cipher.encrypt_into(_nonce(count), payload,
                                        _aad(identity, count, head), out)
                    writer.submit((head, buf, len(out)), buf)
                    count += 1
                    stats['plaintext_bytes'] += len(payload)
                    if head[0] == FRAMES:
                        stats['frames'] += len(payload) // PAGE_SIZE
                    else:
                        stats['byte_ranges'] += 1
            except BaseException:
                writer.stop()
                raise
            writer.close()
            stats['records'] = count
            prefix = _PREFIX.pack(MAGIC, VERSION, 0, identity, count,
                                  stats['plaintext_bytes'])
            wrap_nonce = os.urandom(_NONCE)
            wrapped = aead.AESGCM(key).encrypt(wrap_nonce, data_key, prefix)
            f.flush()
            header = prefix + wrap_nonce + wrapped
            if os.pwrite(f.fileno(), header, 0) != len(header):
                raise OSError('short write of the header')
            os.fsync(f.fileno())
            stats['file_bytes'] = f.tell()
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise exception.CheckpointError(
                path, 'refused: a sealed-pages file appeared there while '
                      'this one was written')
        tempfiles.fsync_directory(os.path.dirname(os.path.abspath(path)))
    except OSError as e:
        raise exception.CheckpointError(path, 'cannot write: %s'
                                        % (e.strerror or e))
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return stats


def _write_record(f, started: writeback.Writeback, task) -> None:
    """Write ``task``, ``(record header, ciphertext buffer, its length)``,
    to ``f`` (in :func:`write`'s writer thread).
    """
    head, buf, n = task
    f.write(head)
    f.write(memoryview(buf)[:n])
    started.advance(f.tell())


def _open_checked(path: str) -> int:
    """``path`` opened for reading if it is as :func:`write` makes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                     os.O_NONBLOCK)
    except FileNotFoundError:
        raise SealedFileError(path, 'no sealed-pages file (was this '
                                    'checkpoint sealed?)')
    except OSError as e:
        raise SealedFileError(path, 'cannot open: %s' % (e.strerror or e))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or \
            st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o077:
        os.close(fd)
        raise SealedFileError(
            path, 'refused: owner %d, mode %o, %d links (a sealed-pages '
                  'file is a regular file with one link, owned by root or '
                  'uid %d, mode 0600)' % (st.st_uid, stat.S_IMODE(st.st_mode),
                                          st.st_nlink, os.geteuid()))
    return fd


def _header(path: str, data: bytes) -> SealedHeader:
    if len(data) < _HEAD.size:
        raise SealedFileError(path, 'truncated: %d bytes, a header is %d'
                              % (len(data), _HEAD.size))
    magic, version, flags, ident, count, plain, _, _ = \
        _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise SealedFileError(path, 'not a sealed-pages file (bad magic)')
    if version != VERSION or flags:
        raise SealedFileError(path, 'version %d, flags 0x%x: only version '
                                    '%d without flags is understood'
                              % (version, flags, VERSION))
    if count > MAX_RECORDS:
        raise SealedFileError(path, '%d records, more than the %d allowed'
                              % (count, MAX_RECORDS))
    return SealedHeader(path, version, ident, count, plain)


def peek(path: str) -> SealedHeader | None:
    """The header of the sealed-pages file ``path`` (unauthenticated: no
    key is needed), or None when there is none.

    :raises SealedFileError: a file is there but refused or malformed.
    """
    if not os.path.lexists(path):
        return None
    fd = _open_checked(path)
    try:
        return _header(path, os.pread(fd, _HEAD.size, 0))
    finally:
        os.close(fd)


def read(path: str, key: bytes, identity: bytes,
         ram_bytes: int) -> list[Record]:
    """Open and check the sealed-pages file ``path`` with ``key``: every
    record, decrypted, in file order.

    Nothing is returned unless everything checks: the file's owner, mode
    and links; its header (magic, version, bounds); the wrapped data key
    under ``key`` (which authenticates the header); that it was sealed
    from the checkpoint of ``identity``; every record's kind, bounds and
    tag; and that the file ends after its last record.

    :param ram_bytes: the checkpoint's guest RAM size: the records cannot
        hold more than three times that (frames once, byte ranges twice).
    :raises SealedFileError: naming ``path`` and what is wrong.
    """
    check_key(key)
    fd = _open_checked(path)
    try:
        out = []
        head, cipher, size = _open_header(fd, path, key, identity,
                                          ram_bytes)
        for rec in _checked_records(fd, path, head, cipher, size):
            if rec.kind == FRAMES:
                out.append(FrameRun(rec.addr // PAGE_SIZE, rec.fill,
                                    bytes(rec.plaintext)))
            else:
                out.append(_byte_range(rec))
        return out
    finally:
        os.close(fd)


def open_pages(path: str, key: bytes, identity: bytes,
               ram_bytes: int, *,
               defer_frame_runs: bool = False) -> 'SealedPages':
    """Open and check the sealed-pages file ``path`` like :func:`read`
    (every check, every tag), keeping its frame runs' pages in the file:
    the :class:`SealedPages` decrypts them again when they are asked for,
    so that an unseal never holds the excluded processes' memory whole.

    :param defer_frame_runs: check every header, the key and the byte
        ranges' tags now, but each frame run's tag only when its pages
        are first asked for, or by :meth:`SealedPages.check_unread`; the
        pages' fill bytes are then unknown (``fills`` holds -1). For a
        reader whose writes can still be undone when a tag fails (a new
        file that takes the checkpoint's place only after
        :meth:`SealedPages.check_unread`): it reads the frame runs once
        instead of twice.
    :raises SealedFileError: naming ``path`` and what is wrong.
    """
    check_key(key)
    fd = _open_checked(path)
    try:
        return SealedPages(fd, path, key, identity, ram_bytes,
                           defer_frame_runs=defer_frame_runs)
    except BaseException:
        os.close(fd)
        raise


@dataclasses.dataclass(frozen=True)
class _RecordHead:
    """Where one record of a sealed-pages file is, its header checked."""

    index: int
    head: bytes
    kind: int
    fill: int
    addr: int
    #: Offset of its ciphertext (``length`` bytes and the tag).
    offset: int
    length: int


@dataclasses.dataclass(frozen=True)
class _Checked(_RecordHead):
    """One record of a sealed-pages file, its tag checked."""

    #: Its plaintext: a view valid until the next record is read.
    plaintext: memoryview
    #: Its authentication tag, checked.
    tag: bytes

    @classmethod
    def of(cls, rec: _RecordHead, plaintext: memoryview,
           tag: bytes) -> '_Checked':
        return cls(**vars(rec), plaintext=plaintext, tag=tag)


def _byte_range(rec: _Checked) -> ByteRange:
    half = rec.length // 2
    return ByteRange(rec.addr, bytes(rec.plaintext[:half]),
                     bytes(rec.plaintext[half:]))


def _open_header(fd: int, path: str, key: bytes, identity: bytes,
                 ram_bytes: int) -> tuple[SealedHeader, aead.AESGCM, int]:
    """Check the header of the file open as ``fd`` (bounds, the key, the
    checkpoint's identity): ``(header, the records' cipher, file size)``.

    :raises SealedFileError: naming ``path`` and what is wrong.
    """
    size = os.fstat(fd).st_size
    limit = _HEAD.size + 3 * ram_bytes + MAX_RECORDS * (_RECORD.size + _TAG)
    if size > limit:
        raise SealedFileError(path, '%d bytes, more than a checkpoint of %d '
                                    'bytes of RAM can seal'
                              % (size, ram_bytes))
    data = os.pread(fd, _HEAD.size, 0)
    head = _header(path, data)
    if head.plaintext_bytes > 3 * ram_bytes:
        raise SealedFileError(path, '%d bytes of plaintext, more than a '
                                    'checkpoint of %d bytes of RAM can seal'
                              % (head.plaintext_bytes, ram_bytes))
    expected = _HEAD.size + head.plaintext_bytes + head.records * (
        _RECORD.size + _TAG)
    if size < expected:
        raise SealedFileError(path, 'truncated: %d bytes, its header '
                                    'announces %d' % (size, expected))
    cipher = aead.AESGCM(_data_key(path, key, data))
    if head.identity != identity:
        raise SealedFileError(path, 'sealed from another checkpoint: the '
                                    'checkpoint is not the one sealed (its '
                                    'header, RAM layout or device state '
                                    'changed since)')
    return head, cipher, size


def _record_heads(fd: int, path: str, head: SealedHeader, size: int
                  ) -> typing.Iterator[_RecordHead]:
    """The record headers of the file open as ``fd`` whose header ``head``
    (of a file of ``size`` bytes) :func:`_open_header` checked, in file
    order, each checked for bounds; the last checks (the file ends after
    its last record, the records hold what the header says) are made
    after the last record. Nothing is decrypted.

    :raises SealedFileError: naming ``path`` and what is wrong.
    """
    pos = _HEAD.size
    total = 0
    for i in range(head.records):
        if pos + _RECORD.size > size:
            raise SealedFileError(path, 'truncated: record %d of %d is '
                                        'missing' % (i, head.records))
        rhead = _pread_exactly(fd, path, _RECORD.size, pos)
        kind, fill, zero, length, addr = _RECORD.unpack(rhead)
        _check_record(path, i, kind, fill, zero, length, addr)
        end = pos + _RECORD.size + length + _TAG
        if end > size:
            raise SealedFileError(path, 'truncated: record %d of %d ends '
                                        'past the end of the file'
                                  % (i, head.records))
        total += length
        yield _RecordHead(i, rhead, kind, fill, addr, pos + _RECORD.size,
                          length)
        pos = end
    if pos != size:
        raise SealedFileError(path, '%d bytes after the last record'
                              % (size - pos))
    if total != head.plaintext_bytes:
        raise SealedFileError(path, 'the records hold %d bytes, the header '
                                    'says %d' % (total, head.plaintext_bytes))
    if os.fstat(fd).st_size != size:
        raise SealedFileError(path, 'changed while it was read')


def _checked_records(fd: int, path: str, head: SealedHeader,
                     cipher: aead.AESGCM, size: int, frame_runs: bool = True
                     ) -> typing.Iterator[_RecordHead | _Checked]:
    """:func:`_record_heads`, each record read, decrypted and its tag
    checked (a :class:`_Checked`), one at a time (never the whole
    ciphertext at once); without ``frame_runs``, the frame runs' records
    are only their checked headers (:class:`_RecordHead`).

    :raises SealedFileError: naming ``path`` and what is wrong.
    """
    # One buffer for every record's ciphertext and one for its plaintext
    # (a new megabyte per record costs its page faults; a decryption into
    # the buffer it reads from fails its tag).
    most = MAX_RUN_FRAMES * PAGE_SIZE if frame_runs else 2 * PAGE_SIZE
    sealed_buf = memoryview(bytearray(most + _TAG))
    plain_buf = memoryview(bytearray(most))
    for rec in _record_heads(fd, path, head, size):
        if rec.kind == FRAMES and not frame_runs:
            yield rec
            continue
        ciphertext = sealed_buf[:rec.length + _TAG]
        plaintext = plain_buf[:rec.length]
        _decrypt_record(fd, path, cipher, head.identity, rec.index,
                        rec.head, rec.offset, ciphertext, plaintext)
        yield _Checked.of(rec, plaintext, bytes(ciphertext[rec.length:]))


def _data_key(path: str, key: bytes, head: bytes) -> bytes:
    """The data key the header ``head`` wraps under ``key``."""
    prefix = head[:_PREFIX.size]
    wrap_nonce = head[_PREFIX.size:_PREFIX.size + _NONCE]
    wrapped = head[_PREFIX.size + _NONCE:_HEAD.size]
    try:
        return aead.AESGCM(key).decrypt(wrap_nonce, wrapped, prefix)
    except InvalidTag:
        raise SealedFileError(path, 'the key does not open it: a wrong '
                                    'key, or its header was altered')


def _decrypt_record(fd: int, path: str, cipher: aead.AESGCM,
                    identity: bytes, index: int, rhead: bytes, offset: int,
                    sealed_bytes: memoryview, plaintext: memoryview) -> None:
    """Read record ``index``'s ciphertext (at ``offset``, into
    ``sealed_bytes``, its size) and decrypt it into ``plaintext``.

    :raises SealedFileError: its tag does not check, or the file is
        shorter than it was.
    """
    if os.preadv(fd, [sealed_bytes], offset) != len(sealed_bytes):
        raise SealedFileError(path, 'changed while it was read')
    try:
        cipher.decrypt_into(_nonce(index), sealed_bytes,
                            _aad(identity, index, rhead), plaintext)
    except InvalidTag:
        addr = _RECORD.unpack(rhead)[4]
        raise SealedFileError(path, 'record %d (guest physical 0x%x) '
                                    'fails its authentication tag: the '
                                    'file was altered' % (index, addr))


def _page_fills(plaintext: memoryview) -> np.ndarray:
    """Per 4096-byte page of ``plaintext``: its fill byte when it is one
    byte repeated, else -1 (int16). Most data pages are told apart by
    their first and last words.
    """
    words = np.frombuffer(plaintext, dtype=np.uint64).reshape(
        -1, PAGE_SIZE // 8)
    fills = np.full(len(words), -1, dtype=np.int16)
    first = words[:, 0]
    maybe = first == words[:, -1]
    if not maybe.any():
        return fills
    byte = first & np.uint64(0xff)
    maybe &= first == byte * np.uint64(0x0101010101010101)
    maybe = np.nonzero(maybe)[0]
    if len(maybe):
        same = (words[maybe] == first[maybe, None]).all(axis=1)
        fills[maybe[same]] = byte[maybe[same]].astype(np.int16)
    return fills


class SealedPages:
    """An opened sealed-pages file (:func:`open_pages`): every record
    checked, its byte ranges decrypted, and its frame runs' pages
    decrypted again, a record at a time, when they are asked for (a
    :class:`~sparc_nova.checkpoint.rewrite.PageSource`: page ``i`` is the
    ``i``-th page of the frame runs in file order).

    A page asked for is decrypted with its record's tag checked again: a
    file changed since it was opened raises :class:`SealedFileError`.
    Opened with ``defer_frame_runs``, the frame runs' tags are checked
    for the first time then (or by :meth:`check_unread`).

    :ivar path: the file.
    :ivar byte_ranges: its byte-range records, in file order.
    :ivar run_first_pfn: per frame run, its first guest frame (int64).
    :ivar run_frames: per frame run, its number of frames (int64).
    :ivar run_fill: per frame run, the fill byte the seal wrote (int16).
    :ivar fills: per page, its fill byte when it is one byte repeated,
        else -1 (int16); -1 throughout when the frame runs were not read
        yet (``defer_frame_runs``).
    """

    def __init__(self, fd: int, path: str, key: bytes, identity: bytes,
                 ram_bytes: int, *, defer_frame_runs: bool = False) -> None:
        self.path = path
        self._fd = fd
        self._identity = identity
        self.byte_ranges: list[ByteRange] = []
        runs = []
        fills = []
        #: Per frame run, its tag once checked (a run not in it was not
        #: decrypted yet: ``defer_frame_runs``).
        self._tags: dict[int, bytes] = {}
        head, self._cipher, size = _open_header(fd, path, key, identity,
                                                ram_bytes)
        for rec in _checked_records(fd, path, head, self._cipher, size,
                                    frame_runs=not defer_frame_runs):
            if rec.kind == FRAMES:
                runs.append((rec.addr // PAGE_SIZE, rec.length // PAGE_SIZE,
                             rec.fill, rec.index, rec.offset, rec.head))
                if not defer_frame_runs:
                    fills.append(_page_fills(rec.plaintext))
                    self._tags[len(runs) - 1] = rec.tag
            else:
                self.byte_ranges.append(_byte_range(rec))
        self.run_first_pfn = np.array([r[0] for r in runs], dtype=np.int64)
        self.run_frames = np.array([r[1] for r in runs], dtype=np.int64)
        self.run_fill = np.array([r[2] for r in runs], dtype=np.int16)
        self._runs = [r[3:] for r in runs]
        # A list, not an array: bisect of one page number is several
        # times faster than numpy's searchsorted of a scalar.
        self._starts = np.concatenate(
            [[0], np.cumsum(self.run_frames)]).astype(np.int64).tolist()
        if defer_frame_runs:
            self.fills = np.full(self._starts[-1], -1, dtype=np.int16)
        else:
            self.fills = np.concatenate(fills) if fills else \
                np.zeros(0, dtype=np.int16)
        self._sealed = memoryview(bytearray(MAX_RUN_FRAMES * PAGE_SIZE +
                                            _TAG))
        self._plain = memoryview(bytearray(MAX_RUN_FRAMES * PAGE_SIZE))
        self._readonly = self._plain.toreadonly()
        # Pages self._low to self._high - 1 are those decrypted.
        self._low = self._high = 0

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: int) -> memoryview:
        """Page ``index`` (4096 read-only bytes, valid until the next
        call).

        :raises IndexError: no such page.
        :raises SealedFileError: the file changed since it was opened.
        """
        if not self._low <= index < self._high:
            self._load(index)
        at = (index - self._low) * PAGE_SIZE
        return self._readonly[at:at + PAGE_SIZE]

    def pages(self, index: int, count: int) -> bytes | memoryview:
        """Pages ``index`` to ``index + count - 1`` one after the other
        (a view of the decrypted record when they are in one, else a
        copy; read-only, valid until the next call).

        :raises IndexError: no such pages.
        """
        if count <= 0 or index + count > len(self):
            raise IndexError(index + count)
        if not self._low <= index < self._high:
            self._load(index)
        if index + count <= self._high:
            at = (index - self._low) * PAGE_SIZE
            return self._readonly[at:at + count * PAGE_SIZE]
        parts = []
        while count:
            if not self._low <= index < self._high:
                self._load(index)
            n = min(count, self._high - index)
            at = (index - self._low) * PAGE_SIZE
            parts.append(bytes(self._plain[at:at + n * PAGE_SIZE]))
            index += n
            count -= n
        return b''.join(parts)

    def _load(self, index: int) -> None:
        """Decrypt the frame run that holds page ``index``."""
        if not 0 <= index < self._starts[-1]:
            raise IndexError(index)
        self._decrypt_run(bisect.bisect_right(self._starts, index) - 1)

    def _decrypt_run(self, run: int) -> None:
        """Decrypt frame run ``run`` (its tag checked) into the buffer."""
        low, high = self._starts[run], self._starts[run + 1]
        length = (high - low) * PAGE_SIZE
        self._low = self._high = 0
        rindex, offset, rhead = self._runs[run]
        _decrypt_record(self._fd, self.path, self._cipher, self._identity,
                        rindex, rhead, offset, self._sealed[:length + _TAG],
                        self._plain[:length])
        self._tags[run] = bytes(self._sealed[length:length + _TAG])
        self._low, self._high = low, high

    def run_holds(self, run: int, data) -> bool:
        """Whether ``data`` (bytes-like) is exactly the pages of frame run
        ``run``, told by the run's tag: ``data`` is encrypted as the seal
        encrypted the run (the same data key, nonce and associated data),
        which gives the run's tag only for the same plaintext (GCM's tag
        authenticates the ciphertext, and the same key stream makes the
        same ciphertext only of the same plaintext). The tag is the one
        checked when the run was decrypted (now, if it was not yet): the
        file is not read again. What is computed is compared and dropped,
        never written or returned (so the nonce, used again here, never
        protects two things an observer sees).

        :raises IndexError: no such run.
        :raises SealedFileError: the run was not decrypted yet and its tag
            does not check.
        """
        rindex, offset, rhead = self._runs[run]
        length = int(self.run_frames[run]) * PAGE_SIZE
        if len(data) != length:
            return False
        if run not in self._tags:
            self._decrypt_run(run)
        tag = self._tags[run]
        out = self._sealed[:length + _TAG]
        self._cipher.encrypt_into(_nonce(rindex), data,
                                  _aad(self._identity, rindex, rhead), out)
        return out[length:] == tag

    def check_unread(self) -> int:
        """Check the tag of every frame run not decrypted yet (none,
        unless opened with ``defer_frame_runs``): after this, every record
        of the file has been authenticated. Returns how many were left.

        :raises SealedFileError: a tag does not check.
        """
        unread = [r for r in range(len(self._runs)) if r not in self._tags]
        for run in unread:
            self._decrypt_run(run)
        return len(unread)

    def drop_cache(self) -> None:
        """Ask the kernel to drop the file's cached pages (for a reader
        that will not read them again: the removal of a file of a GiB
        whose pages are cached frees them then, a tenth of a second and
        more). The file itself is unchanged. Safe in another thread than
        the reader's, until :meth:`close`.
        """
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> 'SealedPages':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pread_exactly(fd: int, path: str, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise SealedFileError(path, 'changed while it was read')
    return data


def _check_record(path, i, kind, fill, zero, length, addr) -> None:
    """Bounds of record ``i``'s header, before anything is decrypted."""
    if zero:
        raise SealedFileError(path, 'record %d: reserved bytes are not zero'
                              % i)
    if kind == FRAMES:
        if addr % PAGE_SIZE or length % PAGE_SIZE or \
                not 1 <= length // PAGE_SIZE <= MAX_RUN_FRAMES:
            raise SealedFileError(path, 'record %d: a frame run of %d bytes '
                                        'at 0x%x (1 to %d aligned pages)'
                                  % (i, length, addr, MAX_RUN_FRAMES))
    elif kind == BYTES:
        if fill or length % 2 or not 2 <= length <= 2 * PAGE_SIZE or \
                addr % PAGE_SIZE + length // 2 > PAGE_SIZE:
            raise SealedFileError(path, 'record %d: a byte range of %d '
                                        'bytes at 0x%x (1 to 4096 bytes '
                                        'inside one page)'
                                  % (i, length // 2, addr))
    else:
        raise SealedFileError(path, 'record %d has unknown kind %d'
                              % (i, kind))
