"""Seal and unseal: exclude processes from a memory checkpoint at rest
without losing them.

A **seal** selects, follows and plans exactly as a scrub
(:func:`.memory.plan_exclusion`, the planner with ``Exclusion.kill``
off), then, before the checkpoint is rewritten, encrypts everything the
plan zeroes for the excluded processes into the sealed-pages file next
to the checkpoint (:mod:`sparc_nova.checkpoint.sealed`): their frames
(frame runs) and the kernel-held bytes the plan writes (byte ranges:
pipe, socket and tty buffers, page-cache flags). The checkpoint is then
rewritten as a scrub would write it, with no kill armed, and read back.
Free memory (free frames and free slab objects) is scrubbed, not sealed:
it belongs to no one.

An **unseal** opens the sealed-pages file with the key, checks everything
before it writes anything (the file's header and every record's tag,
that it was sealed from this checkpoint, and that every sealed frame and
byte range still holds what the seal wrote), writes the original bytes
back (to a new file, replacing the checkpoint atomically, or in place
through the journal), reads them back, and only then removes the
sealed-pages file.

A sealed checkpoint must be unsealed before it is restored: restored
sealed, its excluded processes run on zeroed pages (no kill is armed),
and crash or misbehave. When the key is lost, :func:`kill_sealed` turns
it into a scrubbed checkpoint instead: the excluded processes are killed
on restore, as after a scrub, and the sealed-pages file is deleted.
"""

import os
import threading
import time
import typing

import numpy as np

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import physmem
from sparc_nova.checkpoint import rewrite
from sparc_nova.checkpoint import sealed
from sparc_nova.checkpoint import tempfiles
from sparc_nova.checkpoint import write_mode
from sparc_nova.engine import background
from sparc_nova.engine import errors
from sparc_nova.engine import memory
from sparc_nova.engine import patches
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import sandbox as sandbox_mod
from sparc_nova.engine import session as session_mod
from sparc_nova import exception
from sparc_nova.introspect import arrays
from sparc_nova.introspect import physical

__all__ = ['SealError', 'kill_sealed', 'seal_checkpoint', 'seal_planned',
           'sealed_records', 'unseal_checkpoint']

PAGE_SIZE = physical.PAGE_SIZE


class SealError(errors.ScrubError):
    """A seal or an unseal is refused or failed; the checkpoint is as it
    was (an unseal wrote nothing).
    """


def seal_checkpoint(path: str, selectors, key: bytes, *,
                    output: str | None = None, in_place: bool = False,
                    with_children: bool = False,
                    scrub_free_memory: bool = True,
                    work_dir: str | None = None, progress=None,
                    follow_ipc: bool = True, exclude_paths=(),
                    buildid_cache_dir: str | None = None,
                    limits: limits_mod.Limits | None = None,
                    sandbox: sandbox_mod.SandboxPolicy | None = None,
                    journal_key: str | None = None,
                    journal_dir: str | None = None
                    ) -> report_mod.ScrubReport:
    """Seal the processes ``selectors`` select out of checkpoint ``path``.

    The arguments are :func:`.memory.scrub_checkpoint`'s (no dry run, no
    following of an image being written) plus ``key``, the caller's 32
    bytes that wrap the seal's fresh data key. The sealed-pages file is
    written next to the result (``output``, else ``path``:
    :func:`.sealed.sealed_path`) before the checkpoint is rewritten, and
    named in ``report.seal['file']``.

    :raises ValueError: ``key`` is not 32 bytes.
    :raises SealError: a sealed-pages file is already there, the plan
        holds a kill, or the write fails (no sealed-pages file is left and
        the checkpoint is unchanged).
    :raises ScrubError, CheckpointError: as a scrub.
    """
    sealed.check_key(key)
    write_mode.check_request(path, output=output, in_place=in_place)
    exclusion = memory.checked_exclusion(
        selectors, with_children=with_children,
        scrub_free_memory=scrub_free_memory, follow_ipc=follow_ipc,
        exclude_paths=exclude_paths, kill=False)
    rep = report_mod.ScrubReport(
        checkpoint=path, selectors=[str(s) for s in exclusion.selectors])
    with rep.measuring_memory():
        s, patcher = memory.plan_exclusion(
            path, exclusion, rep, work_dir=work_dir, limits=limits,
            buildid_cache_dir=buildid_cache_dir, sandbox=sandbox,
            progress=progress)
        seal_planned(s, path, patcher, key, rep, output=output,
                     in_place=in_place, work_dir=work_dir, limits=limits,
                     progress=progress, journal_key=journal_key,
                     journal_dir=journal_dir)
    rep.timings['total'] = rep.elapsed()
    return rep


