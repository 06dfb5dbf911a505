"""Follow an excluded process's data: IPC dependencies and kernel copies.

:func:`build_graph` reads every process's open files and shared mappings
(:mod:`sparc_nova.introspect.files`) and derives who can send data to
whom:

==================  ====================================================
edge kind           from -> to
==================  ====================================================
``pipe``            a holder of the write end -> a holder of the read end
``unix-stream``,    the holders of one socket <-> the holders of its peer
``unix-seqpacket``
``unix-dgram``      a socket's holders -> its connected peer's holders,
                    and the sender of every queued datagram -> the
                    receiver's holders
``sysv-shm``,       every pair of processes mapping or holding the same
``shared-memory``   SysV segment, memfd, tmpfs file or ``MAP_SHARED``
                    anonymous memory
``tty``             the holders of a pty master <-> those of its slave
``file``            a writer of a regular file -> its readers
``ptrace``          tracer <-> tracee
==================  ====================================================

:func:`follow` extends a selection along those edges (``follow_ipc``) or
lists the peers it reaches as at risk. :func:`plan_kernel_copies` then
finds what the kernel holds for the excluded processes: pipe buffers,
unix socket queues (their own and the datagrams they sent), terminal
buffers of the sessions they lead or the ptys they drive, and shared
memory no other process holds. Shared memory that another process still
holds is never scrubbed (that would corrupt it): it is reported.
"""

import collections
import dataclasses
import posixpath

import drgn

from sparc_nova.engine.disk import report as disk_report
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.introspect import files as files_mod
from sparc_nova.introspect import ipc as ipc_introspect
from sparc_nova.introspect import pagecache
from sparc_nova.introspect import walk
from sparc_nova.vocabulary import paths as vocabulary_paths

#: Kinds of shared memory scrubbed when only excluded processes hold them
#: (a named tmpfs file only when the policy's exclude paths name it or it
#: lives under /dev/shm, the POSIX shm mount).
SHM_KINDS = ('sysv-shm', 'memfd', 'shmem')
POSIX_SHM_DIR = '/dev/shm/'
#: Guest memory reads allowed for the graph, outside the walks that have
#: budgets of their own (fd tables, sockets, ptrace links of every task).
GRAPH_BUDGET = 20000000
#: Report classes of kernel copies.
CLASSES = ('pipe', 'unix-socket', 'tty', 'memfd-shmem', 'sysv-shm',
           'page-cache')


@dataclasses.dataclass
class Edge:
    """``src`` can send data to ``dst`` through ``object``."""

    src: int
    dst: int
    kind: str
    object: str

    def as_dict(self) -> dict:
        return {'from': self.src, 'to': self.dst, 'kind': self.kind,
                'object': self.object}


@dataclasses.dataclass
class IpcObject:
    """A file two or more processes may share, with who holds it."""

    key: int                    # struct inode * (sockets: struct sock *)
    kind: str
    object: str
    file: int
    holders: list = dataclasses.field(default_factory=list)
    info: dict = dataclasses.field(default_factory=dict)

    def pids(self, mode: str | None = None) -> set[int]:
        return {h.pid for h in self.holders
                if mode is None or mode in h.mode}

    def as_dict(self) -> dict:
        out = {'object': self.object, 'kind': self.kind,
               'holders': [dict(pid=h.pid, **h.as_dict())
                           for h in self.holders]}
        out.update({k: v for k, v in self.info.items()
                    if not k.startswith('_')})
        if self.kind == 'sysv-shm':
            out['attached'] = sorted(self.pids())
        return out


@dataclasses.dataclass
class IpcGraph:
    """Open files, IPC objects and edges of one guest."""

    files: dict                             # pid -> [OpenFile]
    objects: dict                           # key -> IpcObject
    edges: list
    comms: dict                             # pid -> comm

    def out_edges(self) -> dict:
        out = collections.defaultdict(list)
        for e in self.edges:
            out[e.src].append(e)
        return out

    def as_dict(self) -> dict:
        return {
            'processes': [{'pid': pid, 'comm': self.comms.get(pid, '?'),
                           'fds': [f.as_dict() for f in fl if f.fd >= 0],
                           'shared_mappings': [f.as_dict() for f in fl
                                               if f.fd < 0]}
                          for pid, fl in sorted(self.files.items())],
            'objects': [o.as_dict() for o in self.objects.values()
                        if o.kind in ('pipe', 'socket', 'tty') + SHM_KINDS
                        or len(o.pids()) > 1],
            'edges': [e.as_dict() for e in self.edges]}


