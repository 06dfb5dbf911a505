"""Kill selected processes when the checkpoint is restored.

Every thread of a selected process gets SIGKILL in its private pending
set and TIF_SIGPENDING in its thread flags, exactly what the kernel's
``complete_signal()`` leaves behind for a group kill. A thread that is
running or runnable acts on it at its next return to user mode, before
it executes a user instruction.

A process whose threads all sleep would only act on it when something
wakes one of them; an untimed wait (``read()`` on an idle pipe, a futex,
``epoll_wait``) may never end. So one sleeping thread per such process
also gets a wake-up, built from the kernel's own machinery: a ``struct
process_timer`` (what ``schedule_timeout()`` puts on a sleeping task's
stack) is placed in the unused bottom of that thread's kernel stack and
linked, already expired, into a CPU's timer wheel. At that CPU's next
timer interrupt after restore, ``process_timeout()`` wakes the thread;
it returns from its wait with a fatal signal pending, and its exit
(``do_group_exit``) kills the remaining threads as any SIGKILL does.

The wake-up is only armed for sleeps SIGKILL itself would interrupt
(TASK_INTERRUPTIBLE, or TASK_WAKEKILL); a thread in an uninterruptible
wait dies when that wait ends, as it would on a live system. The host
thread's task_struct and stack reference counts are raised by one, so
neither can be freed while the timer is queued, whatever wakes the
thread first (a leak of one task_struct and one stack per killed process,
about 26 KiB).
"""

import dataclasses

import drgn

from sparc_nova.engine import patches
from sparc_nova.introspect import walk

__all__ = ['STACK_MARGIN', 'STACK_OFFSET', 'ProcessKill', 'ThreadKill',
           'TimerWheel', 'inject']

#: Bytes of unused stack that must remain between the timer and the
#: thread's saved stack pointer.
STACK_MARGIN = 2048
#: Offset of the timer from the bottom of the stack (past the stack-end
#: magic and the words the kernel keeps there when it frees a stack).
STACK_OFFSET = 128


@dataclasses.dataclass
class ThreadKill:
    """The kill planted in one thread.

    :ivar tid: the thread's id in the guest.
    :ivar task: guest virtual address of its ``task_struct``.
    :ivar state: its ``__state`` when the checkpoint was taken.
    :ivar signal_field: guest physical address of the word of
        ``pending.signal`` where the SIGKILL bit is set.
    :ivar flags_field: guest physical address of the word of
        ``thread_info.flags`` where TIF_SIGPENDING is set.
    """

    tid: int
    task: int
    state: int
    signal_field: int       # guest physical address written
    flags_field: int

    def as_dict(self) -> dict:
        return {'tid': self.tid, 'task': '0x%x' % self.task,
                'state': self.state,
                'sigkill_pending_at': '0x%x' % self.signal_field,
                'tif_sigpending_at': '0x%x' % self.flags_field}


@dataclasses.dataclass
class ProcessKill:
    """The kill planted in one process: one :class:`ThreadKill` per
    thread, and how it is woken to die on restore.

    :ivar pid: the process's id in the guest.
    :ivar wakeup: ``'runnable'`` (a thread runs anyway), ``'timer'``
        (a sleeping thread's timer is made to expire) or ``'none'``.
    :ivar wakeup_detail: why that wake-up, for the report.
    :ivar timer: the timer armed for ``'timer'`` (fields as reported),
        else None.
    """

    pid: int
    threads: list[ThreadKill]
    wakeup: str                 # 'timer', 'runnable', 'none'
    wakeup_detail: str
    timer: dict | None = None

    def as_dict(self) -> dict:
        out = {'pid': self.pid, 'wakeup': self.wakeup,
               'wakeup_detail': self.wakeup_detail,
               'threads': [t.as_dict() for t in self.threads]}
        if self.timer:
            out['timer'] = self.timer
        return out


def _u64(prog, addr):
    return prog.read_u64(addr)


def _set_bits(kernel, patcher, vaddr: int, bits: int, what: str,
              kind: str = patches.SIGNAL) -> int:
    old = int.from_bytes(patcher.read_virt(kernel, vaddr, 8), 'little')
    patcher.write_virt(kernel, vaddr, (old | bits).to_bytes(8, 'little'),
                       what, kind=kind)
    return kernel.phys(vaddr)


def _add32(kernel, patcher, vaddr: int, delta: int, what: str) -> None:
    old = int.from_bytes(patcher.read_virt(kernel, vaddr, 4), 'little',
                         signed=True)
    if old <= 0:
        raise walk.CorruptStructure('%s is %d, expected a live count'
                                    % (what, old))
    new = (old + delta).to_bytes(4, 'little', signed=True)
    patcher.write_virt(kernel, vaddr, new, what, kind=patches.TIMER)


