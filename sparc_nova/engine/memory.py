"""The memory engine: exclude guest processes from a memory checkpoint.

:func:`scrub_checkpoint` is the engine's entry (the CLI, the privileged
daemon of the Nova driver and :mod:`.live` call it). It runs the scrub's
steps, each in a module of its own:

======================  ==================================================
step                    module
======================  ==================================================
open the checkpoint     :mod:`.session` (format, physical memory, kernel)
model and plan          :mod:`.sandboxed_plan` (in the sandbox child,
                        :mod:`.sandbox_calls`), :mod:`.planner` (which
                        pages are chosen; select, frames, free memory,
                        kernel copies, kill), :mod:`.patches` (the
                        queued changes), :mod:`.plan_codec` (the plan's
                        checked way back from the child)
write                   :mod:`sparc_nova.checkpoint.rewrite` (pages
                        zeroed in the file)
read back               :mod:`.verify`
======================  ==================================================

``ps``, ``deps`` and ``verify`` of ``sparc checkpoint`` are in
:mod:`.listings`. The engine receives its configuration from its caller
(``buildid_cache_dir``, ``limits``, ``sandbox``, ``journal_key``, built
from ``[sparc]`` by the CLI or the privileged daemon); it never reads the
global configuration.

``scrub_checkpoint(path, selectors, *, output=None, in_place=False,
with_children=False, scrub_free_memory=True, dry_run=False, work_dir=None,
progress=None, follow_ipc=True, exclude_paths=(), buildid_cache_dir=None,
limits=None, sandbox=None, follow=None, journal_key=None, write=None,
file=None, snapshot=None, journal_dir=None)
-> ScrubReport``

    Contract:

    * ``path``: a libvirt save image (raw or compressed; ``virsh save``,
      managed save, an external memory snapshot), a bare QEMU migration
      stream, or a guest memory dump (``virsh dump --memory-only --format
      elf``; it is never restored, so nothing is killed in it and the
      report's notes say so).
    * ``selectors``: process selectors (strings or
      :class:`~.selectors.Selector`; see :mod:`.selectors`).
    * Scrubs, in guest memory, every anonymous frame mapped only by the
      selected processes (a frame also mapped by an unselected process is
      reported, not touched; file-backed and shared pages are never
      touched), and, with ``scrub_free_memory`` (the default), every free
      frame (buddy and per-CPU lists; zero, or the guest's poison
      pattern) and free slab object. Every thread of a selected process
      gets a pending SIGKILL, and sleeping processes a wake-up, so that
      they die on restore before running on scrubbed memory
      (:mod:`.kill`).
    * Output: decided once by
      :func:`sparc_nova.checkpoint.write_mode.choose` from ``output``,
      ``in_place`` and ``journal_key`` and the checkpoint's compression,
      or given decided as ``write`` (the privileged daemon asks for in
      place where possible): ``output`` (a new file, atomically renamed
      into place), else in place (raw images: the original file patched,
      through the journal keyed by ``journal_key``), else the original
      file replaced atomically (same owner and mode, recompressed as it
      was). ``dry_run`` writes nothing and returns the plan.
    * Fails closed: on any error nothing is written (the original is
      unchanged, no output file is left) and a
      :class:`~sparc_nova.exception.SparcError` subclass names the file and
      the reason. After writing, the result is re-parsed and every scrubbed
      frame and patched field is read back; a mismatch raises
      :class:`~.errors.ScrubError` (an ``output`` file is then removed).
    * IPC (:mod:`.ipc`): the kernel-held copies of the selected processes'
      data are scrubbed with them: live pipe buffers, unix socket queues
      (theirs and the datagrams they sent), the buffers of terminals whose
      session they lead or whose pty master they hold, and shared memory
      (SysV, memfd, ``MAP_SHARED`` anonymous, POSIX shm, tmpfs files
      matching ``exclude_paths``) that only they hold. With ``follow_ipc``
      (the default) the processes they send data to (pipes, sockets,
      shared memory, ptys, ptrace) are excluded too, transitively, each
      with the edge that pulled it in; without it those processes are
      reported as at risk and only the buffers are scrubbed.
    * ``follow``: a :class:`~sparc_nova.checkpoint.stream_follow.Follow`
      when ``path`` is a libvirt save image still being written: it is
      parsed (here and in the sandbox child) as it is written, and the
      scrub goes on once libvirt has marked it complete (:mod:`.live`).
    * ``file``: ``path`` already open for reading (binary), to parse
      instead of opening ``path`` (the scrub then owns and closes it):
      a caller that checked the file it opened (owner, links, no
      symbolic link) makes sure the scrub reads that file. An in-place
      patch then writes only to that file (:mod:`.rewrite` checks its
      identity); the caller checks for an interrupted in-place scrub.
    * ``buildid_cache_dir``: ``[sparc] buildid_cache_dir`` (None: no
      cache); ``limits``: parser bounds (None: the defaults);
      ``work_dir``: where a compressed image is decompressed.
    * ``sandbox``: a :class:`~.sandbox.SandboxPolicy` (None: its defaults,
      sandbox on; callers pass ``SandboxPolicy.from_conf(conf)``). With
      it enabled the guest kernel is modelled and the plan computed in
      the unprivileged sandbox child (:mod:`.sandboxed_plan`); this
      process then only parses the checkpoint's format, validates the
      returned plan against the RAM pages of the checkpoint it opened
      itself, rewrites and verifies.
    * Returns a :class:`~.report.ScrubReport` (``to_dict()``,
      ``summary()``).
"""

