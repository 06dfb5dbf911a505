"""Replace guest pages in a memory checkpoint.

Every copy of a replaced page is changed (a live-migration style stream may
send a page several times; the last copy is what QEMU loads, but every copy
holds the old bytes). Two modes:

* rewrite (default): a new file is written next to the target (or in
  ``work_dir``), fsync'd, given the original's owner and mode, and renamed
  over the target; the directory is fsync'd. A crash leaves either the old
  or the new file. Compressed images are recompressed with the same
  program. A PAGE record whose new content is one repeated byte (a
  scrubbed page) becomes a 9-byte ZERO record, so that scrubbing writes
  little more than what it keeps; other PAGE records get their new
  payload, ZERO records a new fill byte, and a ZERO record that must hold
  non-uniform content becomes a PAGE record. Unchanged spans of a raw
  image are copied inside the kernel.
* a qcow2 internal snapshot: the stream's records keep their size (a
  scrubbed page stays a PAGE record of zeros) and are written back into
  the snapshot's clusters by :mod:`.qcow2_vmstate`, in place through
  the journal or into a copy of the whole image.
* in place (raw images only): the 4096 payload bytes of each PAGE record
  are overwritten in the file, through a redo journal (see
  :mod:`.journal`): a crash leaves a journal that :func:`journal.recover`
  replays, so the file ends up original or completely patched. The
  journal is authenticated with the key in ``journal_key`` and made only
  in a directory owned by root or the running user that no one else may
  write.

Which of the two, and with which compression, is decided by
:func:`.write_mode.choose`; :func:`rewrite_pages` carries out the
:class:`~.write_mode.WriteMode` it is given.
"""

import dataclasses
import os
import typing

import numpy as np

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import physmem
from sparc_nova.checkpoint import qemu_ram
from sparc_nova.checkpoint import queued_writer
from sparc_nova.checkpoint import ram_index
from sparc_nova.checkpoint import tempfiles
from sparc_nova.checkpoint import write_mode as write_mode_mod
from sparc_nova.checkpoint import writeback
from sparc_nova import exception

PAGE_SIZE = ram_index.PAGE_SIZE
#: Bytes of new stream gathered before a write (and most bytes of an
#: unchanged span read at once): 8 MiB writes run at the disk's speed,
#: and the buffer (which may double as it grows) stays small.
_COPY_CHUNK = 8 * 1024 * 1024
#: Unchanged spans at least this long are copied inside the kernel
#: (copy_file_range); shorter ones are read and written with their
#: neighbours.
_KERNEL_COPY_MIN = 1024 * 1024
#: Buffers of :data:`_COPY_CHUNK` bytes a rewrite writes through: one
#: being filled, the others queued for (or being written by) the writer
#: thread.
_BUFFERS = 3
#: Pages joined into one splice of a memory dump's rewrite.
_SPLICE_PAGES = 256
#: Data pages a read back compares at once.
_COMPARE_PAGES = 256
#: Grown PAGE records built in the writer's buffer at once.
_GROWN_BATCH = 256


def _immutable_bytes(c) -> bool:
    """Whether ``c`` is ``bytes`` or a read-only, one-dimensional,
    contiguous memoryview of bytes (which cannot change under us).
    """
    return type(c) is bytes or (
        isinstance(c, memoryview) and c.readonly and c.format == 'B' and
        c.ndim == 1 and c.c_contiguous)


class PageSource(typing.Protocol):
    """Page contents made when asked, rather than held: an unseal
    decrypts its pages from the sealed-pages file record by record
    (:class:`.sealed.SealedPages`) instead of holding all of them.

    A rewrite asks for the contents mostly in ascending order (the
    order of the frames in the stream), and uses each before it asks for
    the next.
    """

    #: Per content, its fill byte when it is one byte repeated, else -1.
    fills: np.ndarray

    def __len__(self) -> int:
        ...

    def __getitem__(self, index: int) -> bytes | memoryview:
        """Content ``index``: 4096 read-only bytes, valid until the next
        call.
        """

    def pages(self, index: int, count: int) -> bytes | memoryview:
        """Contents ``index`` to ``index + count - 1``, one after the
        other (read-only, valid until the next call): a read back
        compares many at once.
        """