def build_graph(kernel, page_model, procs) -> IpcGraph:
    """The IPC graph of the user processes ``procs``
    (:class:`~sparc_nova.introspect.tasks.Process`).
    """
    with kernel.budget(GRAPH_BUDGET, 'building the IPC graph'):
        return _build_graph(kernel, page_model, procs)


def _build_graph(kernel, page_model, procs) -> IpcGraph:
    classifier = files_mod.FileClassifier(kernel)
    reader = ipc_introspect.IpcReader(kernel, page_model)
    graph = IpcGraph(files={}, objects={}, edges=[], comms={})
    for proc in procs:
        if proc.kernel_thread:
            continue
        graph.comms[proc.pid] = proc.comm
        held = files_mod.open_files(kernel, classifier, proc.pid,
                                    proc.address)
        held += files_mod.shared_mappings(kernel, classifier, proc.pid,
                                          proc.mm)
        graph.files[proc.pid] = held
        for f in held:
            _add_holder(graph, reader, f)
    for key, obj in graph.objects.items():
        if obj.kind == 'pipe':
            # Read once: the scrub plan reuses these buffers.
            obj.info['_pipe'] = reader.pipe(key, obj.object)
            obj.info['queued_bytes'] = obj.info['_pipe'].data_bytes
    _pipe_edges(graph)
    _unix_edges(graph, reader)
    _tty_edges(graph, reader)
    _shared_edges(graph)
    _ptrace_edges(graph, kernel, procs)
    seen = set()
    unique = []
    for e in graph.edges:
        k = (e.src, e.dst, e.kind, e.object)
        if e.src != e.dst and k not in seen:
            seen.add(k)
            unique.append(e)
    graph.edges = unique
    return graph


def _add_holder(graph, reader, f) -> None:
    key = f.inode
    info = {}
    if f.kind == 'socket':
        sock = reader.socket(f.file)
        if sock is not None:
            key = sock['sk']
            info = {'family': 'unix', 'type': sock['type'],
                    '_peer': sock['peer']}
    elif f.kind == 'tty':
        tty = reader.tty_of_file(f.file)
        if tty:
            key = tty
            t = reader.tty_info(tty)
            info = {'_link': t['link'], 'master': t['master'],
                    'session': t['session']}
    obj = graph.objects.get(key)
    if obj is None:
        obj = IpcObject(key=key, kind=f.kind, object=f.object, file=f.file,
                        info=info)
        graph.objects[key] = obj
    obj.holders.append(f)


def _pipe_edges(graph) -> None:
    for obj in graph.objects.values():
        if obj.kind == 'pipe':
            graph.edges += [Edge(w, r, 'pipe', obj.object)
                            for w in obj.pids('w') for r in obj.pids('r')]


def _unix_edges(graph, reader) -> None:
    for key, obj in list(graph.objects.items()):
        if obj.info.get('family') != 'unix':
            continue
        kind = 'unix-' + obj.info['type']
        peer = graph.objects.get(obj.info['_peer'])
        if peer is not None:
            obj.info['peer'] = peer.object
            graph.edges += [Edge(a, b, kind, obj.object)
                            for a in obj.pids() for b in peer.pids()]
        queue = reader.receive_queue(key, obj.object)
        obj.info['queued_bytes'] = sum(c.data_bytes for _, c in queue)
        obj.info['_queue'] = queue
        for sender, _ in queue:
            src = graph.objects.get(sender)
            if src is not None and src is not obj:
                graph.edges += [Edge(a, b, kind, obj.object)
                                for a in src.pids() for b in obj.pids()]


def _tty_edges(graph, reader) -> None:
    for key, obj in graph.objects.items():
        if obj.kind != 'tty' or not obj.info.get('master'):
            continue
        slave = graph.objects.get(obj.info['_link'])
        if slave is None:
            continue
        for a in obj.pids():
            for b in slave.pids():
                graph.edges.append(Edge(a, b, 'tty', slave.object))
                graph.edges.append(Edge(b, a, 'tty', slave.object))