import dataclasses
import os
import typing

import numpy as np

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import rewrite
from sparc_nova.checkpoint import stream_follow
from sparc_nova.checkpoint import write_mode
from sparc_nova.engine import errors
from sparc_nova.engine import memstats
from sparc_nova.engine import patches
from sparc_nova.engine import planner
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import sandbox as sandbox_mod
from sparc_nova.engine import sandboxed_plan
from sparc_nova.engine import selectors as selectors_mod
from sparc_nova.engine import verify
from sparc_nova import exception
from sparc_nova.introspect import physical
from sparc_nova.vocabulary import paths as vocabulary_paths

__all__ = ['ScrubReport', 'changed_pages', 'checked_exclusion',
           'filled_frames',
           'plan_exclusion', 'scrub_checkpoint', 'verify_written',
           'write_pages']

ScrubReport = report_mod.ScrubReport


def scrub_checkpoint(path: str, selectors, *, output: str | None = None,
                     in_place: bool = False, with_children: bool = False,
                     scrub_free_memory: bool = True, dry_run: bool = False,
                     work_dir: str | None = None, progress=None,
                     follow_ipc: bool = True, exclude_paths=(),
                     buildid_cache_dir: str | None = None,
                     limits: limits_mod.Limits | None = None,
                     sandbox: sandbox_mod.SandboxPolicy | None = None,
                     follow: stream_follow.Follow | None = None,
                     journal_key: str | None = None,
                     write: write_mode.WriteMode | None = None, file=None,
                     snapshot: str | None = None,
                     journal_dir: str | None = None
                     ) -> report_mod.ScrubReport:
    """Exclude processes from a memory checkpoint; see the module
    docstring for the contract. ``journal_key`` is the in-place journal's
    MAC key file (``[sparc] journal_key_file``), needed with ``in_place``;
    ``journal_dir`` the journal directory used in place where the
    directory of ``path`` is not private (``[sparc] journal_dir``).
    ``write``: the write mode already decided for ``path`` (then
    ``output``, ``in_place``, ``journal_key`` and ``journal_dir`` are not
    given).
    ``snapshot``: the internal snapshot to scrub when ``path`` is a qcow2
    disk image (its other snapshots and its disk are left as they are).
    """
    if write is not None and (output is not None or in_place or
                              journal_key is not None or
                              journal_dir is not None):
        raise TypeError('scrub_checkpoint() takes write or output, '
                        'in_place, journal_key and journal_dir, not both')
    if write is not None and write.source != path:
        raise errors.ScrubError(path, 'the write mode is for %s'
                                % write.source)
    write_mode.check_request(path, output=output, in_place=in_place)
    exclusion = checked_exclusion(
        selectors, with_children=with_children,
        scrub_free_memory=scrub_free_memory, follow_ipc=follow_ipc,
        exclude_paths=exclude_paths, kill=False)
    if follow is not None or file is not None or \
            checkpoint_mod.restorable(path):
        # A file being saved, or opened by a caller that checked it, is a
        # save image; a memory dump is never restored, so nothing is
        # killed in it.
        exclusion = dataclasses.replace(exclusion, kill=True)
    rep = report_mod.ScrubReport(
        checkpoint=path, dry_run=dry_run,
        selectors=[str(s) for s in exclusion.selectors])
    with rep.measuring_memory():
        return _scrub(path, exclusion, rep, dry_run=dry_run, write=write,
                      output=output, in_place=in_place,
                      journal_key=journal_key, journal_dir=journal_dir,
                      work_dir=work_dir,
                      limits=limits, buildid_cache_dir=buildid_cache_dir,
                      sandbox=sandbox, progress=progress, follow=follow,
                      file=file, snapshot=snapshot)


