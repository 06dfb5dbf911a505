"""The memory engine: exclude guest processes from a memory checkpoint.

Public API (the CLI and the Nova driver call exactly these):

``scrub_checkpoint(path, selectors, *, output=None, in_place=False,
with_children=False, keep_free_pages=False, dry_run=False, work_dir=None,
progress=None, follow_ipc=True, exclude_paths=(), buildid_cache_dir=None,
limits=None, sandbox=None, follow=None, journal_key=None) -> ScrubReport``

    Contract:

    * ``path``: a libvirt save image (raw or compressed; ``virsh save``,
      managed save) or a bare QEMU migration stream.
    * ``selectors``: process selectors (strings or
      :class:`~.selectors.Selector`; see :mod:`.selectors`).
    * Scrubs, in guest memory, every anonymous frame mapped only by the
      selected processes (a frame also mapped by an unselected process is
      reported, not touched; file-backed and shared pages are never
      touched), and, unless ``keep_free_pages``, every free frame (buddy
      and per-CPU lists; zero, or the guest's poison pattern). Every
      thread of a selected process gets a pending SIGKILL, and sleeping
      processes a wake-up, so that they die on restore before running on
      scrubbed memory (:mod:`.kill`).
    * Output: ``output`` (a new file, atomically renamed into place),
      else ``in_place`` (raw images: the original file patched), else the
      original file replaced atomically (same owner and mode). ``dry_run``
      writes nothing and returns the plan.
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
    * Returns a :class:`~.report.ScrubReport` (``to_dict()``,
      ``summary()``).
    * ``sandbox``: model the guest kernel and compute the plan in the
      unprivileged sandbox child (:mod:`.sandbox`, :mod:`.plan_codec`);
      None follows ``[sparc] sandbox_enabled``. This process then only
      parses the checkpoint's format, validates the returned plan against
      the RAM pages of the checkpoint it opened itself, rewrites and
      verifies.

``list_processes(path, *, work_dir=None, buildid_cache_dir=None,
limits=None, sandbox=None) -> dict``: the guest's processes (``sparc
checkpoint ps``), introspected in the sandbox like a scrub.

``list_dependencies(path, *, work_dir=None, buildid_cache_dir=None,
limits=None, sandbox=None) -> dict``: the guest's IPC graph (``sparc
checkpoint deps``): every process's open files, the shared objects and the
edges, introspected in the sandbox like a scrub.

``count_markers(path, markers, *, work_dir=None, limits=None) -> dict``:
occurrences of byte strings in guest memory and anywhere in the stream
(``sparc checkpoint verify``).
"""

import dataclasses
import importlib
import os
import time

import drgn
import numpy as np

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import formats
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import rewrite
from sparc_nova.checkpoint import stream_follow
from sparc_nova.engine import errors
from sparc_nova.engine import ipc
from sparc_nova.engine import kill
from sparc_nova.engine import patches
from sparc_nova.engine import physview
from sparc_nova.engine import plan_codec
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import sandbox as sandbox_mod
from sparc_nova.engine import selectors as selectors_mod
from sparc_nova import exception
from sparc_nova.introspect import addrspace
from sparc_nova.introspect import arrays
from sparc_nova.introspect import buildid_cache
from sparc_nova.introspect import freepages
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import pages
from sparc_nova.introspect import physical
from sparc_nova.introspect import slabfree
from sparc_nova.introspect import tasks
from sparc_nova.vocabulary import paths as vocabulary_paths

ScrubReport = report_mod.ScrubReport

#: Refused frames listed individually in a report (the count is exact).
MAX_REFUSED_LISTED = 1000
#: Entries of one list ``list_processes``/``list_dependencies`` accept
#: from the sandbox.
MAX_LISTED = 1 << 20


def _conf_value(name, default=None):
    try:
        from sparc_nova import conf
        return getattr(conf.CONF.sparc, name)
    except Exception:  # unregistered option, conf not parsed
        return default


def _cache(buildid_cache_dir):
    if buildid_cache_dir is None:
        buildid_cache_dir = _conf_value('buildid_cache_dir')
    return buildid_cache.BuildIdCache(buildid_cache_dir or None)


