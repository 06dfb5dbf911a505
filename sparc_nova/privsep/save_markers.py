"""Durable records of managed saves whose scrub has not completed.

Before libvirt writes the managed save of an instance with a policy, the
privileged daemon creates ``<managed_save_dir>/<instance name>.save`` +
:data:`SUFFIX` (root's, mode 0600, in the directory only root may write,
synced to disk); it is removed once the scrub succeeded or the save was
rolled back. A marker that survives a crash of nova-compute or of the
daemon therefore names a managed save that may hold unscrubbed memory:
the driver deletes those when it starts (``init_host``).

A managed save whose in-place scrub journal is still there after the
sweep at start (:mod:`sparc_nova.checkpoint.sweep`) is also unfinished:
the sweep replays the journals of this release and refuses the others
(those an earlier release wrote, in its journal format), and a refused
journal means the scrub stopped half way. :func:`unfinished` names both
kinds.

These functions run in the daemon (see
:mod:`sparc_nova.privsep.checkpoint`); they take and return primitives.
"""

import os

from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import tempfiles
from sparc_nova import conf
from sparc_nova import exception

__all__ = ['SUFFIX', 'marker_path', 'write', 'remove', 'pending',
           'journaled', 'unfinished', 'remove_journals']

#: What follows ``<instance name>.save`` in a marker's name.
SUFFIX = '.sparc-pending'


def _save_dir() -> str:
    return os.path.realpath(conf.CONF.sparc.managed_save_dir)


def marker_path(instance_name: str) -> str:
    """The marker of ``instance_name``'s managed save."""
    return os.path.join(_save_dir(), instance_name + '.save' + SUFFIX)


def write(instance_name: str) -> str:
    """Create (or keep) the marker, synced to disk; return its path.

    :raises SparcError: the directory is missing or not writable
    """
    path = marker_path(instance_name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise exception.SparcError(
            '%s: cannot record the managed save as unscrubbed: %s'
            % (path, e.strerror))
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, b'')
        os.fsync(fd)
    finally:
        os.close(fd)
    tempfiles.fsync_directory(os.path.dirname(path))
    return path


def remove(instance_name: str) -> bool:
    """Remove the marker (synced); whether there was one."""
    path = marker_path(instance_name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    tempfiles.fsync_directory(os.path.dirname(path))
    return True


def pending() -> list[str]:
    """Names of the instances that have a marker, sorted."""
    save_dir = _save_dir()
    try:
        names = os.listdir(save_dir)
    except FileNotFoundError:
        return []
    end = '.save' + SUFFIX
    return sorted(n[:-len(end)] for n in names
                  if n.endswith(end) and len(n) > len(end) and
                  os.path.isfile(os.path.join(save_dir, n)))


def _save_path(instance_name: str) -> str:
    return os.path.join(_save_dir(), instance_name + '.save')


def journaled() -> list[str]:
    """Names of the instances whose managed save has an in-place scrub
    journal next to it (``.<name>.save.sparc-journal``), sorted.
    """
    save_dir = _save_dir()
    try:
        names = os.listdir(save_dir)
    except FileNotFoundError:
        return []
    end = '.save.sparc-journal'
    found = []
    for name in names:
        instance_name = name[1:-len(end)]
        if not (name.startswith('.') and name.endswith(end) and
                instance_name):
            continue
        path = os.path.join(save_dir, name)
        # The journal's own naming (journal.journal_path) decides.
        if journal.journal_path(_save_path(instance_name)) == path and \
                os.path.isfile(path):
            found.append(instance_name)
    return sorted(found)


def unfinished() -> list[str]:
    """Names of the instances whose managed save may hold unscrubbed
    memory: a marker (:func:`pending`) or a journal that was not replayed
    (:func:`journaled`; call it after the sweep), sorted.
    """
    return sorted(set(pending()) | set(journaled()))


def remove_journals(instance_name: str) -> list[str]:
    """Remove the journal (and journal temporary) of ``instance_name``'s
    managed save, synced; the paths removed.
    """
    target = _save_path(instance_name)
    removed = []
    for path in (journal.journal_path(target),
                 journal.temporary_path(target)):
        if os.path.lexists(path):
            tempfiles.remove_leftover(path)
            removed.append(path)
    if removed:
        tempfiles.fsync_directory(_save_dir())
    return removed