def checked_exclusion(selectors, *, with_children: bool,
                      scrub_free_memory: bool, follow_ipc: bool,
                      exclude_paths, kill: bool) -> planner.Exclusion:
    """The exclusion the arguments describe, refused before any work
    when a selector (:class:`~.errors.SelectorError`) or a path rule
    (:class:`~sparc_nova.vocabulary.errors.InvalidRule`) is malformed.
    """
    parsed = tuple(selectors_mod.parse_all(selectors))
    vocabulary_paths.parse_items(tuple(exclude_paths))
    return planner.Exclusion(
        selectors=parsed, with_children=with_children,
        scrub_free_memory=scrub_free_memory, follow_ipc=follow_ipc,
        exclude_paths=tuple(exclude_paths), kill=kill)


def _scrub(path: str, exclusion: planner.Exclusion,
           rep: report_mod.ScrubReport, *, dry_run: bool, write, output,
           in_place: bool, journal_key, journal_dir, work_dir, limits,
           buildid_cache_dir,
           sandbox, progress, follow, file,
           snapshot) -> report_mod.ScrubReport:
    """:func:`scrub_checkpoint`'s steps, once its arguments are checked
    and its report made.
    """
    s, patcher = plan_exclusion(
        path, exclusion, rep, work_dir=work_dir, limits=limits,
        buildid_cache_dir=buildid_cache_dir, sandbox=sandbox,
        progress=progress, follow=follow, file=file, snapshot=snapshot)
    if not exclusion.kill:
        rep.notes.append(planner.NO_RESTORE_NOTE)
    if snapshot is not None:
        rep.notes.append(
            'internal snapshot %r of a qcow2 image: only its memory state '
            'is written; restore it with virsh snapshot-revert' % snapshot)
    try:
        if dry_run:
            return rep
        if write is None:
            write = write_mode.choose(path, s.ck.compressed, output=output,
                                      in_place=in_place,
                                      journal_key=journal_key,
                                      journal_dir=journal_dir)
        replacements = changed_pages(s.memory, patcher, filled_frames(
            s.memory, patcher, read_pages=write.in_place))
        rep.rewrite['frames_replaced'] = len(replacements)
        result = write_pages(s, path, replacements, write=write,
                             work_dir=work_dir, progress=progress)
        rep.output = result.path
        rep.rewrite.update(result.to_dict())
        rep.lap('rewrite')
    finally:
        s.close()
    # The verification parses the written file anew: let go of the
    # source's RAM index and of what was written first, so that the two
    # are never held at once.
    del s, replacements, result
    memstats.give_back_free_memory()
    rep.verification = verify_written(rep.output, patcher, write,
                                      work_dir, limits, snapshot)
    rep.lap('verify')
    rep.timings['total'] = rep.elapsed()
    return rep


def plan_exclusion(path: str, exclusion: planner.Exclusion,
                   rep: report_mod.ScrubReport, *, work_dir: str | None,
                   limits: limits_mod.Limits | None,
                   buildid_cache_dir: str | None,
                   sandbox: sandbox_mod.SandboxPolicy | None,
                   progress=None,
                   follow: stream_follow.Follow | None = None,
                   file=None, snapshot: str | None = None):
    """Open ``path`` (internal snapshot ``snapshot`` of a qcow2 image)
    and plan ``exclusion`` (in the sandbox child unless
    ``sandbox`` disables it): ``(session, patcher)``, the caller closing
    the session. Fills ``rep`` with the plan's sections and laps.
    ``file``: ``path`` already open for reading (see
    :func:`.sandboxed_plan.open_and_start_plan`).
    """
    sandbox_policy = sandbox or sandbox_mod.SandboxPolicy()
    s, pending = sandboxed_plan.open_and_start_plan(
        path, exclusion, rep, work_dir=work_dir, limits=limits,
        buildid_cache_dir=buildid_cache_dir, sandbox_policy=sandbox_policy,
        progress=progress, follow=follow, file=file, snapshot=snapshot)
    try:
        if sandbox_policy.enabled:
            rep.lap('open')
            patcher = sandboxed_plan.receive_plan(s, path, rep, pending)
        else:
            rep.lap('parse_and_introspect')
            patcher = sandboxed_plan.plan_session(s, path, exclusion, rep)
            rep.lap('plan')
    except BaseException:
        s.close()
        raise
    return s, patcher