class PageReplacements:
    """New contents of guest frames, held compactly: 9 bytes per frame
    (its number and which content), each distinct 4096-byte content once.
    A scrub replaces millions of frames with one fill page; a dict of
    frame to bytes cost about 100 bytes per frame.

    :ivar pfns: guest frame numbers (int64, distinct).
    :ivar content: per frame, an index into ``contents`` (uint8 when
        fewer than 256 contents, else int64).
    :ivar contents: the distinct new page contents (4096 bytes each):
        a list of ``bytes`` or read-only byte memoryviews (kept as given;
        anything else is copied into ``bytes``), or a :class:`PageSource`
        (kept as given: its pages are made when the rewrite writes or
        reads them back).
    """

    def __init__(self, pfns, content, contents: 'list | PageSource'):
        self.pfns = np.asarray(pfns, dtype=np.int64).reshape(-1)
        dtype = np.uint8 if len(contents) <= 256 else np.int64
        self.content = np.asarray(content).astype(dtype).reshape(-1)
        if isinstance(contents, list):
            self.contents = [c if _immutable_bytes(c) else bytes(c)
                             for c in contents]
            for c in self.contents:
                if len(c) != PAGE_SIZE:
                    raise ValueError('a replacement page is %d bytes, not '
                                     '%d' % (len(c), PAGE_SIZE))
        else:
            self.contents = contents
        if len(self.pfns) != len(self.content):
            raise ValueError('%d frames but %d content indexes'
                             % (len(self.pfns), len(self.content)))
        if len(self.content) and (
                int(self.content.max()) >= len(self.contents) or
                int(self.content.min()) < 0):
            raise ValueError('a content index is out of range')
        ordered = np.sort(self.pfns)
        if (ordered[1:] == ordered[:-1]).any():
            raise ValueError('a frame is replaced twice')

    @classmethod
    def of(cls, replacements) -> 'PageReplacements':
        """``replacements`` as is when it is one, else from a dict of
        frame number to 4096 bytes; equal objects (typically one zero
        page for every scrubbed frame) share one content.
        """
        if isinstance(replacements, cls):
            return replacements
        n = len(replacements)
        pfns = np.fromiter(replacements.keys(), dtype=np.int64, count=n)
        values = list(replacements.values())
        # Group by object identity in numpy: no Python step per frame.
        ids = np.fromiter(map(id, values), dtype=np.uint64, count=n)
        _, first, index = np.unique(ids, return_index=True,
                                    return_inverse=True)
        for i in first.tolist():
            if len(values[i]) != PAGE_SIZE:
                raise ValueError('replacement for frame 0x%x is %d bytes, '
                                 'not %d' % (int(pfns[i]), len(values[i]),
                                             PAGE_SIZE))
        return cls(pfns, index.reshape(-1),
                   [values[i] for i in first.tolist()])

    def __len__(self) -> int:
        return len(self.pfns)

    def items(self):
        """``(frame, 4096 bytes)`` pairs, frame by frame."""
        for pfn, c in zip(self.pfns.tolist(), self.content.tolist()):
            yield pfn, bytes(self.contents[c])

    def fills(self) -> np.ndarray:
        """Per content, its fill byte when it is one byte repeated, else
        -1 (int16).
        """
        if not isinstance(self.contents, list):
            return np.asarray(self.contents.fills, dtype=np.int16)
        fills = [_uniform(data) for data in self.contents]
        return np.array([-1 if f is None else f for f in fills],
                        dtype=np.int16)


@dataclasses.dataclass
class RewriteResult:
    """What :func:`rewrite_pages` did.

    :ivar path: the file now holding the result.
    :ivar pages: guest frames replaced.
    :ivar records_rewritten: stream records changed (>= pages).
    :ivar in_place: whether the file was patched in place.
    """

    path: str
    pages: int
    records_rewritten: int
    in_place: bool
    replacements: PageReplacements | None = dataclasses.field(
        repr=False, default=None)
    work_dir: str | None = None
    snapshot: str | None = None

    def verify(self) -> dict:
        """Re-parse :attr:`path` and check every replaced page reads back
        exactly as given. Returns counts; raises CheckpointError on any
        mismatch.
        """
        with checkpoint_mod.open_checkpoint(
                self.path, work_dir=self.work_dir,
                snapshot=self.snapshot) as ck:
            bad = _not_read_back(ck.memory, self.replacements)
            if len(bad):
                raise exception.CheckpointError(
                    self.path, 'verification failed: %d replaced pages do '
                               'not read back (first frame 0x%x)'
                               % (len(bad), int(bad[0])))
            return {'pages_checked': len(self.replacements or ()),
                    'records': len(ck.layout.ram)}

    def to_dict(self) -> dict:
        return {'path': self.path, 'pages': self.pages,
                'records_rewritten': self.records_rewritten,
                'in_place': self.in_place}