def _fail(path, e) -> errors.ScrubError:
    reason = e.reason if isinstance(e, exception.CheckpointError) else \
        str(e)
    return errors.ScrubError(path, reason)


class _Session:
    """An open checkpoint with its guest kernel model."""

    def __init__(self, path, work_dir, limits, cache, progress=None,
                 file=None, follow=None):
        self.ck = checkpoint_mod.open_checkpoint(
            path, work_dir=work_dir, limits=limits or limits_mod.DEFAULT,
            progress=progress, file=file, follow=follow)
        try:
            self.memory = physview.CheckpointMemory(self.ck)
            self.kernel = None
            if cache is not None:
                self.kernel = kernel_mod.open_kernel(self.memory, cache)
        except BaseException:
            self.close()
            raise

    def close(self):
        mem = getattr(self, 'memory', None)
        if mem is not None:
            mem.close()
        self.ck.close()


#: What a corrupt guest can make introspection raise: our own errors,
#: drgn's read faults and lookup failures, and the errors drgn raises when
#: it meets a type or value no compiler would emit (a hostile BTF or
#: kernel structure).
_GUEST_ERRORS = (exception.SparcError, drgn.FaultError, LookupError,
                 ValueError, TypeError, OverflowError, RecursionError)


def _open(path, work_dir, limits, buildid_cache_dir, progress=None,
          kernel=True, file=None, follow=None):
    """A :class:`_Session`, with the guest kernel modelled unless
    ``kernel`` is False; guest-side failures become
    :class:`~.errors.ScrubError` naming ``path``.
    """
    try:
        return _Session(path, work_dir, limits,
                        _cache(buildid_cache_dir) if kernel else None,
                        progress, file, follow)
    except exception.CheckpointError:
        raise
    except _GUEST_ERRORS as e:
        raise _fail(path, e)


def _sandbox_policy(enabled: bool | None) -> sandbox_mod.SandboxPolicy:
    """The sandbox policy of ``[sparc]``; ``enabled`` overrides
    ``sandbox_enabled`` unless None.
    """
    try:
        from sparc_nova import conf
        policy = sandbox_mod.SandboxPolicy.from_conf(conf.CONF)
    except Exception:  # unregistered option, conf not parsed
        policy = sandbox_mod.SandboxPolicy()
    if enabled is not None:
        policy = dataclasses.replace(policy, enabled=enabled)
    return policy


def _open_with_sandbox(path, work_dir, limits, options, rep, policy,
                       progress, follow=None):
    """Open ``path`` for a scrub: ``(session, pending sandbox plan)``.

    With the sandbox, the child that plans the scrub is started on the
    file before this process parses it, so that both parse at once (a
    machine has more than one core): the child's start-up and parse then
    cost little more than this process's own. A compressed image is
    decompressed here first and the child reads the decompressed stream.
    Without the sandbox the pending plan is None and the session models
    the guest kernel itself. With ``follow`` (an image still being
    written) both follow the raw stream as it is written.
    """
    if not policy.enabled:
        return _open(path, work_dir, limits, options['buildid_cache_dir'],
                     progress, follow=follow), None
    f = checkpoint_mod.open_file(path)
    pending = None
    try:
        growing = 0
        if follow is not None:
            head = stream_follow.wait_header(
                f, path, follow, limits or limits_mod.DEFAULT)
            raw = not head.compressed
            growing = stream_follow.stream_bound(
                head, limits or limits_mod.DEFAULT)
            options = dict(options, follow_seconds=max(
                0.0, follow.deadline - time.monotonic()))
        else:
            raw = checkpoint_mod.stream_is_raw(f, path, limits or
                                               limits_mod.DEFAULT)
        if raw:
            pending = _start_plan(f, path, limits, options, rep, policy,
                                  growing)
        s = _open(path, work_dir, limits, None, progress, kernel=False,
                  file=f, follow=follow)
    except BaseException:
        if pending is not None:
            pending.cancel()
        f.close()
        raise
    if pending is None:
        options.pop('follow_seconds', None)
        try:
            pending = _start_plan(s.ck.stream_file, path, limits, options,
                                  rep, policy)
        except BaseException:
            s.close()
            raise
    return s, pending


