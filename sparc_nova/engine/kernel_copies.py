"""The kernel-held copies of an excluded process's data, and the page
cache of excluded files: what to scrub besides the process's own pages.

:func:`plan_kernel_copies` takes the IPC graph
(:mod:`sparc_nova.engine.ipc`) and the final set of excluded processes,
and finds what the kernel holds for them: pipe buffers, unix socket
queues (their own and the datagrams they sent), terminal buffers of the
sessions they lead or the ptys they drive, and shared memory no other
process holds. Shared memory that another process still holds is never
scrubbed (that would corrupt it): it is reported. The cached pages of
the files the policy's exclude paths name are planned too.
"""

import dataclasses
import posixpath

from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine import ipc
from sparc_nova.introspect import ipc as ipc_introspect
from sparc_nova.introspect import pagecache
from sparc_nova.vocabulary import paths as vocabulary_paths

__all__ = ['KernelCopyPlan', 'plan_kernel_copies', 'CLASSES',
           'POSIX_SHM_DIR', 'MAX_PATH_DEPTH']

#: Report classes of kernel copies.
CLASSES = ('pipe', 'unix-socket', 'tty', 'memfd-shmem', 'sysv-shm',
           'page-cache')
#: Shared memory (:data:`~sparc_nova.engine.ipc.SHM_KINDS`) is scrubbed
#: when only excluded processes hold it; a named tmpfs file only when the
#: policy's exclude paths name it or it lives here, the POSIX shm mount.
POSIX_SHM_DIR = '/dev/shm/'


@dataclasses.dataclass
class KernelCopyPlan:
    """What to scrub in kernel-held copies, per report class."""

    copies: dict = dataclasses.field(
        default_factory=lambda: {c: [] for c in CLASSES})
    not_scrubbed: list = dataclasses.field(default_factory=list)

    def summary(self) -> dict:
        out = {}
        for cls, items in self.copies.items():
            out[cls] = {
                'objects': len({c.object for c in items}),
                'bytes': sum(c.data_bytes for c in items),
                'frames': sum(len(c.frames) for c in items),
                'ranges': sum(len(c.ranges) + len(c.phys_ranges)
                              for c in items)}
        return out


def plan_kernel_copies(graph: ipc.IpcGraph, kernel, page_model,
                       excluded: set[int], exclude_paths=()
                       ) -> KernelCopyPlan:
    """The kernel-held copies to scrub for the ``excluded`` processes
    (pids), and the page cache of the files ``exclude_paths`` (a rule
    list of :mod:`sparc_nova.vocabulary.paths`, scopes included) name.

    Reads guest memory (tty buffers, shared memory frames, the page
    cache); writes nothing. What is left alone, and why, is in
    ``not_scrubbed`` (object names as reports show them,
    :func:`~sparc_nova.engine.ipc.report_name`).

    :raises sparc_nova.introspect.walk.CorruptStructure: guest memory the
        walk needs is unreadable or inconsistent.
    """
    reader = ipc_introspect.IpcReader(kernel, page_model)
    plan = KernelCopyPlan()
    rules = rules_mod.Rules(exclude_paths) \
        if vocabulary_paths.selects_anything(exclude_paths) else None
    mine = {k: o for k, o in graph.objects.items()
            if o.pids() & excluded}
    excluded_socks = {k for k, o in mine.items()
                      if o.info.get('family') == 'unix'}
    for key, obj in graph.objects.items():
        held = key in mine
        if obj.kind == 'pipe' and held:
            plan.copies['pipe'].append(obj.info['_pipe'])
        elif obj.info.get('family') == 'unix':
            for sender, copy in obj.info.get('_queue', ()):
                if held or sender in excluded_socks:
                    plan.copies['unix-socket'].append(copy)
        elif obj.kind == 'tty' and held:
            _plan_tty(graph, reader, obj, excluded, plan)
        elif obj.kind in ipc.SHM_KINDS and held:
            _plan_shm(reader, obj, excluded, rules, plan)
    if rules is not None:
        _plan_page_cache(kernel, page_model, rules, plan)
    for items in plan.copies.values():
        for c in items:
            plan.not_scrubbed += [{'object': c.object, 'kind': c.kind,
                                   'reason': r} for r in c.left]
    for entry in plan.not_scrubbed:
        entry['object'] = ipc.report_name(entry['kind'], entry['object'])
    return plan