def _not_read_back(memory, replacements: PageReplacements | None
                   ) -> np.ndarray:
    """The frames of ``replacements`` whose content as ``memory`` loads
    it is not the replacement, ascending.

    The frames' last copies are looked up all at once; a frame never
    sent or sent as a ZERO record is checked against its content's fill
    byte (each distinct content looked at once), and only data pages
    are compared byte by byte: a read back of a million frames costs no
    Python step per uniform frame.
    """
    if replacements is None or not len(replacements):
        return np.zeros(0, dtype=np.int64)
    pfns = replacements.pfns
    records = memory.page_records(pfns)
    index = memory.index
    sent = records >= 0
    zero = np.zeros(len(pfns), dtype=bool)
    zero[sent] = index.rec_kind[records[sent]] == ram_index.KIND_ZERO
    # What a frame never sent (zeros) or sent as a ZERO record loads as.
    uniform = ~sent | zero
    loaded_fill = np.zeros(len(pfns), dtype=np.int16)
    loaded_fill[zero] = index.rec_fill[records[zero]]
    # The fill byte of each content those frames should hold (-1: not
    # uniform), each content looked at once.
    wanted = replacements.content.astype(np.int64)
    bad = uniform & (loaded_fill != replacements.fills()[wanted])
    # Every other frame's last copy is a PAGE record: compared
    # _COMPARE_PAGES at a time (two joined buffers and one comparison),
    # page by page only in a batch that differs.
    data = np.nonzero(~uniform)[0]
    contents = replacements.contents
    for lo in range(0, len(data), _COMPARE_PAGES):
        frames = data[lo:lo + _COMPARE_PAGES]
        recs = records[frames]
        want = replacements.content[frames].tolist()
        if memory.record_pages(recs) == _joined(contents, want):
            continue
        for i, rec, c in zip(frames.tolist(), recs.tolist(), want):
            if memory.record_page(rec) != _as_bytes(contents[c]):
                bad[i] = True
    return np.sort(pfns[bad])


def _joined(contents, indexes: list[int]) -> bytes:
    """:func:`_pages_of`, as bytes (a comparison of bytes with a
    memoryview is many times slower than a copy).
    """
    return bytes(_pages_of(contents, indexes))


def _pages_of(contents, indexes: list[int]) -> bytes | memoryview:
    """Contents ``indexes`` (at least one) of ``contents`` (a list or a
    :class:`PageSource`) one after the other: a view, valid until the
    source is asked again, when they are consecutive pages of a
    :class:`PageSource`, else a joined copy.
    """
    if isinstance(contents, list):
        return b''.join([contents[c] for c in indexes])
    first = indexes[0]
    if indexes[-1] - first == len(indexes) - 1:
        # Ascending and consecutive (the contents cannot repeat).
        return contents.pages(first, len(indexes))
    return b''.join([bytes(contents[c]) for c in indexes])


def _uniform(data) -> int | None:
    """The fill byte if ``data`` (bytes-like) is one byte repeated, else
    None.
    """
    first = data[0]
    if data[-1] != first:
        return None
    # Compared as bytes: bytes against a memoryview compare 20 times
    # slower than a copy and a bytes comparison.
    return first if _as_bytes(data) == bytes([first]) * len(data) else None


def _as_bytes(data) -> bytes:
    return data if type(data) is bytes else bytes(data)


@dataclasses.dataclass
class _Edits:
    """Every record to change, in stream order, with its new content.

    :ivar recs: record numbers (ascending stream offset).
    :ivar content: per record, an index into ``contents``.
    :ivar contents: the distinct new page contents.
    :ivar fills: per content, its fill byte when uniform, else -1.
    """

    recs: np.ndarray
    content: np.ndarray
    contents: 'list[bytes] | PageSource'
    fills: np.ndarray

    def __len__(self) -> int:
        return len(self.recs)