def _start_plan(stream, path, limits, options, rep, policy, growing=0):
    """Start :func:`plan_in_sandbox` on the open ``stream`` (which may
    still grow by ``growing`` bytes).
    """
    args = dict(options, report=plan_codec.encode_value(rep))
    return _start_in_sandbox(stream, path, PLAN_ENTRY, args, limits, policy,
                             growing)


def _start_in_sandbox(stream, path, entry, args, limits,
                      policy, growing=0) -> sandbox_mod.Pending:
    """Start ``entry`` in the sandbox child on the open migration
    ``stream``.

    The child gets a new read-only descriptor of the stream: the file
    itself for a raw image, else the temporary file this process
    decompressed it into. Decompression stays here because the child may
    neither run programs (seccomp refuses exec) nor write files
    (RLIMIT_FSIZE 0), and the rewrite needs the decompressed stream
    anyway; the decompressors parse only the compression format, never
    guest structures.
    """
    args = dict(args, path=path,
                limits=dataclasses.asdict(limits or limits_mod.DEFAULT))
    try:
        return sandbox_mod.start(entry, args, {'stream': stream}, policy,
                                 growing=growing,
                                 keep=(args.get('buildid_cache_dir'),),
                                 prepare=PREPARE_ENTRY)
    except sandbox_mod.SandboxError as e:
        raise errors.ScrubError(path, 'introspection sandbox: %s' % e)


def _sandbox_result(pending: sandbox_mod.Pending, path) -> dict:
    """Wait for a call started by :func:`_start_in_sandbox`."""
    try:
        return pending.result()
    except sandbox_mod.ReportedError as e:
        raise errors.ScrubError(path, str(e))
    except sandbox_mod.SandboxError as e:
        raise errors.ScrubError(path, 'introspection sandbox: %s' % e)


def _child_session(args, files) -> _Session:
    """The sandbox child's session on the stream it was given (followed
    while it is written when the parent follows it too).
    """
    follow = None
    if isinstance(args.get('follow_seconds'), (int, float)):
        follow = stream_follow.Follow.within(args['follow_seconds'])
    return _Session(args['path'], None,
                    limits_mod.Limits(**args['limits']),
                    _cache(args['buildid_cache_dir']),
                    file=files['stream'], follow=follow)


def _child_error(e) -> exception.SparcError:
    """An error of the sandbox child as the parent reports it (the parent
    adds the file name).
    """
    if isinstance(e, exception.CheckpointError):
        return exception.SparcError(
            e.reason if e.offset is None else 'at offset %d: %s'
            % (e.offset, e.reason))
    return exception.SparcError(str(e))


def _processes(kernel) -> dict:
    procs = tasks.processes(kernel)
    return {'kernel': kernel.summary(),
            'processes': [p.as_dict() for p in procs]}


def _dependencies(kernel) -> dict:
    procs = tasks.processes(kernel, details=False)
    graph = ipc.build_graph(kernel, pages.PageModel(kernel), procs)
    out = {'kernel': kernel.summary()}
    out.update(graph.as_dict())
    return out


#: What list_processes and list_dependencies compute from the guest kernel.
_LISTINGS = {'processes': _processes, 'dependencies': _dependencies}


def listing_in_sandbox(args: dict, files: dict) -> dict:
    """Sandbox child side of :func:`list_processes` and
    :func:`list_dependencies`.
    """
    try:
        s = _child_session(args, files)
        try:
            return _LISTINGS[args['listing']](s.kernel)
        finally:
            s.close()
    except _GUEST_ERRORS as e:
        raise _child_error(e)


def _check_listing(path, doc) -> dict:
    """A listing from the child: ``kernel`` (a dict) and lists of at most
    :data:`MAX_LISTED` dicts; it is only displayed, never acted upon.
    """
    doc.pop('_sandbox', None)
    if not isinstance(doc.get('kernel'), dict) or not all(
            isinstance(v, list) and len(v) <= MAX_LISTED and
            all(isinstance(x, dict) for x in v)
            for k, v in doc.items() if k != 'kernel'):
        raise errors.ScrubError(path, 'introspection sandbox: the listing '
                                      'is out of shape')
    return doc


