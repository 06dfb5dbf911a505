"""Scrub a managed save while libvirt writes it, in the privileged daemon.

The driver asks the daemon to follow the managed save of an instance
before it calls libvirt's ``managedSave``
(:func:`sparc_nova.privsep.checkpoint.follow_managed_save`); the daemon
starts a :class:`Follower`, which runs the overlapped scrub of
:func:`sparc_nova.engine.live.save_and_scrub` on the file from the moment
libvirt creates it. When ``managedSave`` has returned (or failed) the
driver says so (:func:`sparc_nova.privsep.checkpoint.finish_managed_save`)
and gets the scrub's result: the image counts as complete once libvirt
marks it so (magic ``LibvirtQemudSave``) or once the driver has said the
call returned.

The file does not exist when following starts, so it cannot be checked
by name beforehand. The daemon opens the managed-save directory first
and, once the file appears, opens it relative to that directory with
``O_NOFOLLOW`` and checks what it opened (a regular file, one link,
owned by the daemon's user and writable by no one else). The scrub reads
only that open file and an in-place patch writes only to it; after the
scrub the name must still lead to it, else the scrub fails.

Every wait is bounded (``timeout`` seconds from the start): the wait for
libvirt to create the file, for its bytes, and for the driver's word
that the save returned. A follower no one finishes ends at its deadline.
"""

import os
import stat
import threading
import time

from oslo_log import log as logging

from sparc_nova.engine import errors
from sparc_nova import exception

__all__ = ['Follower', 'SaveFailed', 'check_opened', 'followers']

LOG = logging.getLogger(__name__)

#: Seconds :meth:`Follower.finish` waits beyond the deadline for the scrub
#: thread to end once told the save returned.
FINISH_GRACE_SECONDS = 60.0


class SaveFailed(exception.SparcError):
    """The driver reported that ``managedSave`` failed."""