def _plan(ck, replacements) -> _Edits:
    """Every affected copy of every replaced frame, vectorised."""
    idx = ck.layout.ram
    pfns = replacements.pfns
    cindex = replacements.content.astype(np.int64)
    contents = replacements.contents
    fills = replacements.fills().astype(np.int64)
    gpa = pfns << 12
    covered = np.zeros(len(pfns), dtype=bool)
    all_recs, all_content = [], []
    for rng in ck.memory.ranges:
        sel = (gpa >= rng.gpa) & (gpa < rng.end)
        if not sel.any():
            continue
        covered |= sel
        block = idx.block(rng.block)
        pages = (gpa[sel] - rng.gpa + rng.block_offset) >> 12
        last = idx.last[block.index]
        missing = last[pages] < 0
        if missing.any():
            pfn = int(pfns[sel][np.argmax(missing)])
            raise exception.CheckpointError(
                ck.path, 'guest frame 0x%x is not in the stream' % pfn)
        lookup = np.full(block.pages, -1,
                         dtype=ram_index.index_dtype(len(contents)))
        lookup[pages] = cindex[sel]
        recs = idx.copies_of(block.index, pages)
        rec_pages, kinds, rec_fills = idx.columns(recs, 'page', 'kind',
                                                  'fill')
        content = lookup[rec_pages]
        zero = kinds == ram_index.KIND_ZERO
        # A ZERO copy already holding the wanted fill needs nothing; an
        # older ZERO copy is overwritten on load and holds no data.
        skip = zero & ((fills[content] == rec_fills) |
                       (recs != last[rec_pages]))
        all_recs.append(recs[~skip])
        all_content.append(content[~skip])
    if not covered.all():
        raise physmem.PhysicalAddressError(int(gpa[np.argmin(covered)]))
    recs = np.concatenate(all_recs) if all_recs else np.zeros(0, np.int64)
    content = np.concatenate(all_content) if all_content else \
        np.zeros(0, np.int64)
    order = np.argsort(idx.rec_hdr[recs], kind='stable')
    return _Edits(recs[order], content[order], contents, fills)


def _grown_record(ck, rec: int, data: '_Content'
                  ) -> tuple[bytes, '_Content']:
    """A ZERO record that must now hold non-uniform content, rewritten as
    a PAGE record (same offset, same block naming), in two parts: its
    header and block name, then ``data``. Kept apart, a rewrite that
    grows a million records (an unseal) does not hold a second copy of
    every page until it writes them.
    """
    idx = ck.layout.ram
    hdr_off = int(idx.rec_hdr[rec])
    data_off = int(idx.rec_data[rec])
    return (qemu_ram.page_record(bytes(ck.stream[hdr_off:hdr_off + 8]),
                                 bytes(ck.stream[hdr_off + 8:data_off]), b''),
            data)


def _edit_columns(ck, edits):
    hdr, data, kind = ck.layout.ram.columns(edits.recs, 'hdr', 'data',
                                            'kind')
    fill = edits.fills[edits.content] if len(edits) else \
        np.zeros(0, np.int64)
    return hdr, data, kind, fill


def _headers(ck, hdr: np.ndarray) -> np.ndarray:
    """The 8-byte headers of the records at stream offsets ``hdr``, as
    uint8 rows.
    """
    u8 = np.frombuffer(ck.stream, dtype=np.uint8)
    return u8[hdr[:, None] + np.arange(8)]


@dataclasses.dataclass
class _GrownRun:
    """Back-to-back ZERO records without a block name that become PAGE
    records: their new 8-byte headers (uint8 rows) and, per record, the
    index of its content in ``edits.contents``.
    """

    headers: np.ndarray
    contents: list[int]


class _Content(int):
    """A new page content named by its index in ``edits.contents``: a
    splice names it and the writer takes it when it writes it (contents
    made when asked are then never held all at once, and a list of
    splices holds no page).
    """


