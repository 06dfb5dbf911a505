"""Processes and threads of the guest, from the kernel's task list.

Processes are the thread-group leaders on ``init_task.tasks``; threads are
on each leader's ``signal->thread_head``. Both walks are bounded and cycle
checked (:mod:`.walk`). Paths and cgroups use drgn's helpers under a read
budget.
"""

import dataclasses

import drgn
from drgn.helpers.linux import cgroup as cgroup_helpers
from drgn.helpers.linux import fs as fs_helpers
from drgn.helpers.linux import mm as mm_helpers

from sparc_nova.introspect import walk

#: Most tasks a guest may have (the kernel's PID_MAX_LIMIT).
MAX_TASKS = 4 * 1024 * 1024
#: Reads allowed for one path or cgroup name.
PATH_BUDGET = 20000


@dataclasses.dataclass
class Thread:
    """One task (a thread of a process)."""

    tid: int
    comm: str
    address: int            # struct task_struct *
    state: int              # task->__state
    on_cpu: bool
    on_rq: bool
    flags: int              # task->flags (PF_*)

    def as_dict(self) -> dict:
        return {'tid': self.tid, 'comm': self.comm,
                'task': '0x%x' % self.address, 'state': self.state,
                'on_cpu': self.on_cpu, 'on_rq': self.on_rq}


@dataclasses.dataclass
class Process:
    """A thread group as ``ps`` shows it."""

    pid: int
    ppid: int
    uid: int
    comm: str
    exe: str | None
    cgroup: str | None
    kernel_thread: bool
    address: int            # the leader's struct task_struct *
    mm: int                 # struct mm_struct * (0 for kernel threads)
    threads: list[Thread]
    rss_pages: int | None

    def as_dict(self) -> dict:
        return {'pid': self.pid, 'ppid': self.ppid, 'uid': self.uid,
                'comm': self.comm, 'exe': self.exe, 'cgroup': self.cgroup,
                'threads': len(self.threads),
                'rss_pages': self.rss_pages,
                'kernel_thread': self.kernel_thread,
                'task': '0x%x' % self.address}


def _state(task: drgn.Object) -> int:
    try:
        return task.member_('__state').value_()
    except LookupError:
        return task.state.value_()


def _thread(task: drgn.Object) -> Thread:
    return Thread(tid=task.pid.value_(),
                  comm=task.comm.string_().decode('utf-8', 'replace'),
                  address=task.value_(), state=_state(task),
                  on_cpu=bool(task.on_cpu.value_()),
                  on_rq=bool(task.on_rq.value_()),
                  flags=task.flags.value_())


def _exe(kernel, mm: drgn.Object) -> str | None:
    try:
        with kernel.budget(PATH_BUDGET, 'resolving an executable path'):
            exe_file = mm.exe_file.read_()
            if not exe_file:
                return None
            return fs_helpers.d_path(exe_file.f_path.address_of_()).decode(
                'utf-8', 'replace')
    except (drgn.FaultError, LookupError, ValueError):
        return None


def _cgroup(kernel, task: drgn.Object) -> str | None:
    try:
        with kernel.budget(PATH_BUDGET, 'resolving a cgroup path'):
            cgrp = task.cgroups.dfl_cgrp.read_()
            return cgroup_helpers.cgroup_path(cgrp).decode('utf-8',
                                                           'replace')
    except (drgn.FaultError, LookupError, ValueError):
        return None


def _rss(kernel, task: drgn.Object) -> int | None:
    try:
        with kernel.budget(100000, 'counting resident pages'):
            rss = mm_helpers.task_rss(kernel.prog, task)
            return rss.file + rss.anon + rss.shmem
    except (drgn.FaultError, LookupError, ValueError, AttributeError):
        return None


def processes(kernel, max_tasks: int = MAX_TASKS,
              details: bool = True) -> list[Process]:
    """Every process of the guest (kernel threads included), in task
    list order.

    :param details: also resolve exe paths, cgroups and RSS (slower).
    :raises walk.CorruptStructure: the task or thread lists are corrupt.
    """
    prog = kernel.prog
    init_task = prog['init_task']
    head = init_task.tasks.address_of_().value_()
    out = []
    total = 0
    pf_kthread = kernel.consts.PF_KTHREAD
    for leader in walk.list_entries(prog, head, 'struct task_struct',
                                    'tasks', max_tasks, 'the task list'):
        try:
            pid = leader.tgid.value_()
            threads = []
            thead = leader.signal.thread_head.address_of_().value_()
            for t in walk.list_entries(
                    prog, thead, 'struct task_struct', 'thread_node',
                    max_tasks, 'the threads of pid %d' % pid):
                threads.append(_thread(t))
            total += len(threads)
            if total > max_tasks:
                raise walk.CorruptStructure('more than %d tasks'
                                            % max_tasks)
            mm = leader.mm.read_()
            kthread = bool(leader.flags.value_() & pf_kthread) or not mm
            proc = Process(
                pid=pid, ppid=leader.real_parent.tgid.value_(),
                uid=leader.real_cred.uid.val.value_(),
                comm=leader.comm.string_().decode('utf-8', 'replace'),
                exe=None, cgroup=None, kernel_thread=kthread,
                address=leader.value_(), mm=mm.value_(),
                threads=threads, rss_pages=None)
            if details:
                if not kthread:
                    proc.exe = _exe(kernel, mm)
                    proc.rss_pages = _rss(kernel, leader)
                proc.cgroup = _cgroup(kernel, leader)
        except drgn.FaultError as e:
            raise walk.CorruptStructure(
                'task 0x%x on the task list is unreadable (%s)'
                % (leader.value_(), e))
        out.append(proc)
    return out
