"""The memory engine: exclude guest processes from a memory checkpoint.

Public API (the CLI and the Nova driver call exactly these):

``scrub_checkpoint(path, selectors, *, output=None, in_place=False,
with_children=False, keep_free_pages=False, dry_run=False, work_dir=None,
progress=None, follow_ipc=False, exclude_paths=(), buildid_cache_dir=None,
limits=None) -> ScrubReport``

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
    * ``follow_ipc`` and ``exclude_paths`` are accepted for the IPC and
      file exclusions (pipe buffers, sockets, tmpfs files and page cache of
      excluded paths); they are applied when supported and, until then,
      reported in the report's notes.
    * Returns a :class:`~.report.ScrubReport` (``to_dict()``,
      ``summary()``).

``list_processes(path, *, work_dir=None, buildid_cache_dir=None,
limits=None) -> dict``: the guest's processes (``sparc checkpoint ps``).

``count_markers(path, markers, *, work_dir=None, limits=None) -> dict``:
occurrences of byte strings in guest memory and anywhere in the stream
(``sparc checkpoint verify``).
"""

import os

import drgn
import numpy as np

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import rewrite
from sparc_nova.engine import errors
from sparc_nova.engine import kill
from sparc_nova.engine import patches
from sparc_nova.engine import physview
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import selectors as selectors_mod
from sparc_nova import exception
from sparc_nova.introspect import addrspace
from sparc_nova.introspect import arrays
from sparc_nova.introspect import buildid_cache
from sparc_nova.introspect import freepages
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import memory as memory_mod
from sparc_nova.introspect import pages
from sparc_nova.introspect import tasks

ScrubReport = report_mod.ScrubReport

#: Refused frames listed individually in a report (the count is exact).
MAX_REFUSED_LISTED = 1000


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

    def __init__(self, path, work_dir, limits, cache, progress=None):
        self.ck = checkpoint_mod.open_checkpoint(
            path, work_dir=work_dir, limits=limits or limits_mod.DEFAULT,
            progress=progress)
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


def _open(path, work_dir, limits, buildid_cache_dir, progress=None):
    """A :class:`_Session` with the guest kernel modelled; guest-side
    failures become :class:`~.errors.ScrubError` naming ``path``.
    """
    try:
        return _Session(path, work_dir, limits, _cache(buildid_cache_dir),
                        progress)
    except exception.CheckpointError:
        raise
    except _GUEST_ERRORS as e:
        raise _fail(path, e)


def list_processes(path: str, *, work_dir: str | None = None,
                   buildid_cache_dir: str | None = None,
                   limits: limits_mod.Limits | None = None) -> dict:
    """The guest's processes: ``{'kernel': {...}, 'processes': [...]}``
    (each process as :meth:`~sparc_nova.introspect.tasks.Process.as_dict`).
    """
    s = _open(path, work_dir, limits, buildid_cache_dir)
    try:
        procs = tasks.processes(s.kernel)
        return {'kernel': s.kernel.summary(),
                'processes': [p.as_dict() for p in procs]}
    except _GUEST_ERRORS as e:
        raise _fail(path, e)
    finally:
        s.close()


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
                     follow_ipc: bool = False, exclude_paths=(),
                     buildid_cache_dir: str | None = None,
                     limits: limits_mod.Limits | None = None
                     ) -> report_mod.ScrubReport:
    """Exclude processes from a memory checkpoint; see the module
    docstring for the contract.
    """
    if in_place and output is not None:
        raise errors.ScrubError(path, 'in_place and output exclude each '
                                      'other')
    sels = selectors_mod.parse_all(selectors)
    rep = report_mod.ScrubReport(checkpoint=path, dry_run=dry_run,
                                 selectors=[str(s) for s in sels])
    if follow_ipc:
        rep.notes.append('follow_ipc: IPC objects (pipes, sockets) of the '
                         'selected processes are not scrubbed yet')
    if exclude_paths:
        rep.notes.append('exclude_paths: file exclusion in memory (page '
                         'cache, tmpfs) is not applied yet')
    s = _open(path, work_dir, limits, buildid_cache_dir, progress)
    try:
        rep.lap('parse_and_introspect')
        try:
            patcher = _plan(s, sels, with_children, keep_free_pages, rep)
        except _GUEST_ERRORS + (patches.PlanConflict,) as e:
            raise _fail(path, e)
        rep.lap('plan')
        if dry_run:
            return rep
        replacements = _changed(s, patcher)
        rep.rewrite = {'frames_replaced': len(replacements)}
        target = output or path
        if in_place and s.ck.compressed:
            raise errors.ScrubError(path, 'in-place scrubbing needs a raw '
                                          'image; this one is compressed')
        try:
            result = rewrite.rewrite_pages(s.ck, replacements, output=output,
                                           in_place=in_place,
                                           work_dir=work_dir,
                                           progress=progress)
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
    rep.timings['total'] = round(sum(v for k, v in rep.timings.items()
                                     if k != 'total'), 4)
    return rep


def _plan(s, sels, with_children, keep_free_pages, rep):
    kernel = s.kernel
    rep.kernel = kernel.summary()
    procs = tasks.processes(kernel)
    chosen, notes = selectors_mod.select(procs, sels, with_children)
    rep.notes += notes
    by_pid = {p.pid: p for p in procs}
    model = pages.PageModel(kernel)
    patcher = patches.PagePatcher(s.memory)

    rows = []
    for pid in sorted(chosen):
        proc = by_pid[pid]
        uf = addrspace.user_frames(kernel, model, s.memory, proc.mm)
        rows.append((proc, uf))
    # How many times the selection maps each anonymous frame.
    all_pfns = np.concatenate([uf.pfn[uf.anon] for _, uf in rows]) \
        if rows else np.zeros(0, dtype=np.int64)
    uniq, counts = arrays.unique(all_pfns, return_counts=True)
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
    else:
        rep.free_pages = {'kept': True}
    if len(scrub):
        patcher.scrub(scrub, 0)

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
    rep.rewrite = {'fields_patched': len(patcher.fields)}
    rep.patched_fields = [f.as_dict() for f in patcher.fields]
    return patcher


def _changed(s, patcher) -> dict[int, bytes]:
    """Replacements for frames whose content actually changes."""
    out = {}
    for fill, arr in patcher.scrubbed.items():
        if not len(arr):
            continue
        need = arr[~s.memory.holds(arr, fill)]
        page = bytes([fill]) * memory_mod.PAGE_SIZE
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
            if s.memory.read(pfn << 12, memory_mod.PAGE_SIZE) != \
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
