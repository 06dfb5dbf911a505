"""The scrub planner: guest kernel model in, page patches out.

:func:`plan_scrub` decides every change a scrub makes to guest memory, in
five named steps, each a function of this module:

1. :func:`select_processes`: the processes to exclude (the selectors,
   then the IPC graph's follow rule and copy-on-write sharing);
2. :func:`selected_frames`: the anonymous frames only they map (where a
   page is *chosen*), per process in the report, shared ones refused;
3. :func:`scrub_free_memory`: free frames (buddy and per-CPU lists) set
   to the guest's free-page fill, free slab objects zeroed;
4. :func:`scrub_kernel_copies`: the kernel-held copies of their data
   (pipe and socket buffers, terminals, shared memory, page cache);
5. :func:`kill_selected`: a pending SIGKILL (and a wake-up) for every
   thread, so that they die on restore (not for a seal, whose processes
   resume: ``Exclusion.kill``).

The changes are queued in a :class:`~.patches.PagePatcher` (whole frames
set to one byte, byte writes into kernel objects); the rewrite
(:mod:`sparc_nova.checkpoint.rewrite`) writes them and :mod:`.verify`
reads them back. The planner is pure: it reads guest memory through the
kernel model and the memory view it is given, opens no file and writes
nothing but the patcher and the report. It runs in the sandbox child
(:mod:`.sandboxed_plan`) or, with the sandbox off, in the scrubbing
process.
"""

import dataclasses

import numpy as np

from sparc_nova.engine import ipc
from sparc_nova.engine import kernel_copies
from sparc_nova.engine import kill
from sparc_nova.engine import patches
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import selectors as selectors_mod
from sparc_nova.introspect import addrspace
from sparc_nova.introspect import arrays
from sparc_nova.introspect import freepages
from sparc_nova.introspect import pages
from sparc_nova.introspect import slabfree
from sparc_nova.introspect import tasks

__all__ = ['MAX_REFUSED_LISTED', 'NO_RESTORE_NOTE', 'Exclusion', 'Selection',
           'kill_selected',
           'plan_scrub', 'scrub_free_memory', 'scrub_kernel_copies',
           'select_processes', 'selected_frames']

#: The report's note when no process is killed (:attr:`Exclusion.kill`).
NO_RESTORE_NOTE = 'memory dump: no restore, processes are not killed'
#: Refused frames listed individually in a report (the count is exact).
MAX_REFUSED_LISTED = 1000


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """What to exclude from a checkpoint: the policy as the planner takes
    it.

    :ivar selectors: parsed process selectors (:mod:`.selectors`).
    :ivar with_children: also select the descendants of selected
        processes.
    :ivar scrub_free_memory: scrub free frames and free slab objects.
    :ivar follow_ipc: also exclude the processes the selected ones send
        data to, transitively (else they are reported at risk).
    :ivar exclude_paths: guest path rules whose tmpfs and shared-memory
        contents are scrubbed when only selected processes hold them.
    :ivar kill: arm the kill on restore (:func:`kill_selected`); False
        for a seal (:mod:`.seal`: the processes must survive) and for a
        checkpoint that is never restored (a memory dump).
    """

    selectors: tuple[selectors_mod.Selector, ...]
    with_children: bool = False
    scrub_free_memory: bool = True
    follow_ipc: bool = True
    exclude_paths: tuple[str, ...] = ()
    kill: bool = True

    def to_args(self) -> dict:
        """The exclusion as JSON primitives (the sandbox child's
        arguments); :meth:`from_args` reads them back.
        """
        return {'selectors': [str(s) for s in self.selectors],
                'with_children': self.with_children,
                'scrub_free_memory': self.scrub_free_memory,
                'follow_ipc': self.follow_ipc,
                'exclude_paths': list(self.exclude_paths),
                'kill': self.kill}

    @classmethod
    def from_args(cls, args: dict) -> 'Exclusion':
        """The exclusion of :meth:`to_args`'s ``args``.

        :raises SelectorError: a selector does not parse.
        """
        selectors = tuple(selectors_mod.parse_all(args['selectors']))
        return cls(selectors=selectors,
                   with_children=args['with_children'],
                   scrub_free_memory=args['scrub_free_memory'],
                   follow_ipc=args['follow_ipc'],
                   exclude_paths=tuple(args['exclude_paths']),
                   kill=bool(args['kill']))