def _listing(path, listing, work_dir, limits, buildid_cache_dir,
             sandbox) -> dict:
    policy = _sandbox_policy(sandbox)
    s = _open(path, work_dir, limits, buildid_cache_dir,
              kernel=not policy.enabled)
    try:
        if policy.enabled:
            return _check_listing(path, _sandbox_result(_start_in_sandbox(
                s.ck.stream_file, path, LISTING_ENTRY,
                {'listing': listing,
                 'buildid_cache_dir': _cache(buildid_cache_dir).directory
                 or ''}, limits, policy), path))
        return _LISTINGS[listing](s.kernel)
    except _GUEST_ERRORS as e:
        raise _fail(path, e)
    finally:
        s.close()


def list_processes(path: str, *, work_dir: str | None = None,
                   buildid_cache_dir: str | None = None,
                   limits: limits_mod.Limits | None = None,
                   sandbox: bool | None = None) -> dict:
    """The guest's processes: ``{'kernel': {...}, 'processes': [...]}``
    (each process as :meth:`~sparc_nova.introspect.tasks.Process.as_dict`).
    """
    return _listing(path, 'processes', work_dir, limits, buildid_cache_dir,
                    sandbox)


def list_dependencies(path: str, *, work_dir: str | None = None,
                      buildid_cache_dir: str | None = None,
                      limits: limits_mod.Limits | None = None,
                      sandbox: bool | None = None) -> dict:
    """``{'kernel': {...}, 'processes': [...], 'objects': [...],
    'edges': [...]}``; see :meth:`.ipc.IpcGraph.as_dict`.
    """
    return _listing(path, 'dependencies', work_dir, limits,
                    buildid_cache_dir, sandbox)


def count_markers(path: str, markers: list[bytes], *,
                  work_dir: str | None = None,
                  limits: limits_mod.Limits | None = None) -> dict:
    """``{marker: {'memory': n, 'stale_copies': n, 'stream': n,
    'addresses': [...]}}`` for each marker (bytes); see
    :meth:`.physview.CheckpointMemory.count`.
    """
    s = _Session(path, work_dir, limits, None)
    try:
        return {m: s.memory.count(m) for m in markers}
    finally:
        s.close()


def scrub_checkpoint(path: str, selectors, *, output: str | None = None,
                     in_place: bool = False, with_children: bool = False,
                     keep_free_pages: bool = False, dry_run: bool = False,
                     work_dir: str | None = None, progress=None,
                     follow_ipc: bool = True, exclude_paths=(),
                     buildid_cache_dir: str | None = None,
                     limits: limits_mod.Limits | None = None,
                     sandbox: bool | None = None,
                     follow: stream_follow.Follow | None = None,
                     journal_key: str | None = None
                     ) -> report_mod.ScrubReport:
    """Exclude processes from a memory checkpoint; see the module
    docstring for the contract. ``journal_key`` is the in-place journal's
    MAC key file (``[sparc] journal_key_file``), needed with ``in_place``.
    """
    if in_place and output is not None:
        raise errors.ScrubError(path, 'in_place and output exclude each '
                                      'other')
    sels = selectors_mod.parse_all(selectors)
    # Refuse a malformed path rule before any work (InvalidRule).
    vocabulary_paths.parse_items(exclude_paths)
    rep = report_mod.ScrubReport(checkpoint=path, dry_run=dry_run,
                                 selectors=[str(s) for s in sels])
    policy = _sandbox_policy(sandbox)
    options = {'selectors': [str(x) for x in sels],
               'with_children': with_children,
               'keep_free_pages': keep_free_pages,
               'follow_ipc': follow_ipc,
               'exclude_paths': list(exclude_paths),
               'buildid_cache_dir': _cache(buildid_cache_dir).directory
               or ''}
    s, pending = _open_with_sandbox(path, work_dir, limits, options, rep,
                                    policy, progress, follow)
    try:
        if policy.enabled:
            rep.lap('open')
            patcher = _plan_in_sandbox(s, path, rep, pending)
        else:
            rep.lap('parse_and_introspect')
            patcher = _introspect_and_plan(s, path, options, rep)
            rep.lap('plan')
        if dry_run:
            return rep
        replacements = _changed(s, patcher)
        rep.rewrite['frames_replaced'] = len(replacements)
        target = output or path
        if in_place and s.ck.compressed:
            raise errors.ScrubError(path, 'in-place scrubbing needs a raw '
                                          'image; this one is compressed')
        try:
            result = rewrite.rewrite_pages(s.ck, replacements, output=output,
                                           in_place=in_place,
                                           work_dir=work_dir,
                                           progress=progress,
                                           journal_key=journal_key)
        except exception.CheckpointError:
            raise
        except OSError as e:
            raise errors.ScrubError(path, 'writing %s failed: %s'
                                    % (target, e.strerror or e))
        rep.output = result.path
        rep.rewrite.update(result.to_dict())
        rep.lap('rewrite')
    finally:
        s.close()
    try:
        rep.verification = _verify(result.path, patcher, work_dir, limits)
    except BaseException as e:
        if output is not None:
            try:
                os.unlink(output)
            except OSError:
                pass
        if isinstance(e, exception.SparcError):
            raise errors.ScrubError(result.path, 'verification failed: %s'
                                    % e)
        raise
    rep.lap('verify')
    rep.timings['total'] = rep.elapsed()
    return rep