def seal_planned(s: session_mod.KernelSession, path: str,
                 patcher: patches.PagePatcher, key: bytes,
                 rep: report_mod.ScrubReport, *, output: str | None,
                 in_place: bool, work_dir: str | None,
                 limits: limits_mod.Limits | None, progress=None,
                 journal_key: str | None = None,
                 journal_dir: str | None = None) -> None:
    """From a plan to a sealed checkpoint: the sealed-pages file, the
    rewrite, the read back (sets ``rep.seal``, ``output``, ``rewrite``
    and ``verification``). Closes session ``s``.

    The sealed-pages file is complete on disk before the checkpoint (or
    ``output``) is touched. A rewrite to a new file is written while the
    sealed-pages file is (in a thread of its own): the new file
    takes its place only once the sealed-pages file is synced
    (``timings['seal_wait']``: how long it waited for it). In place, or
    into a container, the sealed-pages file is written first
    (``timings['seal']``). The sealed-pages file is removed again if the
    rewrite fails, or if the verification of an ``output`` fails (which
    removes that output).
    """
    try:
        write = write_mode.choose(path, s.ck.compressed, output=output,
                                  in_place=in_place, journal_key=journal_key,
                                  journal_dir=journal_dir)
    except BaseException:
        s.close()
        raise
    spath = sealed.sealed_path(write.target)
    try:
        kills = [f for f in patcher.fields
                 if f.kind in (patches.SIGNAL, patches.TIMER)]
        if kills:
            raise SealError(path, 'the plan arms a kill (%s at 0x%x); a '
                                  'seal arms none' % (kills[0].what,
                                                      kills[0].paddr))
        if os.path.lexists(spath):
            raise SealError(path, 'refused: a sealed-pages file is already '
                                  'there: %s (unseal or remove it first)'
                            % spath)
        identity = sealed.identity_of(s.ck)
        filled = memory.filled_frames(s.memory, patcher)
        replacements = memory.changed_pages(s.memory, patcher, filled)
        work = _sealed_file_writer(path, spath, key, identity,
                                   sealed_records(s.memory, patcher, filled))
        rep.rewrite['frames_replaced'] = len(replacements)
        if rewrite.commits_by_rename(s.ck, write):
            writer = background.Background('sparc-seal-writer', work)
            writer.start()
        else:
            writer = None
            stats = work(threading.Event())
            rep.lap('seal')
        result = _rewrite_sealing(s, path, spath, replacements, write,
                                  writer, rep, work_dir, progress)
        if writer is not None:
            stats = writer.result()
        rep.seal = dict(stats, identity=identity.hex())
        rep.output = result.path
        rep.rewrite.update(result.to_dict())
        rep.lap('rewrite')
    finally:
        s.close()
    try:
        rep.verification = memory.verify_written(result.path, patcher,
                                                 write, work_dir, limits)
    except BaseException:
        if not write.replaces_source:
            _remove(spath)
        raise
    rep.lap('verify')


def _rewrite_sealing(s, path, spath, replacements, write, writer, rep,
                     work_dir, progress) -> rewrite.RewriteResult:
    """:func:`.memory.write_pages` of a seal whose sealed-pages file
    ``spath`` is written: already, or by ``writer`` (started), in which
    case the new file is committed only after ``writer`` finished, and on
    any failure ``writer`` is stopped. If the rewrite fails, the
    sealed-pages file is removed when this seal made it (never one that
    was there before).
    """
    def before_commit():
        started = time.monotonic()
        writer.result()
        rep.timings['seal_wait'] = round(time.monotonic() - started, 4)

    try:
        result = memory.write_pages(
            s, path, replacements, write=write, work_dir=work_dir,
            progress=progress,
            before_commit=None if writer is None else before_commit)
        if writer is not None:
            writer.result()
        return result
    except BaseException:
        if writer is not None:
            writer.stop()
        if writer is None or writer.finished:
            _remove(spath)
        raise