def _plan_tty(graph, reader, obj, excluded, plan) -> None:
    master = obj.info.get('master')
    session = obj.info.get('session')
    if not (master or session in excluded):
        plan.not_scrubbed.append({
            'object': obj.object, 'kind': 'tty',
            'reason': 'terminal of session %d, which is not excluded'
                      % session if session else
                      'terminal without a session leader among the '
                      'excluded processes'})
        return
    ttys = [obj.key]
    link = obj.info.get('_link')
    if link:
        ttys.append(link)
    for tty in ttys:
        name = obj.object if tty == obj.key else \
            graph.objects[link].object if link in graph.objects else \
            '%s (pty peer)' % obj.object
        plan.copies['tty'].append(reader.tty(tty, name))


def _plan_shm(reader, obj, excluded, rules, plan) -> None:
    others = sorted(obj.pids() - excluded)
    if others:
        plan.not_scrubbed.append({
            'object': obj.object, 'kind': obj.kind,
            'reason': 'also held by pid %s, which is not excluded'
                      % ', '.join(map(str, others))})
        return
    deleted = obj.object.endswith(' (deleted)')
    if obj.kind == 'shmem' and not deleted and \
            not obj.object.startswith(POSIX_SHM_DIR) and \
            not (rules and _selected(rules, obj.object)):
        plan.not_scrubbed.append({
            'object': obj.object, 'kind': obj.kind,
            'reason': 'a named tmpfs file outlives the process; name it in '
                      'the exclude paths to scrub it'})
        return
    copy = reader.shmem_frames(obj.key, obj.object)
    copy.kind = obj.kind
    cls = 'sysv-shm' if obj.kind == 'sysv-shm' else 'memfd-shmem'
    plan.copies[cls].append(copy)


#: Deepest guest path matched against the policy (components).
MAX_PATH_DEPTH = 256


def _selected(rules, path: str) -> bool:
    path = posixpath.normpath(path)
    if not path.startswith('/') or path.count('/') > MAX_PATH_DEPTH:
        return False
    return bool(rules.select([path]).removed)


def _plan_page_cache(kernel, page_model, rules, plan) -> None:
    """Drop the cached pages of the files ``rules`` select.

    A page of tmpfs or ramfs is the file itself: it is zeroed. A clean
    page of a disk-backed file is zeroed and loses ``PG_uptodate``, so
    the guest reads it again from its disk. A page that is mapped, dirty,
    under writeback, locked, or carries buffer heads is left alone and
    reported (dropping it would lose data or corrupt a process).
    """
    prog = kernel.prog
    bit = {name: prog[name].value_() for name in (
        'PG_uptodate', 'PG_dirty', 'PG_writeback', 'PG_locked',
        'PG_private')}
    for cached in pagecache.cached_files(kernel):
        if not any(_selected(rules, p) for p in cached.paths):
            continue
        label = ipc.file_label(cached.paths[0])
        copy = ipc_introspect.KernelCopies(label, 'page-cache')
        folios = pagecache.file_folios(kernel, cached.inode, label)
        heads = [page_model.pfn_of_page(page) for page, _ in folios]
        info = page_model.read(heads) if heads else None
        for i, (page, nr) in enumerate(folios):
            flags = int(info['flags'][i])
            mapped = int(info['mapcount'][i]) + 1 > 0
            busy = [n for n in ('PG_writeback', 'PG_locked')
                    if flags >> bit[n] & 1]
            if cached.backed:
                busy += [n for n in ('PG_dirty', 'PG_private')
                         if flags >> bit[n] & 1]
            if mapped:
                busy.append('mapped by a process')
            if busy:
                copy.left.append('a page is %s' % ', '.join(busy))
                continue
            copy.frames.extend(range(heads[i], heads[i] + nr))
            copy.data_bytes += nr * 4096
            if cached.backed:
                copy.flag_clears.append((page, bit['PG_uptodate']))
        plan.copies['page-cache'].append(copy)