def _introspect_and_plan(s, path, options, rep) -> patches.PagePatcher:
    """Run :func:`_plan` on session ``s`` (in whichever process models the
    guest kernel); guest-side failures become ScrubError naming ``path``.
    """
    sels = selectors_mod.parse_all(options['selectors'])
    try:
        return _plan(s, sels, options['with_children'],
                     options['keep_free_pages'], rep, options['follow_ipc'],
                     tuple(options['exclude_paths']))
    except _GUEST_ERRORS + (patches.PlanConflict,) as e:
        raise _fail(path, e)


def plan_in_sandbox(args: dict, files: dict) -> dict:
    """Sandbox child side of :func:`scrub_checkpoint`: model the guest
    kernel, compute the plan and return it encoded
    (:func:`.plan_codec.encode_plan`).
    """
    try:
        rep = plan_codec.decode_value(args['report'])
        s = _child_session(args, files)
        try:
            rep.lap('parse_and_introspect')
            patcher = _introspect_and_plan(s, args['path'], args, rep)
            rep.lap('plan')
            return plan_codec.encode_plan(rep, patcher)
        finally:
            s.close()
    except _GUEST_ERRORS as e:
        raise _child_error(e)


def prepare_sandbox() -> None:
    """Sandbox child, before it is jailed: load the checkpoint format
    plugins (stevedore reads their entry points from the file system,
    which the jail does not have) and the module drgn imports when a
    program is made.
    """
    formats.load()
    importlib.import_module('_drgn_util.plugins')


PREPARE_ENTRY = __name__ + ':prepare_sandbox'
PLAN_ENTRY = __name__ + ':plan_in_sandbox'
LISTING_ENTRY = __name__ + ':listing_in_sandbox'


def _plan_in_sandbox(s, path, rep, pending) -> patches.PagePatcher:
    """Wait for the plan the sandbox child computes (started by
    :func:`_open_with_sandbox`), validate it against session ``s``'s RAM
    pages and take the child's report sections into ``rep``.

    Timings: the child's own (``parse_and_introspect``, ``plan``, ...),
    which overlap this process's ``open``, and ``sandbox`` for what the
    round trip adds after that open (waiting for the child, decoding and
    validating the plan).
    """
    doc = _sandbox_result(pending, path)
    identity = doc.pop('_sandbox', None)
    try:
        child_rep, patcher = plan_codec.decode_plan(doc, s.memory,
                                                    s.ck.layout.devices)
    except plan_codec.PlanError as e:
        raise errors.ScrubError(path, 'introspection sandbox returned an '
                                      'unusable plan: %s' % e)
    rep.lap('sandbox')
    plan_codec.merge_report(rep, child_rep)
    if isinstance(identity, dict):
        rep.sandbox = sandbox_mod.confinement_summary(identity)
    return patcher