def _splices(ck, edits) -> list:
    """The edits as ``(start, end, data)`` splices of the stream, in
    stream order, contiguous ones merged: ``stream[start:end]`` is
    replaced by ``data`` (bytes-like or a :class:`_Content`, or a tuple
    of them written one after the other).

    A PAGE record that must hold one repeated byte becomes a 9-byte ZERO
    record (the common case of a scrub, vectorised); other PAGE records
    get their new payload, ZERO records a new fill byte, and a ZERO
    record that must hold non-uniform content grows into a PAGE record
    (the common case of an unseal: back-to-back ones without a block
    name are one :class:`_GrownRun`).
    """
    if ck.pages_only:
        return _payload_splices(edits, _edit_columns(ck, edits)[1])
    hdr, dat, kind, fill = _edit_columns(ck, edits)
    page = kind == ram_index.KIND_PAGE
    # PAGE records without a block name (CONTINUE): hdr + 8 == dat.
    fast = page & (fill >= 0) & (dat == hdr + 8)
    fi = np.nonzero(fast)[0]
    rows = qemu_ram.zero_records(_headers(ck, hdr[fi]), fill[fi])
    a = hdr[fi]
    b = dat[fi] + PAGE_SIZE
    # Runs of back-to-back records become one splice.
    cut = np.nonzero(a[1:] != b[:-1])[0] + 1
    firsts = np.concatenate([[0], cut]) if len(fi) else cut
    lasts = np.concatenate([cut, [len(fi)]]) if len(fi) else cut
    out = [(int(a[i]), int(b[j - 1]), rows[i:j])
           for i, j in zip(firsts.tolist(), lasts.tolist())]
    grow = (kind == ram_index.KIND_ZERO) & (fill < 0) & (dat == hdr + 8)
    out += _grown_runs(ck, hdr, dat, edits.content, np.nonzero(grow)[0])
    for e in np.nonzero(~fast & ~grow)[0].tolist():
        h, d, f = int(hdr[e]), int(dat[e]), int(fill[e])
        data = _Content(int(edits.content[e]))
        if page[e] and f >= 0:
            out.append((h, d + PAGE_SIZE, qemu_ram.zero_record(
                bytes(ck.stream[h:h + 8]), bytes(ck.stream[h + 8:d]), f)))
        elif page[e]:
            out.append((d, d + PAGE_SIZE, data))
        elif f >= 0:
            out.append((d, d + 1, bytes([f])))
        else:
            out.append((h, d + 1, _grown_record(ck, int(edits.recs[e]),
                                                data)))
    out.sort(key=lambda x: x[0])
    return out


def _grown_runs(ck, hdr: np.ndarray, dat: np.ndarray, content: np.ndarray,
                gi: np.ndarray) -> list:
    """The splices growing the ZERO records of edits ``gi`` (without a
    block name: 8-byte header, 1 fill byte) into PAGE records, one
    :class:`_GrownRun` per run of back-to-back records.
    """
    if not len(gi):
        return []
    a = hdr[gi]
    b = dat[gi] + 1
    heads = qemu_ram.page_headers(_headers(ck, a))
    cut = np.nonzero(a[1:] != b[:-1])[0] + 1
    firsts = np.concatenate([[0], cut]).tolist()
    lasts = np.concatenate([cut, [len(gi)]]).tolist()
    cindex = content[gi].tolist()
    return [(int(a[i]), int(b[j - 1]), _GrownRun(heads[i:j], cindex[i:j]))
            for i, j in zip(firsts, lasts)]


def _payload_splices(edits, dat: np.ndarray) -> list:
    """The edits of a checkpoint whose page records are their bytes alone
    (a memory dump) as splices: every page keeps its place and size and
    gets its new 4096 bytes (a :class:`_Content`); back-to-back pages are
    one splice of at most :data:`_SPLICE_PAGES` pages.
    """
    out = []
    start = None
    parts = []
    for d, c in zip(dat.tolist(), edits.content.tolist()):
        if start is not None and (d != start + len(parts) * PAGE_SIZE or
                                  len(parts) == _SPLICE_PAGES):
            out.append((start, start + len(parts) * PAGE_SIZE,
                        tuple(parts)))
            start, parts = None, []
        if start is None:
            start = d
        parts.append(_Content(c))
    if parts:
        out.append((start, start + len(parts) * PAGE_SIZE, tuple(parts)))
    return out