class _FramesCache:
    """:func:`addrspace.user_frames` per pid, computed once."""

    def __init__(self, kernel, model, memory, by_pid):
        self.args = (kernel, model, memory)
        self.by_pid = by_pid
        self.done = {}

    def __call__(self, pid: int) -> addrspace.UserFrames:
        if pid not in self.done:
            self.done[pid] = addrspace.user_frames(
                *self.args, self.by_pid[pid].mm)
        return self.done[pid]


@dataclasses.dataclass
class Selection:
    """The processes to exclude, and what the later steps need of the
    guest.

    :ivar processes: every guest process (:func:`.tasks.processes`).
    :ivar by_pid: the same, by pid.
    :ivar model: the guest's struct page model.
    :ivar chosen: pid -> reasons, for every process excluded.
    :ivar graph: the IPC graph (:func:`.ipc.build_graph`).
    :ivar pulled: processes pulled in by the follow rule, with the edge.
    :ivar at_risk: processes the follow rule did not pull in, with why.
    :ivar frames_of: pid -> its :class:`addrspace.UserFrames` (cached).
    """

    processes: list
    by_pid: dict
    model: pages.PageModel
    chosen: dict[int, list[str]]
    graph: ipc.IpcGraph
    pulled: list[dict]
    at_risk: list[dict]
    frames_of: _FramesCache


def plan_scrub(kernel, memory, exclusion: Exclusion,
               rep: report_mod.ScrubReport) -> patches.PagePatcher:
    """Plan the scrub of ``exclusion`` from the guest of ``kernel`` (a
    :class:`~sparc_nova.introspect.kernel.GuestKernel` over ``memory``,
    the guest's physical memory); see the module docstring for the steps.

    :param rep: the report, filled in: ``kernel``, ``notes``,
        ``processes``, ``free_pages``, ``ipc``, ``rewrite`` (counts of
        field writes), ``patched_fields`` and the ``ipc_graph`` lap.
    :returns: the patcher holding every change (nothing is written).
    :raises PlanConflict: the guest's structures contradict each other
        (a frame both free and mapped, an IPC buffer outside RAM, ...).
    :raises: any of :data:`.session.GUEST_ERRORS` on a guest structure
        that cannot be read or makes no sense.
    """
    rep.kernel = kernel.summary()
    selection = select_processes(kernel, memory, exclusion, rep)
    patcher = patches.PagePatcher(memory)
    frames = selected_frames(selection, rep)
    if exclusion.scrub_free_memory:
        scrub_free_memory(kernel, selection.model, memory, frames, patcher,
                          rep)
    else:
        rep.free_pages = {'kept': True}
    if len(frames):
        patcher.scrub(frames, 0)
    scrub_kernel_copies(kernel, memory, selection, exclusion, frames,
                        patcher, rep)
    if exclusion.kill:
        kill_selected(kernel, selection, patcher, rep)
    shown = [f for f in patcher.fields if not f.redacted]
    rep.rewrite = {'fields_patched': len(shown),
                   'byte_ranges_zeroed': len(patcher.fields) - len(shown)}
    rep.patched_fields = [f.as_dict() for f in shown]
    return patcher


# -- 1. select -------------------------------------------------------------

def select_processes(kernel, memory, exclusion: Exclusion,
                     rep: report_mod.ScrubReport) -> Selection:
    """The processes ``exclusion`` selects, then those the IPC graph's
    follow rule pulls in (:func:`.ipc.follow`) and those sharing
    copy-on-write anonymous frames with them. Appends the selectors'
    notes to ``rep.notes`` and laps ``ipc_graph``.
    """
    procs = tasks.processes(kernel)
    chosen, notes = selectors_mod.select(procs, list(exclusion.selectors),
                                         exclusion.with_children)
    rep.notes += notes
    by_pid = {p.pid: p for p in procs}
    model = pages.PageModel(kernel)
    graph = ipc.build_graph(kernel, model, procs)
    pulled, at_risk = ipc.follow(graph, chosen, exclusion.follow_ipc)
    frames_of = _FramesCache(kernel, model, memory, by_pid)
    _follow_shared_anonymous(procs, chosen, frames_of, graph,
                             exclusion.follow_ipc, pulled, at_risk)
    rep.lap('ipc_graph')
    return Selection(processes=procs, by_pid=by_pid, model=model,
                     chosen=chosen, graph=graph, pulled=pulled,
                     at_risk=at_risk, frames_of=frames_of)


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
            frames = frames_of(proc.pid)
            hit = arrays.intersect_sorted(
                arrays.unique(frames.pfn[frames.anon]), shared)
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
    pfn = np.concatenate([f.pfn[f.anon] for f in frames])
    mapcount = np.concatenate([f.mapcount[f.anon] for f in frames])
    uniq, first, counts = arrays.unique(pfn, return_index=True,
                                        return_counts=True)
    return uniq[mapcount[first] > counts]