class _FramesCache:
    """:func:`addrspace.user_frames` per pid, computed once."""

    def __init__(self, kernel, model, memory, by_pid):
        self.args = (kernel, model, memory)
        self.by_pid = by_pid
        self.done = {}

    def __call__(self, pid: int):
        if pid not in self.done:
            self.done[pid] = addrspace.user_frames(
                *self.args, self.by_pid[pid].mm)
        return self.done[pid]


def _selection_counts(rows):
    """(sorted anonymous frames of the selection, how many times the
    selection maps each).
    """
    all_pfns = np.concatenate([uf.pfn[uf.anon] for _, uf in rows]) \
        if rows else np.zeros(0, dtype=np.int64)
    return arrays.unique(all_pfns, return_counts=True)


def _follow_shared_anonymous(procs, chosen, frames_of, graph, follow_ipc,
                             pulled, at_risk) -> None:
    """Anonymous frames a selected process shares with an unselected one
    (copy-on-write after ``fork()``): with ``follow_ipc`` the other
    process is pulled in (and the IPC edges of what it holds followed in
    turn), else it is reported at risk. ``chosen``, ``pulled`` and
    ``at_risk`` are updated in place.
    """
    reported = {e['pid'] for e in at_risk}
    users = [p for p in procs if not p.kernel_thread]
    for _ in range(len(users) + 1):
        shared = _shared_frames([frames_of(pid) for pid in sorted(chosen)])
        if not len(shared):
            return
        added = False
        for proc in users:
            if proc.pid in chosen or proc.pid in reported:
                continue
            uf = frames_of(proc.pid)
            hit = arrays.intersect_sorted(
                arrays.unique(uf.pfn[uf.anon]), shared)
            if not len(hit):
                continue
            src = next(pid for pid in sorted(chosen) if arrays.isin_sorted(
                [int(hit[0])], arrays.unique(frames_of(pid).pfn))[0])
            edge = {'from': src, 'to': proc.pid,
                    'kind': 'shared-anonymous',
                    'object': '%d frames' % len(hit)}
            entry = {'pid': proc.pid, 'comm': proc.comm, 'edge': edge}
            if follow_ipc and proc.pid != 1:
                chosen[proc.pid] = ['ipc: shared-anonymous %d frames from '
                                    'pid %d' % (len(hit), src)]
                pulled.append(entry)
                added = True
            else:
                if proc.pid == 1:
                    entry['reason'] = 'pid 1 is never excluded'
                at_risk.append(entry)
                reported.add(proc.pid)
        if not added:
            return
        more_pulled, more_at_risk = ipc.follow(graph, chosen, follow_ipc)
        pulled += more_pulled
        at_risk += [e for e in more_at_risk if e['pid'] not in reported]
        reported |= {e['pid'] for e in more_at_risk}


def _shared_frames(frames) -> np.ndarray:
    """Anonymous frames (sorted) that the kernel counts more mappings of
    than the address spaces ``frames`` (:class:`addrspace.UserFrames`)
    hold together: someone else maps them too.
    """
    if not frames:
        return np.zeros(0, dtype=np.int64)
    pfn = np.concatenate([uf.pfn[uf.anon] for uf in frames])
    mapcount = np.concatenate([uf.mapcount[uf.anon] for uf in frames])
    uniq, first, counts = arrays.unique(pfn, return_index=True,
                                        return_counts=True)
    return uniq[mapcount[first] > counts]


