"""Temporary files of sparc-nova's writers: their names, the directories
they may be made in, and the removal of those a killed writer left.

Every temporary carries its writer's pid, so that the leftovers of a
killed writer can be told from files still being written:

* ``.<target>.sparc-<pid>-XXXX``: a rewrite of ``<target>`` (a checkpoint
  or a disk image) before it is renamed over it;
* ``.sparc-stream-<pid>-XXXX``: a decompressed memory stream (the whole
  guest RAM, unscrubbed);
* ``.sparc-scrub-<pid>-XXXX``: a disk scrub's working directory (a raw,
  unscrubbed copy of the image).

:func:`replacement` is how a writer replaces a file atomically (a
temporary next to it, named as above, synced and renamed over it, the
rename made durable; the temporary removed on any failure): checkpoint
rewrites and disk scrubs use it. :func:`create_exclusive` makes a new
file that no link or existing file can stand in for (the journal);
:func:`fsync_directory` and :func:`fsync_parent` make a rename durable,
for every writer (checkpoint rewrites and journals, disk scrubs, the Nova
driver's managed-save markers).

Kept apart from :mod:`.rewrite` so that callers that only clean up (the
disk scrubber, ``sparc checkpoint recover``, the Nova driver at start)
need none of its dependencies.
"""

import contextlib
import os
import shutil
import stat
import tempfile
import typing

from sparc_nova import exception

__all__ = ['STREAM_PREFIX', 'SCRUB_WORK_PREFIX', 'temp_prefix',
           'stream_prefix', 'left_by_dead_writer', 'remove_leftover',
           'remove_stale_temporaries', 'check_private_directory',
           'fsync_directory', 'fsync_parent', 'create_exclusive',
           'replacement']

#: Name prefix of decompressed memory streams.
STREAM_PREFIX = '.sparc-stream-'
#: Name prefix of disk scrubs' working directories.
SCRUB_WORK_PREFIX = '.sparc-scrub-'


def temp_prefix(target: str) -> str:
    """Prefix of the temporary files a rewrite of ``target`` makes (with
    the writer's pid, so that leftovers of dead writers can be told from
    files still being written).
    """
    return '.%s.sparc-%d-' % (os.path.basename(target), os.getpid())


def stream_prefix() -> str:
    """Prefix of this process's decompressed memory streams."""
    return '%s%d-' % (STREAM_PREFIX, os.getpid())


def left_by_dead_writer(name: str, head: str) -> bool:
    """Whether ``name`` is ``HEAD`` + ``PID-...`` and process PID is
    gone.
    """
    if not name.startswith(head):
        return False
    pid = name[len(head):].split('-', 1)[0]
    return pid.isdigit() and not os.path.exists('/proc/%s' % pid)


def remove_leftover(path: str) -> None:
    """Remove a leftover temporary: a file (or a symbolic link, never
    followed) or a working directory with everything in it.
    """
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


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
        remove_leftover(os.path.join(d, name))
        removed.append(os.path.join(d, name))
    return removed


def check_private_directory(directory: str, subject: str) -> None:
    """Refuse ``directory`` unless it is a directory owned by root or by
    the running user that neither its group nor others may write (the
    sticky bit does not help: another user could still plant a name
    before we create it). Journals, their temporaries and the journal
    key are only ever made in such a directory.

    :param subject: the file the directory is needed for (named in the
        error).
    :raises CheckpointError: the directory is missing or not private.
    """
    try:
        st = os.stat(directory)
    except OSError as e:
        raise exception.CheckpointError(
            subject, 'cannot use directory %s: %s'
            % (directory, e.strerror or e))
    if not stat.S_ISDIR(st.st_mode):
        raise exception.CheckpointError(subject, '%s is not a directory'
                                        % directory)
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise exception.CheckpointError(
            subject, 'refused: directory %s has owner %d and mode %o; it '
                     'must be owned by root or uid %d and writable by no '
                     'one else' % (directory, st.st_uid,
                                   stat.S_IMODE(st.st_mode), os.geteuid()))


def fsync_directory(path: str) -> None:
    """fsync the directory ``path`` (makes a rename in it durable).

    :raises OSError: ``path`` is not a directory that can be opened
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_parent(path: str) -> None:
    """fsync the directory holding ``path`` (makes a rename or removal of
    ``path`` durable).

    :raises OSError: the directory cannot be opened
    """
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def create_exclusive(path: str, mode: int = 0o600) -> int:
    """Create the new file ``path`` with ``mode`` (whatever the umask)
    and return a descriptor open for writing: ``O_EXCL | O_NOFOLLOW``, so
    that neither an existing file nor a symbolic link planted at ``path``
    is ever written through.

    :raises FileExistsError: ``path`` exists (a file or a link)
    :raises OSError: it cannot be created
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                 os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def replacement(target: str,
                before_commit: typing.Callable[[], None] | None = None
                ) -> typing.Iterator[tuple[typing.BinaryIO, str]]:
    """Replace ``target`` atomically with what the ``with`` block writes.

    Yields ``(file, path)``: a new, empty temporary file next to
    ``target`` (same directory, so the rename stays in one filesystem;
    named :func:`temp_prefix` ``(target)`` plus a random part, created
    ``O_EXCL | O_NOFOLLOW``, mode 0600), open for binary writing, and its
    path (for a program that writes it by name). When the block ends
    normally the file is flushed, fsync'd and closed, renamed over
    ``target`` and the directory fsync'd: a crash leaves the old or the
    new ``target``, never a mix. When the block raises, the temporary is
    removed and ``target`` is untouched. Owner and mode are the block's
    to set (``os.fchmod(file.fileno(), ...)``).

    ``before_commit``, when given, is called after the temporary is
    synced and before the rename: what must be durable before ``target``
    changes (a seal's sealed-pages file) is waited for there. If it
    raises, the temporary is removed and ``target`` is untouched.

    :raises OSError: the temporary cannot be made, synced or renamed
    """
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target),
                               dir=os.path.dirname(os.path.abspath(target)))
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
        if before_commit is not None:
            before_commit()
        os.replace(tmp, target)
        fsync_parent(target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
