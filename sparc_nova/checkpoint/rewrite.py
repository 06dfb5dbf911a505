"""Replace guest pages in a memory checkpoint.

Every copy of a replaced page is changed (a live-migration style stream may
send a page several times; the last copy is what QEMU loads, but every copy
holds the old bytes). Two modes:

* rewrite (default): a new file is written next to the target (or in
  ``work_dir``), fsync'd, given the original's owner and mode, and renamed
  over the target; the directory is fsync'd. A crash leaves either the old
  or the new file. Compressed images are recompressed with the same
  program. Records keep their size (a PAGE record gets its new payload, a
  ZERO record a new fill byte), except a ZERO record that must hold
  non-uniform content, which becomes a PAGE record.
* in place (raw images only): the 4096 payload bytes of each PAGE record
  are overwritten in the file, through a redo journal (see
  :mod:`.journal`): a crash leaves a journal that :func:`journal.recover`
  replays, so the file ends up original or completely patched.
"""

import dataclasses
import os
import tempfile

import numpy as np

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import physmem
from sparc_nova.checkpoint import qemu_stream
from sparc_nova.checkpoint import ram_index
from sparc_nova import exception

PAGE_SIZE = ram_index.PAGE_SIZE
_COPY_CHUNK = 32 * 1024 * 1024


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
    replacements: dict = dataclasses.field(repr=False, default_factory=dict)
    work_dir: str | None = None

    def verify(self) -> dict:
        """Re-parse :attr:`path` and check every replaced page reads back
        exactly as given. Returns counts; raises CheckpointError on any
        mismatch.
        """
        with checkpoint_mod.open_checkpoint(self.path,
                                            work_dir=self.work_dir) as ck:
            bad = [pfn for pfn, data in self.replacements.items()
                   if ck.memory.read_page(pfn) != data]
            if bad:
                raise exception.CheckpointError(
                    self.path, 'verification failed: %d replaced pages do '
                               'not read back (first frame 0x%x)'
                               % (len(bad), bad[0]))
            return {'pages_checked': len(self.replacements),
                    'records': len(ck.layout.ram)}

    def to_dict(self) -> dict:
        return {'path': self.path, 'pages': self.pages,
                'records_rewritten': self.records_rewritten,
                'in_place': self.in_place}


def temp_prefix(target: str) -> str:
    """Prefix of the temporary files a rewrite of ``target`` makes (with
    the writer's pid, so that leftovers of dead writers can be told from
    files still being written).
    """
    return '.%s.sparc-%d-' % (os.path.basename(target), os.getpid())


def remove_stale_temporaries(target: str) -> list[str]:
    """Delete temporary files left next to ``target`` by rewrites whose
    process is gone (killed). Returns the removed paths.
    """
    d = os.path.dirname(os.path.abspath(target))
    head = '.%s.sparc-' % os.path.basename(target)
    removed = []
    for name in os.listdir(d):
        if not name.startswith(head):
            continue
        pid = name[len(head):].split('-', 1)[0]
        if not pid.isdigit() or os.path.exists('/proc/%s' % pid):
            continue
        os.unlink(os.path.join(d, name))
        removed.append(os.path.join(d, name))
    return removed


def _uniform(data: bytes) -> int | None:
    """The fill byte if ``data`` is one byte repeated, else None."""
    return data[0] if data == bytes([data[0]]) * len(data) else None


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
    contents: list[bytes]
    fills: np.ndarray

    def __len__(self) -> int:
        return len(self.recs)