def _plan(s, sels, with_children, keep_free_pages, rep, follow_ipc=True,
          exclude_paths=()):
    kernel = s.kernel
    rep.kernel = kernel.summary()
    procs = tasks.processes(kernel)
    chosen, notes = selectors_mod.select(procs, sels, with_children)
    rep.notes += notes
    by_pid = {p.pid: p for p in procs}
    model = pages.PageModel(kernel)
    patcher = patches.PagePatcher(s.memory)
    graph = ipc.build_graph(kernel, model, procs)
    pulled, at_risk = ipc.follow(graph, chosen, follow_ipc)
    frames_of = _FramesCache(kernel, model, s.memory, by_pid)
    _follow_shared_anonymous(procs, chosen, frames_of, graph, follow_ipc,
                             pulled, at_risk)
    rep.lap('ipc_graph')

    rows = [(by_pid[pid], frames_of(pid)) for pid in sorted(chosen)]
    uniq, counts = _selection_counts(rows)
    scrub = []
    for proc, uf in rows:
        plan = report_mod.ProcessPlan(
            pid=proc.pid, comm=proc.comm, exe=proc.exe,
            reasons=chosen[proc.pid],
            threads=[t.tid for t in proc.threads], frames={}, refused=[])
        sel = uf.anon
        pfn, first = arrays.unique(uf.pfn[sel], return_index=True)
        cls = uf.cls[sel][first]
        mapcount = uf.mapcount[sel][first]
        mine = counts[np.searchsorted(uniq, pfn)]
        ok = mapcount == mine
        for c, name in enumerate(addrspace.CLASS_NAMES):
            frames = pfn[ok & (cls == c)]
            if len(frames):
                plan.frames[name] = frames
        scrub.append(pfn[ok])
        bad = np.nonzero(~ok)[0]
        for i in bad[:MAX_REFUSED_LISTED].tolist():
            m, n = int(mapcount[i]), int(mine[i])
            plan.refused.append({
                'frame': '0x%x' % int(pfn[i]),
                'class': addrspace.CLASS_NAMES[int(cls[i])],
                'reason': 'mapped %d times, %d by selected processes: '
                          'shared with an unselected process' % (m, n)
                if m > n else 'mapcount %d is lower than the %d mappings '
                              'found' % (m, n)})
        if len(bad) > MAX_REFUSED_LISTED:
            plan.refused.append({'more': len(bad) - MAX_REFUSED_LISTED})
        rep.processes.append(plan)
    scrub = arrays.unique(np.concatenate(scrub)) if scrub else \
        np.zeros(0, dtype=np.int64)

    if not keep_free_pages:
        fm = freepages.free_memory(kernel, model, kernel.online_cpus())
        overlap = arrays.intersect_sorted(fm.pfns, scrub)
        if len(overlap):
            raise patches.PlanConflict(
                'frame 0x%x is both free and mapped by a selected process'
                % int(overlap[0]))
        change = fm.pfns[~s.memory.holds(fm.pfns, fm.fill)]
        rep.free_pages = fm.summary()
        rep.free_pages['frames_rewritten'] = int(len(change))
        patcher.scrub(change, fm.fill)
        caches, slab_notes = slabfree.free_objects(kernel, model)
        rep.notes += slab_notes
        for fo in caches:
            for pa, n in fo.ranges:
                patcher.zero_phys(pa, n, 'free object of %s' % fo.cache)
        rep.free_pages['slab_objects'] = sum(fo.objects for fo in caches)
        rep.free_pages['slab_caches'] = len(caches)
    else:
        rep.free_pages = {'kept': True}
    if len(scrub):
        patcher.scrub(scrub, 0)
    copies = ipc.plan_kernel_copies(graph, kernel, model, set(chosen),
                                    exclude_paths)
    _apply_kernel_copies(s, kernel, model, patcher, copies, scrub)
    rep.ipc = {'follow_ipc': follow_ipc, 'pulled_in': pulled,
               'at_risk': at_risk, 'scrubbed': copies.summary(),
               'not_scrubbed': copies.not_scrubbed}

    wheel = []

    def wheel_factory():
        if not wheel:
            wheel.append(kill.TimerWheel(kernel, patcher,
                                         kernel.online_cpus()))
        return wheel[0]
    for plan in rep.processes:
        result = kill.inject(kernel, patcher, by_pid[plan.pid],
                             wheel_factory)
        plan.kill = result.as_dict()
    if wheel and wheel[0].notes:
        rep.notes += wheel[0].notes
    shown = [f for f in patcher.fields if not f.redacted]
    rep.rewrite = {'fields_patched': len(shown),
                   'byte_ranges_zeroed': len(patcher.fields) - len(shown)}
    rep.patched_fields = [f.as_dict() for f in shown]
    return patcher