# -- 2. frames -------------------------------------------------------------

def selected_frames(selection: Selection,
                    rep: report_mod.ScrubReport) -> np.ndarray:
    """The anonymous frames to zero: those mapped only by selected
    processes (the kernel's mapcount equals the selection's own
    mappings). Appends one :class:`~.report.ProcessPlan` per selected
    process to ``rep.processes``: its frames by class and the frames
    refused (also mapped by an unselected process, or a mapcount lower
    than the mappings found), at most :data:`MAX_REFUSED_LISTED` listed.

    :returns: the frames, sorted, unique (int64 page frame numbers).
    """
    rows = [(selection.by_pid[pid], selection.frames_of(pid))
            for pid in sorted(selection.chosen)]
    mapped, times = _selection_counts(rows)
    chosen_frames = []
    for proc, frames in rows:
        plan = report_mod.ProcessPlan(
            pid=proc.pid, comm=proc.comm, exe=proc.exe,
            reasons=selection.chosen[proc.pid],
            threads=[t.tid for t in proc.threads], frames={}, refused=[])
        anon = frames.anon
        pfn, first = arrays.unique(frames.pfn[anon], return_index=True)
        cls = frames.cls[anon][first]
        mapcount = frames.mapcount[anon][first]
        by_selection = times[np.searchsorted(mapped, pfn)]
        ok = mapcount == by_selection
        for c, name in enumerate(addrspace.CLASS_NAMES):
            of_class = pfn[ok & (cls == c)]
            if len(of_class):
                plan.frames[name] = of_class
        chosen_frames.append(pfn[ok])
        refused = np.nonzero(~ok)[0]
        for i in refused[:MAX_REFUSED_LISTED].tolist():
            plan.refused.append(_refused_frame(
                int(pfn[i]), int(cls[i]), int(mapcount[i]),
                int(by_selection[i])))
        if len(refused) > MAX_REFUSED_LISTED:
            plan.refused.append({'more': len(refused) - MAX_REFUSED_LISTED})
        rep.processes.append(plan)
    if not chosen_frames:
        return np.zeros(0, dtype=np.int64)
    return arrays.unique(np.concatenate(chosen_frames))


def _selection_counts(rows):
    """(sorted anonymous frames of the selection, how many times the
    selection maps each).
    """
    all_pfns = np.concatenate([f.pfn[f.anon] for _, f in rows]) \
        if rows else np.zeros(0, dtype=np.int64)
    return arrays.unique(all_pfns, return_counts=True)


def _refused_frame(pfn: int, cls: int, mapcount: int,
                   by_selection: int) -> dict:
    """The report entry of an anonymous frame left as it is: the kernel
    counts ``mapcount`` mappings, the selection holds ``by_selection``.
    """
    if mapcount > by_selection:
        reason = ('mapped %d times, %d by selected processes: shared with '
                  'an unselected process' % (mapcount, by_selection))
    else:
        reason = ('mapcount %d is lower than the %d mappings found'
                  % (mapcount, by_selection))
    return {'frame': '0x%x' % pfn, 'class': addrspace.CLASS_NAMES[cls],
            'reason': reason}


# -- 3. free memory --------------------------------------------------------

