"""Process selectors in the memory engine: parsing (the grammar is the
shared vocabulary's, :mod:`sparc_nova.vocabulary.selectors`) and
choosing the processes of a guest.

A selected process always includes all its threads; ``with_children``
adds every descendant. Kernel threads are never selected, and neither is
pid 1 (killing init panics the guest).
"""

from sparc_nova.engine import errors
from sparc_nova.vocabulary import errors as vocabulary_errors
from sparc_nova.vocabulary import selectors as vocabulary

__all__ = ['KINDS', 'Selector', 'parse', 'parse_all', 'select']

KINDS = vocabulary.KINDS
Selector = vocabulary.Selector


def parse(text: str) -> Selector:
    """Parse one selector.

    :raises SelectorError: the selector is not valid (the message is the
        vocabulary's)
    """
    try:
        return vocabulary.parse(text)
    except vocabulary_errors.InvalidRule as e:
        raise errors.SelectorError(str(e)) from None


def parse_all(texts) -> list[Selector]:
    """Parse selectors given as strings or :class:`Selector` (kept as
    they are), in order.

    :raises SelectorError: one of them is not valid
    """
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
