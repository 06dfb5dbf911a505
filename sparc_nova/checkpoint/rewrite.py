"""Replace guest pages in a memory checkpoint.

Every copy of a replaced page is changed (a live-migration style stream may
send a page several times; the last copy is what QEMU loads, but every copy
holds the old bytes). Two modes:

* rewrite (default): a new file is written next to the target (or in
  ``work_dir``), fsync'd, given the original's owner and mode, and renamed
  over the target; the directory is fsync'd. A crash leaves either the old
  or the new file. Compressed images are recompressed with the same
  program. A uniform page becomes a ZERO record (9 bytes instead of 4104).
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
from sparc_nova.checkpoint import qemu_stream
from sparc_nova.checkpoint import ram_index
from sparc_nova import exception

PAGE_SIZE = ram_index.PAGE_SIZE
_COPY_CHUNK = 8 * 1024 * 1024


@dataclasses.dataclass
class RewriteResult:
    """What :func:`rewrite_pages` did.

    :ivar path: the file now holding the result.
    :ivar pages: guest frames replaced.
    :ivar records_rewritten: stream records changed (>= pages).
    :ivar zero_records: of those, written as ZERO records.
    :ivar in_place: whether the file was patched in place.
    """

    path: str
    pages: int
    records_rewritten: int
    zero_records: int
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
                'zero_records': self.zero_records,
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


def _plan(ck, replacements):
    """[(record number, new content)] for every affected copy, in stream
    order.
    """
    idx = ck.layout.ram
    by_block = {}                       # block -> {page: data}
    for pfn, data in replacements.items():
        if len(data) != PAGE_SIZE:
            raise ValueError('replacement for frame 0x%x is %d bytes, not '
                             '%d' % (pfn, len(data), PAGE_SIZE))
        b, p = ck.memory.locate(pfn << 12)
        if int(idx.last[b][p]) < 0:
            raise exception.CheckpointError(
                ck.path, 'guest frame 0x%x is not in the stream' % pfn)
        by_block.setdefault(b, {})[p] = data
    edits = []
    uniform = {}
    for b, pages in by_block.items():
        last = idx.last[b]
        # Every copy of every wanted page of this block, in one pass.
        recs = idx.copies_of(b, np.fromiter(pages, dtype=np.int64,
                                            count=len(pages)))
        for rec in recs.tolist():
            p = int(idx.rec_page[rec])
            data = pages[p]
            if idx.rec_kind[rec] == ram_index.KIND_ZERO:
                key = id(data)
                if key not in uniform:
                    uniform[key] = _uniform(data)
                if uniform[key] == idx.rec_fill[rec]:
                    continue            # already what we want
                if rec != int(last[p]):
                    continue            # overwritten on load; holds no data
            edits.append((int(idx.rec_hdr[rec]), rec, data))
    edits.sort()
    return edits


def _record_bytes(ck, rec: int, data: bytes) -> tuple[bytes, bool]:
    """The replacement record for record ``rec`` with content ``data``."""
    idx = ck.layout.ram
    hdr_off = int(idx.rec_hdr[rec])
    data_off = int(idx.rec_data[rec])
    old = int.from_bytes(ck.stream[hdr_off:hdr_off + 8], 'big')
    keep = old & (~qemu_stream.RAM_FLAG_MASK | qemu_stream.RAM_CONTINUE)
    name = bytes(ck.stream[hdr_off + 8:data_off])
    fill = _uniform(data)
    if fill is not None:
        flags = keep | qemu_stream.RAM_ZERO
        return flags.to_bytes(8, 'big') + name + bytes([fill]), True
    flags = keep | qemu_stream.RAM_PAGE
    return flags.to_bytes(8, 'big') + name + data, False


def _record_end(ck, rec: int) -> int:
    idx = ck.layout.ram
    size = PAGE_SIZE if idx.rec_kind[rec] == ram_index.KIND_PAGE else 1
    return int(idx.rec_data[rec]) + size


def _copy_span(ck, out, start: int, end: int) -> None:
    for pos in range(start, end, _COPY_CHUNK):
        out.write(ck.stream[pos:min(end, pos + _COPY_CHUNK)])


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite_file(ck, edits, target, progress):
    st = os.stat(ck.path)
    # The new file is made in the target's directory so that the final
    # step is an atomic rename within one filesystem.
    tmp_dir = os.path.dirname(os.path.abspath(target))
    fd, tmp_path = tempfile.mkstemp(prefix=temp_prefix(target),
                                    dir=tmp_dir)
    zero = 0
    try:
        with os.fdopen(fd, 'wb') as f:
            if ck.header:
                f.write(ck.header.raw)
            out = f
            if ck.compressed:
                out = compression.Compressor(ck.compressed, f, ck.path)
            cursor = 0
            for n, (hdr_off, rec, data) in enumerate(edits):
                _copy_span(ck, out, cursor, hdr_off)
                record, is_zero = _record_bytes(ck, rec, data)
                zero += is_zero
                out.write(record)
                cursor = _record_end(ck, rec)
                if progress and n % 1024 == 0:
                    progress(cursor, ck.stream_size)
            _copy_span(ck, out, cursor, ck.stream_size)
            if out is not f:
                out.close()
            f.flush()
            os.fchmod(f.fileno(), st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    return zero


def _patch_in_place(ck, edits):
    if ck.compressed:
        raise exception.CheckpointError(
            ck.path, 'in-place scrubbing needs a raw image; this one is %s-'
                     'compressed' % ck.header.compression)
    idx = ck.layout.ram
    for _, rec, _ in edits:
        if idx.rec_kind[rec] != ram_index.KIND_PAGE:
            raise exception.CheckpointError(
                ck.path, 'page record at offset %d is a ZERO record and '
                         'cannot take new content in place'
                % (ck.stream_base + int(idx.rec_hdr[rec])))
    patches = [(ck.stream_base + int(idx.rec_data[rec]), data)
               for _, rec, data in edits]
    journal.write(ck.path, patches)
    journal.apply(ck.path, patches)
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
                           records_rewritten=len(edits), zero_records=0,
                           in_place=in_place,
                           replacements=dict(replacements),
                           work_dir=work_dir)
    if in_place:
        _patch_in_place(ck, edits)
    else:
        result.zero_records = _rewrite_file(ck, edits, result.path,
                                            progress)
    return result
