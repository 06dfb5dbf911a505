"""Durable records of managed saves whose scrub has not completed.

Before libvirt writes the managed save of an instance with a policy, the
privileged daemon creates ``<managed_save_dir>/<instance name>.save`` +
:data:`SUFFIX` (root's, mode 0600, in the directory only root may write,
synced to disk); it is removed once the scrub succeeded or the save was
rolled back. A marker that survives a crash of nova-compute or of the
daemon therefore names a managed save that may hold unscrubbed memory:
the driver deletes those when it starts (``init_host``).

These functions run in the daemon (see
:mod:`sparc_nova.privsep.checkpoint`); they take and return primitives.
"""

import os

from sparc_nova.checkpoint import tempfiles
from sparc_nova import conf
from sparc_nova import exception

__all__ = ['SUFFIX', 'marker_path', 'write', 'remove', 'pending']

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