def _sealed_file_writer(path: str, spath: str, key: bytes,
                        identity: bytes,
                        records: typing.Iterator[sealed.Record]):
    """The work (for :class:`.background.Background`, or called at once)
    of writing the sealed-pages file ``spath`` of ``records``: returns
    :func:`.sealed.write`'s figures; stops between two records when
    asked.

    :raises SealError: the file cannot be written (none is left).
    """
    def write(stopping: threading.Event) -> dict:
        def until_stopped():
            for rec in records:
                if stopping.is_set():
                    raise SealError(path, 'sealing stopped: the rewrite '
                                          'failed')
                yield rec
        try:
            return sealed.write(spath, key, identity, until_stopped())
        except SealError:
            raise
        except exception.CheckpointError as e:
            raise SealError(path, 'cannot seal: %s' % e)
    return write


def _runs(pfns: np.ndarray, most: int):
    """``(first, count)`` of the runs of consecutive frames of sorted
    ``pfns``, each at most ``most`` long.
    """
    if not len(pfns):
        return
    breaks = np.nonzero(np.diff(pfns) != 1)[0] + 1
    starts = np.concatenate([[0], breaks]).tolist()
    ends = np.concatenate([breaks, [len(pfns)]]).tolist()
    for a, b in zip(starts, ends):
        for i in range(a, b, most):
            yield int(pfns[i]), min(most, b - i)


def _mask_runs(mask: bytearray):
    """``(start, end)`` of the runs of non-zero bytes of ``mask``."""
    arr = np.frombuffer(bytes(mask), dtype=np.uint8) != 0
    edges = np.diff(np.concatenate([[0], arr.astype(np.int8), [0]]))
    return zip(np.nonzero(edges == 1)[0].tolist(),
               np.nonzero(edges == -1)[0].tolist())


