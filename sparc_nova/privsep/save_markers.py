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


def _journal_dirs() -> list:
    """Where journals of managed saves may be: next to them (None) and
    ``[sparc] journal_dir``.
    """
    journal_dir = conf.CONF.sparc.journal_dir
    return [None, journal_dir] if journal_dir else [None]


def journaled() -> list[str]:
    """Names of the instances whose managed save has an in-place scrub
    journal next to it (``.<name>.save.sparc-journal``) or in ``[sparc]
    journal_dir`` (``<name>.save.<digits>.sparc-journal``), sorted.
    """
    found = set()
    for directory in _journal_dirs():
        listed = _save_dir() if directory is None else directory
        try:
            names = os.listdir(listed)
        except FileNotFoundError:
            continue
        for name in names:
            instance_name = _instance_of_journal(name, directory)
            path = os.path.join(listed, name)
            # The journal's own naming (journal.journal_path) decides.
            if instance_name and journal.journal_path(
                    _save_path(instance_name), directory) == \
                    os.path.abspath(path) and os.path.isfile(path):
                found.add(instance_name)
    return sorted(found)


def _instance_of_journal(name: str, directory) -> str:
    """The instance name a journal's file name would belong to ('' if it
    is not a managed save's journal), next to the managed save (None) or
    in a journal directory.
    """
    found = journal.target_name(name, kept=directory is not None)
    if found is None or found[1] or not found[0].endswith('.save'):
        return ''
    return found[0][:-len('.save')]


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
    for directory in _journal_dirs():
        for path in (journal.journal_path(target, directory),
                     journal.temporary_path(target, directory)):
            if os.path.lexists(path):
                tempfiles.remove_leftover(path)
                tempfiles.fsync_parent(path)
                removed.append(path)
    return removed