class _StreamCopier:
    """Writes a new stream to a file descriptor or a compressor: new
    bytes through buffers, unchanged spans of the old stream copied
    inside the kernel when the output is a plain file.

    The output is written by a thread of its own, in order
    (:class:`.queued_writer.QueuedWriter`): the system calls that put the
    bytes into the file overlap with building the next ones (an unseal
    grows a million records, and building them costs about as much as
    writing them), through :data:`_BUFFERS` buffers of
    :data:`_COPY_CHUNK` bytes. :meth:`close` waits for the last write and
    raises the writer's error; :meth:`abort` stops the writer after a
    failure.
    """

    def __init__(self, ck, out, fd: int | None):
        self._ck = ck
        self._out = out
        self._fd = fd
        # The rewrite's fsync waits for less (see .writeback).
        self._writeback = writeback.Writeback(fd, os.lseek(
            fd, 0, os.SEEK_CUR)) if fd is not None else None
        self._writer = queued_writer.QueuedWriter(
            'sparc-stream-writer', self._run, _BUFFERS, _COPY_CHUNK)
        self._buf = self._writer.buffer()
        self._used = 0

    # -- in the writer thread ---------------------------------------------

    def _run(self, task) -> None:
        kind, a, b = task
        if kind == 'copy':
            self._kernel_copy(a, b)
        else:
            self._emit(memoryview(a)[:b] if b is not None else a)
        if self._writeback is not None:
            self._writeback.advance_to_position()

    def _emit(self, data) -> None:
        if self._fd is None:
            self._out.write(data)
            return
        view = memoryview(data).cast('B')
        while len(view):
            view = view[os.write(self._fd, view):]

    def _kernel_copy(self, off: int, left: int) -> None:
        ck = self._ck
        src = ck.stream_file.fileno()
        while left:
            n = os.copy_file_range(src, self._fd, left, off)
            if n <= 0:
                raise exception.CheckpointError(ck.path, 'short copy', off)
            off += n
            left -= n

    # -- in the caller's thread -------------------------------------------

    def write(self, data) -> None:
        """Append ``data`` (bytes-like or a C-contiguous uint8 array; one
        larger than a buffer is written as it is, and must not change
        until the writer has written it).
        """
        view = memoryview(data).cast('B')
        n = len(view)
        if self._used + n > len(self._buf):
            self.flush()
        if n > len(self._buf):
            self._writer.submit(('data', view, None))
            return
        self._buf[self._used:self._used + n] = view
        self._used += n

    def write_records(self, headers: np.ndarray, contents,
                      indexes: list[int]) -> None:
        """Append, for each row of ``headers`` (uint8, 8 bytes each), the
        row then content ``indexes[i]`` of ``contents`` (a list or a
        :class:`PageSource`): what :meth:`write` of each would append,
        with one numpy step per batch of up to :data:`_GROWN_BATCH`
        records instead of two Python steps per record (an unseal grows
        a million of them).
        """
        if len(headers) != len(indexes):
            raise ValueError('%d headers but %d pages'
                             % (len(headers), len(indexes)))
        step = 8 + PAGE_SIZE
        done = 0
        while done < len(indexes):
            room = (len(self._buf) - self._used) // step
            if not room:
                self.flush()
                continue
            n = min(room, len(indexes) - done, _GROWN_BATCH)
            rows = np.frombuffer(self._buf, dtype=np.uint8, count=n * step,
                                 offset=self._used).reshape(n, step)
            rows[:, :8] = headers[done:done + n]
            rows[:, 8:] = np.frombuffer(
                _pages_of(contents, indexes[done:done + n]),
                dtype=np.uint8).reshape(n, PAGE_SIZE)
            self._used += n * step
            done += n

    def flush(self) -> None:
        """Queue the buffered bytes for the writer (waits for a free
        buffer).
        """
        if self._used:
            full, used = self._buf, self._used
            self._buf = self._writer.buffer()
            self._used = 0
            self._writer.submit(('buffer', full, used), full)

    def copy(self, start: int, end: int) -> None:
        """Append ``stream[start:end]``."""
        ck = self._ck
        src = ck.stream_file.fileno()
        if self._fd is not None and end - start >= _KERNEL_COPY_MIN:
            self.flush()
            self._writer.submit(('copy', ck.stream_base + start,
                                 end - start))
            return
        pos = start
        while pos < end:
            room = len(self._buf) - self._used
            if not room:
                self.flush()
                continue
            n = min(room, end - pos)
            # pread, not a copy out of the mmap: page faults on a mapping
            # cost several times a read of the same bytes.
            with memoryview(self._buf) as whole:
                got = os.preadv(src, [whole[self._used:self._used + n]],
                                ck.stream_base + pos)
            if got != n:
                raise exception.CheckpointError(
                    ck.path, 'short read of the memory stream',
                    ck.stream_base + pos)
            self._used += n
            pos += n

    def close(self) -> None:
        """Write what is buffered, wait until the writer has written
        everything, and raise its error if it had one.
        """
        self.flush()
        self._writer.close()

    def abort(self) -> None:
        """After a failure in the caller: stop the writer (what it still
        had queued is dropped) and wait for it.
        """
        self._writer.abort(exception.CheckpointError(self._ck.path,
                                                     'rewrite abandoned'))


