"""Temporary files next to a file being replaced, named after their
writer's pid so that the leftovers of a killed writer can be told from
files still being written (and removed).

Kept apart from :mod:`.rewrite` so that callers that only clean up (the
disk scrubber, ``sparc checkpoint recover``) need none of its
dependencies.
"""

import os


def temp_prefix(target: str) -> str:
    """Prefix of the temporary files a rewrite of ``target`` makes (with
    the writer's pid, so that leftovers of dead writers can be told from
    files still being written).
    """
    return '.%s.sparc-%d-' % (os.path.basename(target), os.getpid())


def left_by_dead_writer(name: str, head: str) -> bool:
    """Whether ``name`` is ``HEAD`` + ``PID-...`` and process PID is
    gone.
    """
    if not name.startswith(head):
        return False
    pid = name[len(head):].split('-', 1)[0]
    return pid.isdigit() and not os.path.exists('/proc/%s' % pid)


def remove_stale_temporaries(target: str) -> list[str]:
    """Delete temporary files left next to ``target`` by rewrites whose
    process is gone (killed). Returns the removed paths.
    """
    d = os.path.dirname(os.path.abspath(target))
    head = '.%s.sparc-' % os.path.basename(target)
    removed = []
    for name in os.listdir(d):
        if not left_by_dead_writer(name, head):
            continue
        os.unlink(os.path.join(d, name))
        removed.append(os.path.join(d, name))
    return removed