def check_opened(fd: int, path: str) -> os.stat_result:
    """The ``fstat`` of the managed save open as ``fd`` when it may be
    scrubbed: a regular file with one link, owned by the daemon's user
    and writable by no one else; else :class:`ScrubError` naming ``path``.
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise errors.ScrubError(path, 'refused: not a regular file')
    if st.st_nlink != 1:
        raise errors.ScrubError(path, 'refused: %d hard links'
                                % st.st_nlink)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise errors.ScrubError(
            path, 'refused: owner %d, mode %o (expected owner %d, writable '
                  'by the owner only)' % (st.st_uid, stat.S_IMODE(st.st_mode),
                                          os.geteuid()))
    return st


class Follower:
    """The overlapped scrub of one managed save.

    :param path: ``<managed_save_dir>/<instance name>.save`` (the
        directory already checked by the caller).
    :param dir_fd: the managed-save directory, open (the follower owns
        and closes it).
    :param scrub: ``scrub(save, path, open_image) -> report dict``: runs
        :func:`~sparc_nova.engine.live.save_and_scrub` with ``save`` as
        the save call and ``open_image`` as its opener.
    :param timeout: seconds every wait is bounded by, from now.
    """

    def __init__(self, path: str, dir_fd: int, scrub, timeout: float):
        self.path = path
        self.name = os.path.basename(path)
        self._dir_fd = dir_fd
        self._scrub = scrub
        self.deadline = time.monotonic() + timeout
        self._returned = threading.Event()
        self._saved = False
        self._opened: tuple[int, int] | None = None
        self._result: dict | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name='sparc-follow-%s' % self.name,
            daemon=True)

    def start(self) -> 'Follower':
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- in the scrub thread ---------------------------------------------

    def _open_image(self):
        """The managed save open for reading and checked, or None while
        libvirt has not created it.
        """
        try:
            fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW |
                         os.O_CLOEXEC | os.O_NOCTTY, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise errors.ScrubError(self.path, 'refused: cannot open '
                                    'without following links: %s'
                                    % e.strerror)
        try:
            st = check_opened(fd, self.path)
            f = os.fdopen(fd, 'rb')
        except BaseException:
            os.close(fd)
            raise
        self._opened = (st.st_dev, st.st_ino)
        return f

    def _wait_returned(self) -> None:
        """The save call, as the scrub sees it: returns when the driver
        says ``managedSave`` returned; raises when it failed or the
        driver did not say in time.
        """
        if not self._returned.wait(max(0.0, self.deadline -
                                       time.monotonic())):
            raise errors.ScrubError(self.path, 'the driver did not report '
                                    'the end of the save in time')
        if not self._saved:
            raise SaveFailed('%s: the save failed' % self.path)

    def _still_named(self) -> bool:
        """Whether the file name still leads to the file scrubbed."""
        try:
            st = os.stat(self.name, dir_fd=self._dir_fd,
                         follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._opened and \
            stat.S_ISREG(st.st_mode) and st.st_nlink == 1

    def _replacement_checked(self) -> bool:
        """Whether the file now at the name passes the checks of a file
        to scrub (the scrub replaced the image by its rewrite).
        """
        try:
            fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW |
                         os.O_CLOEXEC | os.O_NOCTTY, dir_fd=self._dir_fd)
        except OSError:
            return False
        try:
            check_opened(fd, self.path)
        except exception.SparcError:
            return False
        finally:
            os.close(fd)
        return True

    def _run(self) -> None:
        try:
            result = self._scrub(self._wait_returned, self.path,
                                 self._open_image)
            rewrite = (result.get('report') or {}).get('rewrite') or {}
            # Patched in place: the name must still lead to the file that
            # was opened and checked. Rewritten (a compressed image, or a
            # directory where no journal may be kept): the scrub renamed
            # its checked rewrite over the name, which must now lead to a
            # file that passes the same checks.
            kept = self._still_named() if rewrite.get('in_place', True) \
                else self._replacement_checked()
            if not kept:
                raise errors.ScrubError(self.path, 'replaced while it was '
                                        'scrubbed')
            self._result = result
        except BaseException as e:
            self._error = e

    # -- in the caller's thread --------------------------------------------

    def finish(self, saved: bool) -> dict:
        """Tell the follower that ``managedSave`` returned (``saved``) or
        failed, wait for the scrub (bounded) and return its result.

        After a failed save nothing of it is kept: the file the follower
        opened is deleted if libvirt left it.

        :raises SparcError: the scrub failed, refused the file or did not
            end in time (the unscrubbed managed save is the caller's to
            discard); after a failed save, :class:`SaveFailed`.
        """
        self._saved = bool(saved)
        self._returned.set()
        self._thread.join(max(0.0, self.deadline - time.monotonic()) +
                          FINISH_GRACE_SECONDS)
        try:
            if self._thread.is_alive():
                raise errors.ScrubError(self.path, 'the scrub did not end '
                                        'in time')
            if not saved:
                self._discard_partial()
                raise SaveFailed('%s: the save failed; nothing was kept'
                                 % self.path)
            if self._error is not None:
                raise self._error
            return self._result
        finally:
            if not self._thread.is_alive():
                os.close(self._dir_fd)

    def _discard_partial(self) -> None:
        """Delete what a failed save left at the name: the file the scrub
        opened, or one libvirt created after the scrub's last look (the
        same checks as for a scrub).
        """
        if self._opened is None:
            try:
                f = self._open_image()
            except exception.SparcError as e:
                LOG.warning('Left in place after the failed save: %s', e)
                return
            if f is None:
                return
            f.close()
        if self._still_named():
            os.unlink(self.name, dir_fd=self._dir_fd)


class _Registry:
    """The followers of the daemon, one per instance name."""

    def __init__(self):
        self._lock = threading.Lock()
        self._followers: dict[str, Follower] = {}

    def add(self, name: str, follower: Follower) -> None:
        with self._lock:
            old = self._followers.get(name)
            if old is not None and old.alive():
                raise errors.ScrubError(follower.path, 'refused: a scrub of '
                                        'this managed save already runs')
            self._followers[name] = follower.start()

    def pop(self, name: str) -> Follower | None:
        with self._lock:
            return self._followers.pop(name, None)


#: The daemon's followers.
followers = _Registry()