def write_pages(s, path: str,
                replacements: 'rewrite.PageReplacements | dict[int, bytes]',
                *,
                write: write_mode.WriteMode, work_dir: str | None,
                progress=None,
                before_commit: typing.Callable[[], None] | None = None
                ) -> rewrite.RewriteResult:
    """Write ``replacements`` (:func:`changed_pages`) into the checkpoint
    of session ``s`` the way ``write`` decided
    (:func:`.rewrite.rewrite_pages`: to a new file, in place, or
    replacing ``path``). ``before_commit``: as
    :func:`.rewrite.rewrite_pages`' (called before the new file takes
    the target's place).

    :raises ScrubError: naming ``path``: the file cannot be written.
    :raises CheckpointError: the rewrite refuses (raised as is).
    """
    try:
        return rewrite.rewrite_pages(s.ck, replacements, work_dir=work_dir,
                                     progress=progress, mode=write,
                                     before_commit=before_commit)
    except exception.CheckpointError:
        raise
    except OSError as e:
        raise errors.ScrubError(path, 'writing %s failed: %s'
                                % (write.target, e.strerror or e))


def verify_written(path: str, patcher: patches.PagePatcher,
                   write: write_mode.WriteMode, work_dir: str | None,
                   limits: limits_mod.Limits | None,
                   snapshot: str | None = None) -> dict:
    """Read back every change of ``patcher`` in the written ``path``
    (:func:`.verify.verify_rewrite`); on failure a new file the write
    made (``write`` did not replace the source) is removed and
    :class:`~.errors.ScrubError` raised.
    """
    try:
        return verify.verify_rewrite(path, patcher, work_dir, limits,
                                     snapshot)
    except BaseException as e:
        if not write.replaces_source:
            try:
                os.unlink(write.target)
            except OSError:
                pass
        if isinstance(e, exception.SparcError):
            raise errors.ScrubError(path, 'verification failed: %s' % e)
        raise


def filled_frames(memory, patcher: patches.PagePatcher, *,
                  read_pages: bool = True) -> dict[int, np.ndarray]:
    """Per fill byte ``patcher`` scrubs with: its frames (in
    ``patcher.scrubbed``'s order) that do not hold that byte in
    ``memory`` yet, the frames a scrub with it changes (int64).

    :param read_pages: look inside data pages too (a data page may hold
        nothing but the fill). False when every frame is written anew
        whatever it holds (a rewrite to a new file, where a fill record
        replacing such a page loads the same): then only the frames the
        checkpoint already records as that fill are left out, and no
        page is read (reading a gigabyte of excluded data costs more
        than the fill records it saves).
    """
    def holding(arr, fill):
        if read_pages:
            return memory.holds(arr, fill)
        return memory.fills(arr) == fill
    return {fill: np.asarray(arr, dtype=np.int64)[~holding(arr, fill)]
            for fill, arr in patcher.scrubbed.items() if len(arr)}


def changed_pages(memory, patcher: patches.PagePatcher,
                  filled: dict[int, np.ndarray] | None = None
                  ) -> rewrite.PageReplacements:
    """The new content of every frame ``patcher`` changes whose content
    in ``memory`` actually changes: what the rewrite writes. Held as
    arrays (:class:`~sparc_nova.checkpoint.rewrite.PageReplacements`, 9
    bytes per frame); a frame both scrubbed and patched gets its patched
    content. ``filled``: :func:`filled_frames` of the same arguments, when
    the caller has it already.
    """
    pfns, content, contents = [], [], []
    if filled is None:
        filled = filled_frames(memory, patcher)
    for fill, need in filled.items():
        pfns.append(need)
        content.append(np.full(len(need), len(contents), dtype=np.int64))
        contents.append(bytes([fill]) * physical.PAGE_SIZE)
    patched = list(patcher.patched_pfns)
    pfns.append(np.array(patched, dtype=np.int64))
    content.append(np.arange(len(contents), len(contents) + len(patched),
                             dtype=np.int64))
    contents += [patcher.replacements_for(pfn) for pfn in patched]
    all_pfns = np.concatenate(pfns)
    all_content = np.concatenate(content)
    # The last entry for a frame wins (patched content over a fill).
    order = np.argsort(all_pfns, kind='stable')
    ordered = all_pfns[order]
    later = np.zeros(len(order), dtype=bool)
    later[:-1] = ordered[1:] == ordered[:-1]
    if later.any():
        keep = np.sort(order[~later])
        all_pfns, all_content = all_pfns[keep], all_content[keep]
    return rewrite.PageReplacements(all_pfns, all_content, contents)