def _apply_kernel_copies(s, kernel, model, patcher, copies, anon) -> None:
    """Queue the kernel-held copies of ``copies`` in ``patcher``: owned
    frames are scrubbed whole, byte ranges zeroed in place.
    """
    frames = [np.asarray(c.frames, dtype=np.int64)
              for items in copies.copies.values() for c in items]
    frames = arrays.unique(np.concatenate(frames)) if frames else \
        np.zeros(0, dtype=np.int64)
    if len(frames):
        outside = frames[~addrspace.memory_is_ram(s.memory, frames)]
        if len(outside):
            raise patches.PlanConflict(
                'an IPC buffer names frame 0x%x, which is not guest RAM'
                % int(outside[0]))
        if len(arrays.intersect_sorted(frames, anon)):
            raise patches.PlanConflict('an IPC buffer frame is also '
                                       'mapped as anonymous memory')
        patcher.scrub(frames, 0)
    zeroed_virt, zeroed_phys = set(), set()
    flags_off = model.off_flags
    for items in copies.copies.values():
        for c in items:
            for page, bit in c.flag_clears:
                old = int.from_bytes(patcher.read_virt(
                    kernel, page + flags_off, 8), 'little')
                patcher.write_virt(
                    kernel, page + flags_off,
                    (old & ~(1 << bit)).to_bytes(8, 'little'),
                    'page flags of a dropped page-cache page',
                    kind=patches.PAGE_FLAGS)
            what = '%s buffer of %s' % (c.kind,
                                        ipc.report_name(c.kind, c.object))
            for va, n in c.ranges:
                if (va, n) not in zeroed_virt:
                    zeroed_virt.add((va, n))
                    patcher.zero_virt(kernel, va, n, what)
            for pa, n in c.phys_ranges:
                if (pa, n) not in zeroed_phys:
                    zeroed_phys.add((pa, n))
                    patcher.zero_phys(pa, n, what)


def _changed(s, patcher) -> dict[int, bytes]:
    """Replacements for frames whose content actually changes."""
    out = {}
    for fill, arr in patcher.scrubbed.items():
        if not len(arr):
            continue
        need = arr[~s.memory.holds(arr, fill)]
        page = bytes([fill]) * physical.PAGE_SIZE
        for pfn in need.tolist():
            out[pfn] = page
    for pfn in patcher.patched_pfns:
        out[pfn] = patcher.replacements_for(pfn)
    return out


def _verify(path, patcher, work_dir, limits) -> dict:
    """Re-parse the written checkpoint and read back every scrubbed frame
    and every patched page.
    """
    s = _Session(path, work_dir, limits, None)
    try:
        checked = 0
        for fill, arr in patcher.scrubbed.items():
            if not len(arr):
                continue
            bad = arr[~s.memory.holds(arr, fill, expected=True)]
            if len(bad):
                raise errors.ScrubError(
                    path, '%d scrubbed frames do not read back as 0x%02x '
                          '(first 0x%x)' % (len(bad), fill, int(bad[0])))
            checked += len(arr)
        for pfn in patcher.patched_pfns:
            if s.memory.read(pfn << 12, physical.PAGE_SIZE) != \
                    patcher.replacements_for(pfn):
                raise errors.ScrubError(
                    path, 'patched frame 0x%x does not read back' % pfn)
        for f in patcher.fields:
            want = patcher.final_bytes(f.paddr, len(f.new))
            if s.memory.read(f.paddr, len(f.new)) != want:
                raise errors.ScrubError(
                    path, '%s at 0x%x does not read back' % (f.what,
                                                             f.paddr))
        return {'result': 'ok', 'reparsed': True,
                'frames_checked': checked,
                'patched_frames_checked': len(patcher.patched_pfns),
                'fields_checked': len(patcher.fields),
                'ram_records': len(s.ck.layout.ram)}
    finally:
        s.close()
