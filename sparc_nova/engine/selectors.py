"""Process selectors: which guest processes a scrub excludes.

=================  ==================================================
``NAME``           the task's comm, exactly (as ``ps`` shows it; the
                   kernel truncates comm to 15 bytes)
``exe:GLOB``       path of the executable (fnmatch glob)
``pid:N``          the process with thread group id N
``uid:N``          processes whose real uid is N
``cgroup:PATH``    processes in cgroup v2 PATH or below it
=================  ==================================================

A selected process always includes all its threads; ``with_children``
adds every descendant. Kernel threads are never selected, and pid 1 is
refused (killing init panics the guest).
"""

import dataclasses
import fnmatch

from sparc_nova.engine import errors

KINDS = ('name', 'exe', 'pid', 'uid', 'cgroup')


@dataclasses.dataclass(frozen=True)
class Selector:
    kind: str
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == 'name' else '%s:%s' % (
            self.kind, self.value)

    def matches(self, proc) -> bool:
        """Whether process ``proc`` (:class:`~sparc_nova.introspect.tasks.
        Process`) matches.
        """
        if self.kind == 'name':
            return proc.comm == self.value
        if self.kind == 'exe':
            return proc.exe is not None and fnmatch.fnmatchcase(
                proc.exe, self.value)
        if self.kind == 'pid':
            return proc.pid == int(self.value)
        if self.kind == 'uid':
            return proc.uid == int(self.value)
        if self.kind == 'cgroup':
            path = self.value.rstrip('/') or '/'
            cg = proc.cgroup
            if cg is None:
                return False
            return cg == path or path == '/' or cg.startswith(path + '/')
        return False


def parse(text: str) -> Selector:
    """Parse one selector (see the module docstring)."""
    if not text or len(text) > 4096:
        raise errors.SelectorError('empty or overlong process selector')
    kind, sep, value = text.partition(':')
    if sep and kind in KINDS[1:]:
        if not value:
            raise errors.SelectorError('selector %r has no value' % text)
        if kind in ('pid', 'uid'):
            if not value.isdigit():
                raise errors.SelectorError('selector %r: %s must be a '
                                           'number' % (text, kind))
            if kind == 'pid' and int(value) == 1:
                raise errors.SelectorError(
                    'refusing pid:1: killing init panics the guest')
        if kind == 'cgroup' and not value.startswith('/'):
            raise errors.SelectorError('selector %r: a cgroup path starts '
                                       'with /' % text)
        return Selector(kind, value)
    if sep and kind == 'name':
        return Selector('name', value)
    return Selector('name', text)


def parse_all(texts) -> list[Selector]:
    return [t if isinstance(t, Selector) else parse(t) for t in texts]


def select(processes, sels: list[Selector], with_children: bool = False
           ) -> tuple[dict[int, list[str]], list[str]]:
    """Apply selectors.

    :returns: ``({pid: [reasons]}, notes)``; notes say which selectors
        matched nothing and which matches were refused.
    """
    chosen: dict[int, list[str]] = {}
    notes = []
    for sel in sels:
        hit = False
        for p in processes:
            if not sel.matches(p):
                continue
            if p.kernel_thread:
                notes.append('%s matches kernel thread %d (%s): kernel '
                             'threads are never selected'
                             % (sel, p.pid, p.comm))
                continue
            if p.pid == 1:
                notes.append('%s matches pid 1 (%s): init is never '
                             'selected' % (sel, p.comm))
                continue
            chosen.setdefault(p.pid, []).append('matches %s' % sel)
            hit = True
        if not hit:
            notes.append('%s matches no process' % sel)
    if with_children:
        children: dict[int, list[int]] = {}
        for p in processes:
            children.setdefault(p.ppid, []).append(p.pid)
        by_pid = {p.pid: p for p in processes}
        todo = list(chosen)
        seen = set(todo)
        while todo:
            parent = todo.pop()
            for child in children.get(parent, []):
                if child in seen or child == parent:
                    continue
                seen.add(child)
                proc = by_pid.get(child)
                if proc is None or proc.kernel_thread or child == 1:
                    continue
                chosen.setdefault(child, []).append(
                    'descendant of selected pid %d' % parent)
                todo.append(child)
    return chosen, notes