def _shared_edges(graph) -> None:
    for obj in graph.objects.values():
        if obj.kind in SHM_KINDS:
            kind = 'sysv-shm' if obj.kind == 'sysv-shm' else \
                'shared-memory'
            pids = obj.pids()
            graph.edges += [Edge(a, b, kind, obj.object)
                            for a in pids for b in pids]
        elif obj.kind == 'file':
            shared = [h for h in obj.holders if h.fd < 0]
            graph.edges += [Edge(a.pid, b.pid, 'shared-memory', obj.object)
                            for a in shared for b in shared
                            if 'w' in a.mode]
            graph.edges += [Edge(w, r, 'file', obj.object)
                            for w in obj.pids('w') for r in obj.pids('r')]


def _ptrace_edges(graph, kernel, procs) -> None:
    prog = kernel.prog
    for proc in procs:
        if proc.kernel_thread:
            continue
        for t in proc.threads:
            try:
                task = drgn.Object(prog, 'struct task_struct *',
                                   value=t.address)
                if not task.ptrace.value_():
                    continue
                tracer = task.parent.tgid.value_()
            except drgn.FaultError as e:
                raise walk.CorruptStructure('task %d is unreadable (%s)'
                                            % (t.tid, e))
            if tracer in graph.comms and tracer != proc.pid:
                obj = 'ptrace:[%d]' % t.tid
                graph.edges.append(Edge(tracer, proc.pid, 'ptrace', obj))
                graph.edges.append(Edge(proc.pid, tracer, 'ptrace', obj))


def follow(graph: IpcGraph, chosen: dict, follow_ipc: bool,
           protected=(1,)) -> tuple[list[dict], list[dict]]:
    """Extend ``chosen`` (pid -> reasons, changed in place) along the
    edges that leave it, transitively.

    With ``follow_ipc`` every process reached is added with an ``ipc:``
    reason naming the edge; otherwise nothing is added and the processes
    reached are returned as at risk. A ``protected`` process (init) is
    never added: it is reported as at risk.

    :returns: ``(pulled_in, at_risk)``, each ``[{'pid', 'comm', 'edge'}]``.
    """
    out_edges = graph.out_edges()
    pulled, at_risk = [], []
    reached = set(chosen)
    queue = collections.deque(sorted(chosen))
    while queue:
        pid = queue.popleft()
        for e in out_edges.get(pid, ()):
            if e.dst in reached:
                continue
            reached.add(e.dst)
            edge = e.as_dict()
            edge['object'] = report_name(e.kind, e.object)
            entry = {'pid': e.dst, 'comm': graph.comms.get(e.dst, '?'),
                     'edge': edge}
            if follow_ipc and e.dst not in protected:
                chosen[e.dst] = ['ipc: %s %s from pid %d'
                                 % (e.kind, edge['object'], e.src)]
                pulled.append(entry)
            else:
                if e.dst in protected:
                    entry['reason'] = 'pid %d is never excluded' % e.dst
                at_risk.append(entry)
            queue.append(e.dst)
    return pulled, at_risk


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


def plan_kernel_copies(graph: IpcGraph, kernel, page_model,
                       excluded: set[int], exclude_paths=()
                       ) -> KernelCopyPlan:
    """The kernel-held copies to scrub for the ``excluded`` processes,
    and the page cache of the files ``exclude_paths`` (a rule list of
    :mod:`sparc_nova.vocabulary.paths`, scopes included) name.
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
        elif obj.kind in SHM_KINDS and held:
            _plan_shm(reader, obj, excluded, rules, plan)
    if rules is not None:
        _plan_page_cache(kernel, page_model, rules, plan)
    for items in plan.copies.values():
        for c in items:
            plan.not_scrubbed += [{'object': c.object, 'kind': c.kind,
                                   'reason': r} for r in c.left]
    for entry in plan.not_scrubbed:
        entry['object'] = report_name(entry['kind'], entry['object'])
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


def report_name(kind: str, name: str) -> str:
    """``name`` as a scrub report shows it: file names hashed
    (:func:`file_label`), IPC object names as they are.
    """
    if kind in ('file', 'shared-memory', 'memfd', 'shmem') and \
            not name.startswith('sha256:'):
        return file_label(name)
    return name


def file_label(path: str) -> str:
    """How reports name a guest file: its SHA-256 (names can be secret
    too).
    """
    return 'sha256:' + disk_report.path_digest(path)


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
        label = file_label(cached.paths[0])
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