def sealed_records(mem, patcher: patches.PagePatcher,
                   filled: dict[int, np.ndarray] | None = None
                   ) -> typing.Iterator[sealed.Record]:
    """The records of the seal of ``patcher`` over ``mem`` (the
    checkpoint's memory before the rewrite), generated in order: a frame
    run for every run of frames the plan sets to a fill and that do not
    hold it yet (``filled``: :func:`.memory.filled_frames`, computed here
    when not given), free frames excepted; a byte range for every run of
    bytes the plan's field writes change in a page, free slab objects
    excepted. Each frame run's pages are read when it is generated, into
    one buffer that the next frame run reuses: a frame run's ``pages``
    (a memoryview) hold its pages only until the next record is asked
    for (:func:`.sealed.write` encrypts and writes each record before
    it asks for the next). The excluded processes' memory is never held
    whole, and no buffer is allocated per record.
    """
    free = patcher.free_frames
    if filled is None:
        filled = memory.filled_frames(mem, patcher)
    buf = memoryview(bytearray(sealed.MAX_RUN_FRAMES * PAGE_SIZE))
    for fill, changing in sorted(filled.items()):
        need = changing[~arrays.isin_sorted(changing, free)] \
            if len(free) else changing
        for first, n in _runs(need, sealed.MAX_RUN_FRAMES):
            pages = buf[:n * PAGE_SIZE]
            mem.read_into(first * PAGE_SIZE, pages)
            yield sealed.FrameRun(first, fill, pages)
    masks = {}
    for f in patcher.fields:
        if f.kind == patches.FREE_OBJECT:
            continue
        mask = masks.setdefault(f.paddr // PAGE_SIZE, bytearray(PAGE_SIZE))
        within = f.paddr % PAGE_SIZE
        mask[within:within + len(f.new)] = b'\1' * len(f.new)
    for pfn in sorted(masks):
        for a, b in _mask_runs(masks[pfn]):
            paddr = pfn * PAGE_SIZE + a
            original = mem.read(paddr, b - a)
            written = patcher.final_bytes(paddr, b - a)
            if original != written:
                yield sealed.ByteRange(paddr, original, written)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
        tempfiles.fsync_directory(os.path.dirname(path))
    except OSError:
        pass


class _RestoredPages:
    """What an unseal writes, as a :class:`.rewrite.PageSource`: the
    pages of the frame runs of ``sealed_pages`` (decrypted when asked),
    then ``patched``, the pages its byte ranges change (each 4096
    bytes).
    """

    def __init__(self, sealed_pages: sealed.SealedPages,
                 patched: list[bytes]) -> None:
        self._sealed = sealed_pages
        self._patched = patched
        self._first = len(sealed_pages)
        self.fills = np.concatenate([
            sealed_pages.fills,
            np.array([p[0] if p == bytes([p[0]]) * PAGE_SIZE else -1
                      for p in patched], dtype=np.int16)])

    def __len__(self) -> int:
        return self._first + len(self._patched)

    def __getitem__(self, index: int):
        if index < self._first:
            return self._sealed[index]
        if index >= len(self):
            raise IndexError(index)
        return self._patched[index - self._first]

    def pages(self, index: int, count: int):
        if index + count <= self._first:
            return self._sealed.pages(index, count)
        return b''.join([bytes(self[i])
                         for i in range(index, index + count)])


def _restorations(path: str, mem, pages: sealed.SealedPages
                  ) -> tuple[rewrite.PageReplacements, dict]:
    """The pages an unseal writes and their counts, after checking every
    record of the opened sealed-pages file ``pages`` against ``mem``
    (the sealed checkpoint): its frames are RAM, named by no other
    record, and still hold what the seal wrote.

    The frame runs' pages come first, in record order, then the pages
    byte ranges change. The frame runs' pages stay in the file
    (:class:`_RestoredPages`): they are decrypted when the rewrite
    writes them.

    :raises SealError: naming ``path``: the checkpoint changed since it
        was sealed, or the records overlap.
    """
    counts = pages.run_frames
    total = int(counts.sum())
    # Every run's frames, in record order, and per frame its run.
    run_of = np.repeat(np.arange(len(counts)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    frames = pages.run_first_pfn[run_of] + (
        np.arange(total, dtype=np.int64) - starts[run_of])
    ram = mem.is_ram(frames)
    if not ram.all():
        raise SealError(path, 'the sealed pages name frame 0x%x, which '
                              'is not RAM of this checkpoint'
                        % int(pages.run_first_pfn[run_of[np.argmin(ram)]]))
    fill = pages.run_fill[run_of]
    for f in np.unique(fill).tolist():
        mine = np.nonzero(fill == f)[0]
        held = mem.holds(frames[mine], f)
        if not held.all():
            raise SealError(path, 'changed since it was sealed: frame 0x%x '
                                  'no longer holds the 0x%02x bytes the seal '
                                  'wrote' % (int(frames[mine][~held][0]), f))
    ordered = np.sort(frames)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(twice):
        raise SealError(path, 'the sealed pages name frame 0x%x twice'
                        % int(twice[0]))
    patched = {}
    masks = {}
    for rec in pages.byte_ranges:
        pfn, within, n = (rec.paddr // PAGE_SIZE, rec.paddr % PAGE_SIZE,
                          len(rec.original))
        if not mem.is_ram([pfn])[0] or \
                arrays.isin_sorted(np.array([pfn], dtype=np.int64),
                                   ordered)[0]:
            raise SealError(path, 'the sealed bytes at 0x%x are not in a '
                                  'RAM page of this checkpoint, or in a '
                                  'sealed frame' % rec.paddr)
        mask = masks.setdefault(pfn, bytearray(PAGE_SIZE))
        if any(mask[within:within + n]):
            raise SealError(path, 'the sealed bytes at 0x%x overlap other '
                                  'sealed bytes' % rec.paddr)
        mask[within:within + n] = b'\1' * n
        if mem.read(rec.paddr, n) != rec.sealed:
            raise SealError(path, 'changed since it was sealed: the %d '
                                  'bytes at 0x%x no longer hold what the '
                                  'seal wrote' % (n, rec.paddr))
        page = patched.setdefault(pfn, bytearray(mem.read(pfn * PAGE_SIZE,
                                                          PAGE_SIZE)))
        page[within:within + n] = rec.original
    pfns = np.concatenate([frames, np.array(sorted(patched),
                                            dtype=np.int64)])
    contents = _RestoredPages(pages, [bytes(patched[pfn])
                                      for pfn in sorted(patched)])
    replacements = rewrite.PageReplacements(
        pfns, np.arange(len(pfns), dtype=np.int64), contents)
    return replacements, {'frames_restored': total,
                          'byte_ranges_restored': len(pages.byte_ranges),
                          'pages_written': len(pfns)}


def _read_back(path: str, result: rewrite.RewriteResult,
               pages: sealed.SealedPages) -> dict:
    """Parse the written checkpoint again and check that every restored
    frame reads back: each frame run's frames by the run's tag
    (:meth:`.sealed.SealedPages.run_holds`: the sealed-pages file is not
    decrypted a second time), each page a byte range changed as
    ``result`` wrote it.

    :raises SealError: naming ``path`` and the first frame that does not.
    """
    replacements = result.replacements
    patched = replacements.pfns[len(pages):].tolist()
    try:
        with checkpoint.open_checkpoint(result.path,
                                        work_dir=result.work_dir,
                                        snapshot=result.snapshot) as ck:
            mem = ck.memory
            for run, (first, n) in enumerate(zip(
                    pages.run_first_pfn.tolist(),
                    pages.run_frames.tolist())):
                frames = np.arange(first, first + n, dtype=np.int64)
                if not pages.run_holds(run, mem.frames(frames)):
                    raise SealError(path, 'the unsealed pages do not read '
                                          'back: the frames from 0x%x'
                                    % first)
            for i, pfn in enumerate(patched, start=len(pages)):
                if mem.read_page(pfn) != bytes(replacements.contents[i]):
                    raise SealError(path, 'the unsealed pages do not read '
                                          'back: frame 0x%x' % pfn)
    except (exception.CheckpointError, physmem.PhysicalAddressError) as e:
        raise SealError(path, 'the unsealed pages do not read back: %s' % e)
    return {'result': 'ok', 'reparsed': True,
            'frames_checked': len(replacements)}


def unseal_checkpoint(path: str, key: bytes, *, output: str | None = None,
                      in_place: bool = False, sealed_file: str | None = None,
                      work_dir: str | None = None,
                      limits: limits_mod.Limits | None = None,
                      progress=None, journal_key: str | None = None,
                      journal_dir: str | None = None) -> dict:
    """Put back what a seal of checkpoint ``path`` took out.

    :param key: the 32 bytes the seal was made with.
    :param output: write the unsealed checkpoint here (atomically); else
        ``in_place`` (raw images sealed in place: patched through the
        journal keyed by ``journal_key``), else ``path`` is replaced
        atomically.
    :param sealed_file: the sealed-pages file (default:
        :func:`.sealed.sealed_path` of ``path``).
    :returns: ``{'checkpoint', 'output', 'sealed_file', 'frames_restored',
        'byte_ranges_restored', 'pages_written', 'rewrite',
        'verification', 'timings'}``; the timings' phases are ``open``
        (parse the checkpoint and the sealed-pages file, check the key
        and the tags), ``check`` (every record against the checkpoint),
        ``rewrite`` and ``verify``, and they hold the process's peak
        memory (``peak_rss_mib``, ``peak_private_mib``). Written to a new
        file (``output``, or replacing ``path``), the frame runs' tags are
        checked as the rewrite decrypts their pages, and every one before
        the new file takes its place; in place, every tag is checked
        before anything is written.
    :raises SealedFileError: the key does not open the sealed-pages file,
        or it is altered, truncated, refused, or for another checkpoint;
        nothing was written (a new file begun is removed).
    :raises SealError: the checkpoint changed since it was sealed (nothing
        was written), or the read back failed (an ``output`` is removed).
    :raises CheckpointError: the checkpoint does not parse, or the rewrite
        refuses (a record that cannot grow in place).
    """
    sealed.check_key(key)
    write_mode.check_request(path, output=output, in_place=in_place)
    rep = report_mod.ScrubReport(checkpoint=path)
    spath = sealed_file or sealed.sealed_path(path)
    with rep.measuring_memory():
        out = _unseal(path, key, spath, rep, output=output,
                      in_place=in_place, work_dir=work_dir, limits=limits,
                      progress=progress, journal_key=journal_key,
                      journal_dir=journal_dir)
    rep.timings['total'] = rep.elapsed()
    out['timings'] = rep.timings
    return out


def _unseal(path: str, key: bytes, spath: str, rep: report_mod.ScrubReport,
            *, output, in_place, work_dir, limits, progress,
            journal_key, journal_dir) -> dict:
    """:func:`unseal_checkpoint`'s steps, its arguments checked; laps
    ``rep``.
    """
    s = session_mod.open_session(path, work_dir=work_dir, limits=limits,
                                 buildid_cache_dir=None, model_kernel=False,
                                 progress=progress)
    # The sealed pages stay open until the read back has compared them.
    pages = None
    try:
        try:
            write = write_mode.choose(path, s.ck.compressed, output=output,
                                      in_place=in_place,
                                      journal_key=journal_key,
                                      journal_dir=journal_dir)
            # A new file is written only from pages whose tags checked and
            # takes the checkpoint's place only once every tag checked:
            # the frame runs are read once, as they are written.
            deferred = rewrite.commits_by_rename(s.ck, write)
            identity = sealed.identity_of(s.ck)
            ram = sum(end - start for start, end in s.memory.ranges)
            pages = sealed.open_pages(spath, key, identity, ram,
                                      defer_frame_runs=deferred)
            rep.lap('open')
            replacements, counts = _restorations(path, s.memory, pages)
            rep.lap('check')
            result = memory.write_pages(
                s, path, replacements, write=write, work_dir=work_dir,
                progress=progress,
                before_commit=pages.check_unread if deferred else None)
            rep.lap('rewrite')
        finally:
            s.close()
        # The read back checks the frame runs by the tags kept when they
        # were decrypted: the sealed-pages file is not read again, and its
        # cached pages are dropped meanwhile (else its removal frees them).
        dropping = background.Background(
            'sparc-unseal-drop-cache', lambda stopping: pages.drop_cache())
        dropping.start()
        try:
            verification = _read_back(path, result, pages)
        except BaseException:
            if not write.replaces_source:
                _remove(write.target)
            raise
        finally:
            dropping.stop()
        rep.lap('verify')
    finally:
        if pages is not None:
            pages.close()
    os.unlink(spath)
    tempfiles.fsync_directory(os.path.dirname(os.path.abspath(spath)))
    return dict(counts, checkpoint=path, output=result.path,
                sealed_file=spath, rewrite=result.to_dict(),
                verification=verification)


def kill_sealed(path: str, selectors, *, sealed_file: str | None = None,
                **options) -> report_mod.ScrubReport:
    """Give up a seal whose key is lost: scrub the sealed checkpoint
    ``path`` with the kill armed, then delete its sealed-pages file.

    The excluded processes' pages already hold zeros; their kernel
    state (task, memory map, files) is intact, so a scrub with the
    seal's ``selectors`` finds them again and arms their kill on
    restore, exactly as a scrub of the original checkpoint would have.
    Free memory is scrubbed again (a no-op for what the seal zeroed).

    :param sealed_file: the sealed-pages file (default:
        :func:`.sealed.sealed_path` of ``path``); it must exist (its header
        is checked, no key needed).
    :param options: the keyword arguments of
        :func:`.memory.scrub_checkpoint` (not ``dry_run``, ``follow`` or
        ``file``).
    :returns: the scrub's report (a scrub's: the sealed-pages file is
        gone).
    :raises SealedFileError: there is no sealed-pages file, or it is
        refused.
    :raises ScrubError, CheckpointError: the scrub failed; the
        sealed-pages file is kept (an unseal with the key still works if
        the checkpoint was not rewritten).
    """
    for name in ('dry_run', 'follow', 'file'):
        if name in options:
            raise TypeError('kill_sealed() takes no %r' % name)
    spath = sealed_file or sealed.sealed_path(path)
    if sealed.peek(spath) is None:
        raise sealed.SealedFileError(spath, 'no sealed-pages file (was '
                                            'this checkpoint sealed?)')
    rep = memory.scrub_checkpoint(path, selectors, **options)
    os.unlink(spath)
    tempfiles.fsync_directory(os.path.dirname(os.path.abspath(spath)))
    return rep