def _write_stream(ck, edits, out, fd, progress) -> None:
    """Write the stream with the edits spliced in to ``out`` (a file
    object; ``fd``, its descriptor when it is a plain file, lets
    unchanged spans be copied inside the kernel).
    """
    sink = _StreamCopier(ck, out, fd)
    try:
        pos = 0
        contents = edits.contents
        for start, end, data in _splices(ck, edits):
            sink.copy(pos, start)
            if isinstance(data, _GrownRun):
                sink.write_records(data.headers, contents, data.contents)
            else:
                for part in data if isinstance(data, tuple) else (data,):
                    # A content is copied into the writer's buffer at
                    # once (a PageSource's page is valid until the next
                    # is made).
                    sink.write(contents[part] if isinstance(part, _Content)
                               else part)
            pos = end
            if progress:
                progress(pos, ck.stream_size)
        sink.copy(pos, ck.stream_size)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    if progress:
        progress(ck.stream_size, ck.stream_size)


def _rewrite_file(ck, edits, target, recompress, progress, before_commit):
    st = os.stat(ck.path)
    with tempfiles.replacement(target, before_commit) as (f, _):
        if ck.header:
            f.write(ck.header.raw)
        f.flush()
        if recompress:
            out = compression.Compressor(
                recompress, f, ck.path,
                (ck.limits.helper_user, ck.limits.helper_group))
            _write_stream(ck, edits, out, None, progress)
            out.close()
        else:
            _write_stream(ck, edits, f, f.fileno(), progress)
        f.flush()
        os.fchmod(f.fileno(), st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.fchown(f.fileno(), st.st_uid, st.st_gid)


def _groups(ck, edits, *, pages: bool = False) -> list | None:
    """The edits as journal groups of same-size patches at file offsets;
    None when a record must change size (it cannot be patched in place).

    Uniform contents become fill groups, one pair per fill byte. With
    ``pages``, the data pages come in one PAGES group that asks
    ``edits.contents`` for them a batch at a time (what a journal of the
    stream's own file takes: an unseal's GiB of distinct pages is never
    held); else in a FULL_PAGE group per content (what a container's
    writer takes).
    """
    hdr, dat, kind, fill = _edit_columns(ck, edits)
    if ((kind == ram_index.KIND_ZERO) & (fill < 0)).any():
        return None
    groups = []
    page = kind == ram_index.KIND_PAGE
    offs = dat + ck.stream_base
    for f in np.unique(fill[fill >= 0]).tolist():
        mine = fill == f
        groups.append(journal.Group(journal.FILL_PAGE, offs[mine & page],
                                    fill=f))
        groups.append(journal.Group(journal.FILL_BYTE, offs[mine & ~page],
                                    fill=f))
    data = np.nonzero(fill < 0)[0]
    if pages:
        cindex = edits.content[data].tolist()
        groups.append(journal.Group(
            journal.PAGES, offs[data],
            pages=lambda i, n: _pages_of(edits.contents, cindex[i:i + n])))
    else:
        order = data[np.argsort(edits.content[data], kind='stable')]
        cut = np.nonzero(np.diff(edits.content[order]))[0] + 1
        for part in np.split(order, cut) if len(order) else ():
            groups.append(journal.Group(
                journal.FULL_PAGE, offs[part],
                content=bytes(edits.contents[int(edits.content[part[0]])])))
    return [g for g in groups if len(g.offsets)]


def _same_size_groups(ck, edits, *, pages: bool = False) -> list:
    """:func:`_groups`, or the error naming the record that must grow."""
    groups = _groups(ck, edits, pages=pages)
    if groups is None:
        hdr, _, kind, fill = _edit_columns(ck, edits)
        grow = (kind == ram_index.KIND_ZERO) & (fill < 0)
        raise exception.CheckpointError(
            ck.path, 'page record at offset %d is a ZERO record and '
                     'cannot take new content in place'
            % (ck.stream_base + int(hdr[np.argmax(grow)])))
    return groups


def _write_container(ck, edits, mode) -> None:
    """Write the edits back into the file that holds the stream (a qcow2
    snapshot's vmstate, :mod:`.qcow2_vmstate`): every record keeps its
    size, so that the stream's length does not change.
    """
    groups = _same_size_groups(ck, edits)
    fd = ck.stream_file.fileno()
    if mode.in_place:
        ck.container.patch_in_place(groups, fd, mode.journal_key,
                                    mode.journal_dir)
    else:
        ck.container.write_copy(groups, fd, mode.target)


def _patch_in_place(ck, edits, mode):
    groups = _same_size_groups(ck, edits, pages=True)
    # Only the file that was parsed is patched: a name swapped for
    # another file since is refused, not written.
    target = journal.Identity.of(os.fstat(ck.stream_file.fileno()))
    journal.write(ck.path, groups, mode.journal_key, target=target,
                  directory=mode.journal_dir)
    journal.apply(ck.path, groups, target)
    journal.remove(ck.path, mode.journal_dir)


def rewrite_pages(ck, replacements: 'dict[int, bytes] | PageReplacements',
                  output: str | None = None, in_place: bool = False,
                  work_dir: str | None = None,
                  progress=None,
                  journal_key: str | None = None, *,
                  mode: write_mode_mod.WriteMode | None = None,
                  before_commit: typing.Callable[[], None] | None = None
                  ) -> RewriteResult:
    """Replace guest frames in checkpoint ``ck`` (an open
    :class:`~sparc_nova.checkpoint.checkpoint.Checkpoint`).

    :param replacements: guest frame number (gpa >> 12) to its new 4096
        bytes, as a dict or a :class:`PageReplacements` (which a scrub of
        millions of frames uses: it is kept by the result, not copied).
    :param mode: how the result is written, as decided by
        :func:`.write_mode.choose` for ``ck``. None: decided here from
        ``output``, ``in_place`` and ``journal_key`` (the same function,
        the same rules).
    :param output: where to write the result; None replaces ``ck.path``.
    :param in_place: patch ``ck.path`` itself (raw images only; ``output``
        must be None).
    :param work_dir: where :meth:`RewriteResult.verify` decompresses a
        compressed result (the rewritten file itself is always made in the
        target's directory, so that the final rename is atomic).
    :param journal_key: the file holding the in-place journal's MAC key
        (``[sparc] journal_key_file``); needed with ``in_place``.
    :param before_commit: called once the new file is written and synced,
        before it takes the target's place (:func:`.tempfiles.replacement`;
        what it raises is raised, the target untouched). Only for a
        rewrite of a stream file to a new file: refused with a container
        or in place, where the target changes as it is written.
    :returns: a :class:`RewriteResult`; call its ``verify()`` to re-parse
        the result. On any error the target is untouched.
    :raises CheckpointError: ``mode`` was decided for another file or
        another compression than ``ck``'s, the request is refused by
        :func:`.write_mode.choose`, or writing failed.
    :raises ValueError: ``before_commit`` with a container or in place.
    """
    if mode is None:
        mode = write_mode_mod.choose(ck.path, ck.compressed, output=output,
                                     in_place=in_place,
                                     journal_key=journal_key)
    if mode.source != ck.path or mode.compression != ck.compressed:
        raise exception.CheckpointError(
            ck.path, 'the write mode was decided for %s (%s), not for '
                     'this checkpoint (%s)'
            % (mode.source, compression.name(mode.compression),
               compression.name(ck.compressed)))
    if before_commit is not None and not commits_by_rename(ck, mode):
        raise ValueError('before_commit needs a rewrite to a new file')
    replacements = PageReplacements.of(replacements)
    edits = _plan(ck, replacements)
    result = RewriteResult(path=mode.target, pages=len(replacements),
                           records_rewritten=len(edits),
                           in_place=mode.in_place,
                           replacements=replacements,
                           work_dir=work_dir, snapshot=ck.snapshot)
    if ck.container is not None:
        _write_container(ck, edits, mode)
    elif mode.in_place:
        _patch_in_place(ck, edits, mode)
    else:
        _rewrite_file(ck, edits, result.path, mode.compression, progress,
                      before_commit)
    return result


def commits_by_rename(ck, mode: write_mode_mod.WriteMode) -> bool:
    """Whether :func:`rewrite_pages` of checkpoint ``ck`` written as
    ``mode`` leaves the target untouched until one final rename (a new
    stream file), so that a ``before_commit`` can still stop it.
    """
    return ck.container is None and not mode.in_place