def _contents(replacements) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Frame numbers and content indexes of ``replacements``; equal
    objects (typically one zero page for every scrubbed frame) share an
    index.
    """
    pfns = np.fromiter(replacements.keys(), dtype=np.int64,
                       count=len(replacements))
    ids = {}
    contents, fills = [], []
    index = np.empty(len(replacements), dtype=np.int64)
    for i, data in enumerate(replacements.values()):
        c = ids.get(id(data))
        if c is None:
            if len(data) != PAGE_SIZE:
                raise ValueError('replacement for frame 0x%x is %d bytes, '
                                 'not %d' % (int(pfns[i]), len(data),
                                             PAGE_SIZE))
            c = ids[id(data)] = len(contents)
            contents.append(bytes(data))
            fill = _uniform(data)
            fills.append(-1 if fill is None else fill)
        index[i] = c
    return pfns, index, contents, fills


def _plan(ck, replacements) -> _Edits:
    """Every affected copy of every replaced frame, vectorised."""
    idx = ck.layout.ram
    pfns, cindex, contents, fills = _contents(replacements)
    fills = np.array(fills, dtype=np.int64)
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
        lookup = np.full(block.pages, -1, dtype=np.int64)
        lookup[pages] = cindex[sel]
        recs = idx.copies_of(block.index, pages)
        rec_pages = idx.rec_page[recs]
        content = lookup[rec_pages]
        zero = idx.rec_kind[recs] == ram_index.KIND_ZERO
        # A ZERO copy already holding the wanted fill needs nothing; an
        # older ZERO copy is overwritten on load and holds no data.
        skip = zero & ((fills[content] == idx.rec_fill[recs]) |
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


def _grown_record(ck, rec: int, data: bytes) -> bytes:
    """A ZERO record that must now hold non-uniform content, rewritten as
    a PAGE record (same offset, same block naming).
    """
    idx = ck.layout.ram
    hdr_off = int(idx.rec_hdr[rec])
    data_off = int(idx.rec_data[rec])
    old = int.from_bytes(ck.stream[hdr_off:hdr_off + 8], 'big')
    keep = old & (~qemu_stream.RAM_FLAG_MASK | qemu_stream.RAM_CONTINUE)
    name = bytes(ck.stream[hdr_off + 8:data_off])
    flags = keep | qemu_stream.RAM_PAGE
    return flags.to_bytes(8, 'big') + name + data


def _edit_columns(ck, edits):
    idx = ck.layout.ram
    kind = idx.rec_kind[edits.recs]
    fill = edits.fills[edits.content] if len(edits) else \
        np.zeros(0, np.int64)
    return idx.rec_hdr[edits.recs], idx.rec_data[edits.recs], kind, fill


def _patch_buffer(buf, pos, edits, cols, lo, hi):
    """Apply the same-size edits ``lo:hi`` to ``buf`` (stream bytes from
    offset ``pos``).
    """
    _, dat, kind, fill = cols
    d = dat[lo:hi] - pos
    k = kind[lo:hi]
    c = edits.content[lo:hi]
    page = k == ram_index.KIND_PAGE
    for ci in np.unique(c[page]).tolist():
        rows = d[page & (c == ci)]
        if edits.fills[ci] >= 0:
            journal.fill_rows(buf, rows, PAGE_SIZE, int(edits.fills[ci]))
        else:
            content = np.frombuffer(edits.contents[ci], dtype=np.uint8)
            for r in rows.tolist():
                buf[r:r + PAGE_SIZE] = content
    zero = ~page
    buf[d[zero]] = fill[lo:hi][zero]


def _write_stream(ck, edits, out, progress) -> None:
    """Write the stream with the edits applied to ``out``, in chunks:
    same-size edits are applied with numpy to a copy of each chunk; a ZERO
    record that must hold non-uniform content is spliced in as a PAGE
    record.
    """
    fd = ck.stream_file.fileno()
    cols = _edit_columns(ck, edits)
    hdr, dat, kind, fill = cols
    grow = np.nonzero((kind == ram_index.KIND_ZERO) & (fill < 0))[0]
    cursor = 0
    for g in grow.tolist() + [None]:
        end = ck.stream_size if g is None else int(hdr[g])
        pos = cursor
        while pos < end:
            stop = min(end, pos + _COPY_CHUNK)
            j = int(np.searchsorted(dat, stop)) - 1
            if (j >= 0 and kind[j] == ram_index.KIND_PAGE and
                    dat[j] < stop < dat[j] + PAGE_SIZE):
                stop = int(dat[j]) + PAGE_SIZE
            lo = int(np.searchsorted(dat, pos))
            hi = int(np.searchsorted(dat, stop))
            # pread, not a copy out of the mmap: page faults on a mapping
            # cost several times a read of the same bytes.
            raw = bytearray(stop - pos)
            if os.preadv(fd, [raw], ck.stream_base + pos) != len(raw):
                raise exception.CheckpointError(
                    ck.path, 'short read of the memory stream',
                    ck.stream_base + pos)
            if lo != hi:
                _patch_buffer(np.frombuffer(raw, dtype=np.uint8), pos,
                              edits, cols, lo, hi)
            out.write(raw)
            pos = stop
            if progress:
                progress(pos, ck.stream_size)
        if g is not None:
            rec = int(edits.recs[g])
            out.write(_grown_record(ck, rec,
                                    edits.contents[edits.content[g]]))
            cursor = int(dat[g]) + 1


def _rewrite_file(ck, edits, target, progress):
    st = os.stat(ck.path)
    # The new file is made in the target's directory so that the final
    # step is an atomic rename within one filesystem.
    tmp_dir = os.path.dirname(os.path.abspath(target))
    fd, tmp_path = tempfile.mkstemp(prefix=temp_prefix(target),
                                    dir=tmp_dir)
    try:
        with os.fdopen(fd, 'wb') as f:
            groups = None if ck.compressed else _groups(ck, edits)
            if groups is not None:
                # Same size, raw: copy in the kernel, then patch the copy.
                _copy_file(ck.path, f.fileno(), progress)
                journal.apply(tmp_path, groups)
            else:
                if ck.header:
                    f.write(ck.header.raw)
                out = f
                if ck.compressed:
                    out = compression.Compressor(ck.compressed, f, ck.path)
                _write_stream(ck, edits, out, progress)
                if out is not f:
                    out.close()
            f.flush()
            os.fchmod(f.fileno(), st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        journal.fsync_dir(target)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise


def _copy_file(src: str, dst_fd: int, progress) -> None:
    """Copy ``src`` to the start of ``dst_fd`` inside the kernel."""
    with open(src, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        done = 0
        while done < size:
            n = os.copy_file_range(f.fileno(), dst_fd,
                                   min(size - done, 1 << 30), done, done)
            if n <= 0:
                raise exception.CheckpointError(src, 'short copy', done)
            done += n
            if progress:
                progress(done, size)


def _groups(ck, edits) -> list | None:
    """The edits as journal groups of same-size patches at file offsets;
    None when a record must change size (it cannot be patched in
    place).
    """
    hdr, dat, kind, fill = _edit_columns(ck, edits)
    if ((kind == ram_index.KIND_ZERO) & (fill < 0)).any():
        return None
    groups = []
    page = kind == ram_index.KIND_PAGE
    offs = dat + ck.stream_base
    for ci in np.unique(edits.content).tolist():
        mine = edits.content == ci
        f = int(edits.fills[ci])
        if f >= 0:
            groups.append(journal.Group(journal.FILL_PAGE, offs[mine & page],
                                        fill=f))
            groups.append(journal.Group(journal.FILL_BYTE,
                                        offs[mine & ~page], fill=f))
        else:
            groups.append(journal.Group(journal.FULL_PAGE, offs[mine & page],
                                        content=edits.contents[ci]))
    return [g for g in groups if len(g.offsets)]


def _patch_in_place(ck, edits):
    if ck.compressed:
        raise exception.CheckpointError(
            ck.path, 'in-place scrubbing needs a raw image; this one is %s-'
                     'compressed' % ck.header.compression)
    groups = _groups(ck, edits)
    if groups is None:
        hdr, _, kind, fill = _edit_columns(ck, edits)
        grow = (kind == ram_index.KIND_ZERO) & (fill < 0)
        raise exception.CheckpointError(
            ck.path, 'page record at offset %d is a ZERO record and '
                     'cannot take new content in place'
            % (ck.stream_base + int(hdr[np.argmax(grow)])))
    journal.write(ck.path, groups)
    journal.apply(ck.path, groups)
    journal.remove(ck.path)


def rewrite_pages(ck, replacements: dict[int, bytes],
                  output: str | None = None, in_place: bool = False,
                  work_dir: str | None = None,
                  progress=None) -> RewriteResult:
    """Replace guest frames in checkpoint ``ck`` (an open
    :class:`~sparc_nova.checkpoint.checkpoint.Checkpoint`).

    :param replacements: guest frame number (gpa >> 12) to its new 4096
        bytes.
    :param output: where to write the result; None replaces ``ck.path``.
    :param in_place: patch ``ck.path`` itself (raw images only; ``output``
        must be None).
    :param work_dir: where :meth:`RewriteResult.verify` decompresses a
        compressed result (the rewritten file itself is always made in the
        target's directory, so that the final rename is atomic).
    :returns: a :class:`RewriteResult`; call its ``verify()`` to re-parse
        the result. On any error the target is untouched.
    """
    if in_place and output not in (None, ck.path):
        raise ValueError('in_place and output are exclusive')
    edits = _plan(ck, replacements)
    result = RewriteResult(path=output or ck.path, pages=len(replacements),
                           records_rewritten=len(edits), in_place=in_place,
                           replacements=dict(replacements),
                           work_dir=work_dir)
    if in_place:
        _patch_in_place(ck, edits)
    else:
        _rewrite_file(ck, edits, result.path, progress)
    return result