class TimerWheel:
    """The expired bucket of one CPU's timer wheel that wake-ups go into.

    Chooses a CPU whose ``timer_bases[0]`` lock was free when the guest
    stopped, preferring one that was not idle (its tick runs), then the
    one whose next timer was due first (it wakes first).
    """

    def __init__(self, kernel, patcher, cpus):
        self.kernel = kernel
        self.patcher = patcher
        prog = kernel.prog
        self.fn = kernel.symbol_address('process_timeout')
        if self.fn is None:
            raise walk.CorruptStructure('no process_timeout symbol')
        jiffies = prog['jiffies'].value_()
        best = None
        self.notes = []
        for cpu in cpus:
            base = kernel.per_cpu('timer_bases', cpu)[0]
            lock = base.lock.raw_lock.val.counter.value_()
            if lock:
                self.notes.append('cpu %d timer base locked' % cpu)
                continue
            idle = bool(base.is_idle.value_())
            nxt = base.next_expiry.value_()
            due = (nxt - jiffies) & ((1 << 64) - 1)
            if due >= 1 << 63:
                due = 0
            key = (idle, due)
            if best is None or key < best[0]:
                best = (key, cpu, base)
        if best is None:
            raise walk.CorruptStructure('every CPU\'s timer base was '
                                        'locked when the guest stopped')
        (idle, due), self.cpu, base = best
        self.base = base
        self.clk = base.clk.value_()
        self.idx = self.clk & ((1 << kernel.consts.TIMER_LVL_BITS) - 1)
        self.head = base.vectors[self.idx].address_of_().value_()
        self.pending_word = base.pending_map[self.idx // 64].address_
        self.expected_delay_jiffies = 0 if not idle else due
        self.added = 0

    def add(self, timer_addr: int, ptimer) -> None:
        """Link the ``struct timer_list`` at ``timer_addr`` (already
        written except its list links and flags) at the head of the
        bucket.
        """
        k = self.kernel
        c = k.consts
        p = self.patcher
        first = int.from_bytes(p.read_virt(k, self.head, 8), 'little')
        entry = timer_addr + ptimer['entry']
        timer = patches.TIMER
        p.write_virt(k, entry, first.to_bytes(8, 'little'),
                     'timer entry.next', kind=timer)
        p.write_virt(k, entry + 8, self.head.to_bytes(8, 'little'),
                     'timer entry.pprev', kind=timer)
        if first:
            p.write_virt(k, first + 8, entry.to_bytes(8, 'little'),
                         'pprev of the timer after ours', kind=timer)
        p.write_virt(k, self.head, entry.to_bytes(8, 'little'),
                     'timer bucket head (cpu %d idx %d)'
                     % (self.cpu, self.idx), kind=timer)
        flags = self.cpu | c.TIMER_PINNED | (self.idx << c.TIMER_ARRAYSHIFT)
        p.write_virt(k, timer_addr + ptimer['flags'],
                     flags.to_bytes(4, 'little'), 'timer flags', kind=timer)
        _set_bits(k, p, self.pending_word, 1 << (self.idx % 64),
                  'timer pending_map bit', kind=timer)
        base = self.base
        nxt = base.next_expiry.value_()
        if ((self.clk - nxt) & ((1 << 64) - 1)) >= 1 << 63:
            p.write_virt(k, base.next_expiry.address_,
                         self.clk.to_bytes(8, 'little'),
                         'timer base next_expiry', kind=timer)
        p.write_virt(k, base.timers_pending.address_, b'\x01',
                     'timer base timers_pending', kind=timer)
        p.write_virt(k, base.next_expiry_recalc.address_, b'\x00',
                     'timer base next_expiry_recalc', kind=timer)
        self.added += 1


def _layout(prog):
    pt = prog.type('struct process_timer')
    tl = prog.type('struct timer_list')
    off = drgn.offsetof
    return {'size': pt.size, 'timer': off(pt, 'timer'),
            'task': off(pt, 'task'),
            'entry': off(tl, 'entry'), 'expires': off(tl, 'expires'),
            'function': off(tl, 'function'), 'flags': off(tl, 'flags'),
            'timer_size': tl.size}


def _task(prog, addr):
    return drgn.Object(prog, 'struct task_struct *', value=addr)


def inject(kernel, patcher, process, wheel_factory) -> ProcessKill:
    """Queue SIGKILL for every thread of ``process`` and, when all its
    threads sleep, a wake-up (see the module docstring).

    :param wheel_factory: callable returning the shared
        :class:`TimerWheel` (built on first use).
    """
    prog = kernel.prog
    c = kernel.consts
    sigbit = 1 << (c.SIGKILL - 1)
    tifbit = 1 << c.TIF_SIGPENDING
    kills = []
    for th in process.threads:
        t = _task(prog, th.address)
        sig = t.pending.signal.sig[0].address_
        flags = t.thread_info.flags.address_
        kills.append(ThreadKill(
            tid=th.tid, task=th.address, state=th.state,
            signal_field=_set_bits(kernel, patcher, sig, sigbit,
                                   'SIGKILL pending (tid %d)' % th.tid),
            flags_field=_set_bits(kernel, patcher, flags, tifbit,
                                  'TIF_SIGPENDING (tid %d)' % th.tid)))
    result = ProcessKill(pid=process.pid, threads=kills, wakeup='none',
                         wakeup_detail='')
    live = [th for th in process.threads if not th.state & c.TASK_DEAD]
    if any(th.on_rq or th.on_cpu or th.state == c.TASK_RUNNING
           for th in live):
        result.wakeup = 'runnable'
        result.wakeup_detail = ('a thread is running or runnable; it acts '
                                'on the kill at its next return to user '
                                'mode')
        return result
    wakeable = [th for th in live
                if th.state & (c.TASK_INTERRUPTIBLE | c.TASK_WAKEKILL)]
    if not wakeable:
        result.wakeup_detail = ('every thread is in an uninterruptible '
                                'wait; the process dies when it ends')
        return result
    reasons = []
    for th in wakeable:
        detail = _arm_timer(kernel, patcher, th, wheel_factory)
        if isinstance(detail, dict):
            result.wakeup = 'timer'
            result.timer = detail
            result.wakeup_detail = (
                'tid %d is woken by an expired timer%s'
                % (th.tid, ' (queued by an earlier scrub)'
                   if detail.get('already_armed')
                   else ' on cpu %d' % detail['cpu']))
            return result
        reasons.append('tid %d: %s' % (th.tid, detail))
    result.wakeup_detail = 'no wake-up armed: ' + '; '.join(reasons)
    return result


def _arm_timer(kernel, patcher, th, wheel_factory):
    prog = kernel.prog
    c = kernel.consts
    t = _task(prog, th.address)
    stack = t.stack.value_()
    sp = t.thread.sp.value_()
    if not stack or not stack < sp <= stack + c.THREAD_SIZE:
        return 'saved stack pointer 0x%x is outside its stack 0x%x' % (
            sp, stack)
    magic = int.from_bytes(patcher.read_virt(kernel, stack, 4), 'little')
    if magic != c.STACK_END_MAGIC:
        return 'no stack-end magic at the bottom of its stack'
    lay = _layout(prog)
    where = stack + STACK_OFFSET
    if where + lay['size'] + STACK_MARGIN > sp:
        return 'its stack is too deep to host a timer'
    wheel = wheel_factory()
    timer = where + lay['timer']
    old = patcher.read_virt(kernel, where, lay['size'])
    fn_at = lay['timer'] + lay['function']
    pprev_at = lay['timer'] + lay['entry'] + 8
    if int.from_bytes(old[fn_at:fn_at + 8], 'little') == wheel.fn and \
            int.from_bytes(old[lay['task']:lay['task'] + 8],
                           'little') == th.address and \
            int.from_bytes(old[pprev_at:pprev_at + 8], 'little'):
        # Scrubbed before: the wake-up is still queued; arming it again
        # would link the same timer twice.
        return {'cpu': None, 'tid': th.tid, 'already_armed': True,
                'process_timer': '0x%x' % where}
    body = bytearray(lay['size'])
    wheel_clk = wheel.clk
    body[lay['timer'] + lay['expires']:lay['timer'] + lay['expires'] + 8] = \
        wheel_clk.to_bytes(8, 'little')
    body[lay['timer'] + lay['function']:
         lay['timer'] + lay['function'] + 8] = wheel.fn.to_bytes(8, 'little')
    body[lay['task']:lay['task'] + 8] = th.address.to_bytes(8, 'little')
    patcher.write_virt(kernel, where, bytes(body),
                       'process_timer on the stack of tid %d' % th.tid,
                       kind=patches.TIMER)
    wheel.add(timer, lay)
    _add32(kernel, patcher, t.usage.address_of_().value_(), 1,
           'task_struct usage of tid %d' % th.tid)
    try:
        ref = t.stack_refcount.address_of_().value_()
    except AttributeError:
        ref = None
    if ref is not None:
        _add32(kernel, patcher, ref, 1,
               'stack_refcount of tid %d' % th.tid)
    return {'cpu': wheel.cpu, 'bucket': wheel.idx, 'tid': th.tid,
            'process_timer': '0x%x' % where,
            'expected_delay_jiffies': wheel.expected_delay_jiffies}