def scrub_free_memory(kernel, model, memory, selected: np.ndarray,
                      patcher: patches.PagePatcher,
                      rep: report_mod.ScrubReport) -> None:
    """Queue the guest's free memory in ``patcher``: every free frame
    (buddy and per-CPU lists) not already holding the guest's free-page
    fill (zero, or its poison pattern) is set to it, and every free slab
    object is zeroed. Sets ``rep.free_pages`` and appends the slab
    walk's notes.

    :param selected: the frames of :func:`selected_frames`.
    :raises PlanConflict: a frame is both free and ``selected``.
    """
    free = freepages.free_memory(kernel, model, kernel.online_cpus())
    # Free memory is kept as ranges and numbered a chunk at a time: a
    # large guest has millions of free frames.
    overlap = free.free_among(selected)
    if len(overlap):
        raise patches.PlanConflict(
            'frame 0x%x is both free and mapped by a selected process'
            % int(overlap[0]))
    change = [pfns[~memory.holds(pfns, free.fill)]
              for pfns in free.frames()]
    change = np.concatenate(change) if change else \
        np.zeros(0, dtype=np.int64)
    rep.free_pages = free.summary()
    rep.free_pages['frames_rewritten'] = int(len(change))
    patcher.scrub(change, free.fill, free=True)
    caches, slab_notes = slabfree.free_objects(kernel, model)
    rep.notes += slab_notes
    for cache in caches:
        for paddr, size in cache.ranges:
            patcher.zero_phys(paddr, size, 'free object of %s' % cache.cache,
                              kind=patches.FREE_OBJECT)
    rep.free_pages['slab_objects'] = sum(c.objects for c in caches)
    rep.free_pages['slab_caches'] = len(caches)


# -- 4. kernel copies ------------------------------------------------------

def scrub_kernel_copies(kernel, memory, selection: Selection,
                        exclusion: Exclusion, selected: np.ndarray,
                        patcher: patches.PagePatcher,
                        rep: report_mod.ScrubReport) -> None:
    """Queue the kernel-held copies of the selected processes' data
    (:func:`.kernel_copies.plan_kernel_copies`) in ``patcher``: frames they own
    alone are set to zero, byte ranges zeroed in place, the flags of
    dropped page-cache pages cleared. Sets ``rep.ipc``.

    :param selected: the frames of :func:`selected_frames`.
    :raises PlanConflict: a buffer frame is not guest RAM, or is also
        mapped as anonymous memory.
    """
    copies = kernel_copies.plan_kernel_copies(
        selection.graph, kernel, selection.model, set(selection.chosen),
        exclusion.exclude_paths)
    _queue_kernel_copies(kernel, memory, selection.model, patcher, copies,
                         selected)
    rep.ipc = {'follow_ipc': exclusion.follow_ipc,
               'pulled_in': selection.pulled,
               'at_risk': selection.at_risk, 'scrubbed': copies.summary(),
               'not_scrubbed': copies.not_scrubbed}


def _queue_kernel_copies(kernel, memory, model, patcher, copies,
                         anon) -> None:
    """Queue the kernel-held copies of ``copies`` in ``patcher``: owned
    frames are scrubbed whole, byte ranges zeroed in place.
    """
    frames = [np.asarray(c.frames, dtype=np.int64)
              for items in copies.copies.values() for c in items]
    frames = arrays.unique(np.concatenate(frames)) if frames else \
        np.zeros(0, dtype=np.int64)
    if len(frames):
        outside = frames[~addrspace.memory_is_ram(memory, frames)]
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


# -- 5. kill ---------------------------------------------------------------

def kill_selected(kernel, selection: Selection,
                  patcher: patches.PagePatcher,
                  rep: report_mod.ScrubReport) -> None:
    """Queue, for every process of ``rep.processes``, a pending SIGKILL
    on each thread and, when all its threads sleep, a wake-up
    (:func:`.kill.inject`); sets each plan's ``kill`` and appends the
    timer wheel's notes.
    """
    wheel = []

    def wheel_factory():
        if not wheel:
            wheel.append(kill.TimerWheel(kernel, patcher,
                                         kernel.online_cpus()))
        return wheel[0]
    for plan in rep.processes:
        result = kill.inject(kernel, patcher, selection.by_pid[plan.pid],
                             wheel_factory)
        plan.kill = result.as_dict()
    if wheel and wheel[0].notes:
        rep.notes += wheel[0].notes
