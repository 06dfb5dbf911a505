"""Who can send data to whom: the IPC dependency graph of a guest.

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
lists the peers it reaches as at risk. What the kernel holds for the
processes finally excluded is planned from this graph by
:mod:`sparc_nova.engine.kernel_copies`.
"""

import collections
import dataclasses

import drgn

from sparc_nova.engine.disk import report as disk_report
from sparc_nova.introspect import files as files_mod
from sparc_nova.introspect import ipc as ipc_introspect
from sparc_nova.introspect import walk

__all__ = ['Edge', 'IpcObject', 'IpcGraph', 'build_graph', 'follow',
           'report_name', 'file_label', 'SHM_KINDS', 'GRAPH_BUDGET']

#: Kinds of shared memory: every pair of their holders is linked (and
#: :mod:`~sparc_nova.engine.kernel_copies` scrubs them when only excluded
#: processes hold them).
SHM_KINDS = ('sysv-shm', 'memfd', 'shmem')
#: Guest memory reads allowed for the graph, outside the walks that have
#: budgets of their own (fd tables, sockets, ptrace links of every task).
GRAPH_BUDGET = 20000000


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
    (:class:`~sparc_nova.introspect.tasks.Process`; kernel threads are
    skipped): their open files and shared mappings, the objects they
    share, and the edges between them (self-edges and duplicates
    dropped). Pipe buffers and unix socket queues are read once here and
    kept in the objects' ``info`` for the kernel-copy plan.

    :raises sparc_nova.introspect.walk.CorruptStructure: guest memory the
        walk needs is unreadable or inconsistent.
    :raises sparc_nova.exception.SparcError: the guest memory reads exceed
        :data:`GRAPH_BUDGET`.
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
