"""A guest whose processes pass secrets to each other, checkpointed once:
the fixture of the IPC exclusion tests.

One guest (256 MiB) runs every scenario of ``workloads/ipc.c``, each with
its own marker, and a control that shares nothing:

* ``pipe``: writer -> reader through a pipe, one copy left unread in it;
  the reader forwards its copy to a sink through a second pipe;
* ``ustream`` / ``udgram``: writer -> reader over a unix stream / datagram
  socket pair, one copy left unread in the reader's receive queue;
* ``sysv`` / ``memfd``: the writer puts its marker in a SysV shm segment /
  a memfd mapped shared by both, the reader copies it out;
* ``pty``: a terminal types a shell comment holding the marker on the
  master of a pty whose slave runs ``sh -i`` (never reading the master);
* ``ptrace``: a tracer writes the marker into its tracee's memory with
  ``PTRACE_POKEDATA``;
* ``control``: ``workload hold 4``.

The processes named on the command line are each scenario's writer (the
shell for ``pty``, the tracer for ``ptrace``); the other processes of a
scenario are its peers, which IPC exclusion must pull in. Just before
``virsh save`` the guest lists its processes and, for every workload
process, readlink of each of its descriptors.
"""

import dataclasses
import json
import os
import time

from tests.functional.engine import scenario as scen

#: Marker index of each IPC scenario (``control`` holds marker 4).
MARKERS = {'pipe': 9, 'ustream': 10, 'udgram': 11, 'sysv': 12, 'memfd': 13,
           'pty': 14, 'ptrace': 15}
CONTROL_MARKER = 4
#: The process of each scenario that is named for exclusion.
NAMED_ROLE = {'pipe': 'writer', 'ustream': 'writer', 'udgram': 'writer',
              'sysv': 'writer', 'memfd': 'writer', 'pty': 'shell',
              'ptrace': 'tracer'}
#: How each peer is reached: (scenario, peer role) -> (edge kind, the role
#: at the edge's sending end).
PEER_EDGES = {
    ('pipe', 'reader'): ('pipe', 'writer'),
    ('pipe', 'sink'): ('pipe', 'reader'),
    ('ustream', 'reader'): ('unix-stream', 'writer'),
    ('udgram', 'reader'): ('unix-dgram', 'writer'),
    ('sysv', 'reader'): ('sysv-shm', 'writer'),
    ('memfd', 'reader'): ('shared-memory', 'writer'),
    ('pty', 'terminal'): ('tty', 'shell'),
    ('ptrace', 'tracee'): ('ptrace', 'tracer'),
}
#: Short-lived processes of the guest's own listing loops and heartbeat.
TRANSIENT = ('cut', 'awk', 'cat', 'sleep', 'sh', 'fdlist')


@dataclasses.dataclass
class IpcScenario:
    guest: object
    image: object
    save_path: str
    workdir: str
    #: ``{scenario: {role: pid}}``
    roles: dict
    control: int
    processes: list
    #: ``{pid: {fd: link}}`` as the guest listed it just before the save.
    fds: dict

    def marker(self, scenario: str) -> str:
        if scenario == 'control':
            return self.image.marker(CONTROL_MARKER)
        return self.image.marker(MARKERS[scenario])

    def pid(self, scenario: str, role: str) -> int:
        return self.roles[scenario][role]

    def named(self) -> list[int]:
        """The pids named for exclusion: writers and the pty's shell."""
        return [self.pid(s, r) for s, r in NAMED_ROLE.items()]

    def peers(self) -> list[int]:
        """The pids IPC exclusion must pull in."""
        return [self.pid(s, r) for s, r in PEER_EDGES]

    def workload_pids(self) -> list[int]:
        return [p for roles in self.roles.values()
                for p in roles.values()] + [self.control]

    def lasting(self) -> set[int]:
        """The user-space processes that ran before the save and do not end
        by themselves: init, the console shell, the heartbeat loop's shell
        and every workload process.
        """
        console = [p['ppid'] for p in self.processes
                   if p['pid'] == self.control]
        return {p['pid'] for p in self.processes
                if p['pid'] != 2 and p['ppid'] != 2 and
                p['comm'] not in TRANSIENT} | set(console) | \
            set(self.workload_pids())

    def selectors(self) -> list[str]:
        args = []
        for pid in self.named():
            args += ['--exclude-process', 'pid:%d' % pid]
        return args


def build(make_guest, image, workdir) -> IpcScenario:
    g = make_guest(memory_mib=256)
    roles = {name: g.start_ipc(name, idx, timeout=120)
             for name, idx in MARKERS.items()}
    control = g.start_workload('hold %d' % CONTROL_MARKER)
    time.sleep(1)
    procs = g.processes()
    pids = [p for r in roles.values() for p in r.values()] + [control]
    fds = g.open_files(pids)
    path = os.path.join(workdir, 'guest.save')
    g.save(path)
    return IpcScenario(guest=g, image=image, save_path=path,
                       workdir=workdir, roles=roles, control=control,
                       processes=procs, fds=fds)


def scrub(sc: IpcScenario, name: str, *extra: str) -> tuple[str, dict]:
    """Scrub the saved checkpoint into ``NAME.save`` with the named
    processes excluded (and ``extra`` options); return its path and the
    report.
    """
    out = os.path.join(sc.workdir, name + '.save')
    report = os.path.join(sc.workdir, name + '.json')
    scen.sparc('checkpoint', 'scrub', sc.save_path, '--output', out,
               '--report', report, *sc.selectors(), *extra, check=0)
    with open(report) as f:
        return out, json.load(f)


def restore(sc: IpcScenario, path: str, gone: list[int]) -> set[int]:
    """``virsh restore`` ``path`` (powering off the guest first when a
    previous restore left it running), wait until the pids ``gone`` have
    died and check the guest stays healthy: heartbeat, no oops, every
    other lasting process (the control, the readers left running...)
    alive. Returns the pids alive then.
    """
    g = sc.guest
    if g.dom is not None and g.dom.isActive():
        g.dom.destroy()
    since = g.console_size()
    g.restore(path)
    procs = scen.wait_gone(g, gone)
    alive = {p['pid'] for p in procs}
    assert not alive & set(gone), [p for p in procs if p['pid'] in gone]
    # A line of the listing garbled on the console drops a process from
    # it: ask the guest about each pid in checksummed lines.
    others = sc.lasting() - set(gone)
    exists = g.open_files(sorted(others | set(gone)))
    assert not [p for p in gone if exists[p] is not None], exists
    assert not [p for p in others if exists[p] is None], exists
    alive |= others
    # Each restore of the same save counts its heartbeats from the same
    # number: look only at what this one printed.
    beat = int(g.wait_for(r'HEARTBEAT (\d+)', 30, since).group(1))
    g.wait_for(r'HEARTBEAT %d\b' % (beat + 2), 30, since)
    assert g.oopses() == []
    return alive
