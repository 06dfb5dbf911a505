"""What a filesystem backend does for a scrub.

A backend knows one family of filesystems. The scrub calls it in this
order, on one appliance handle:

1. :meth:`overwrite` with the matched files while the filesystem is
   mounted read-write (the scrub then syncs and unlinks them);
2. :meth:`trim` once per filesystem while it is still mounted;
3. :meth:`clean` once per filesystem after everything is unmounted:
   make freed blocks, stale journal/log copies and deleted names
   unreadable;
4. :meth:`check` after the scrub, unmounted: a read-only consistency
   check that raises on any error.
"""

from sparc_nova.engine.disk import batch

__all__ = ['Backend', 'is_directory']


class Backend:
    """Base backend: no overwrite, trim, no cleaning, no check."""

    #: vfs types (as libguestfs' ``vfs_type`` reports them) handled.
    fstypes: tuple[str, ...] = ()
    #: True when overwriting a file's bytes reaches the same disk blocks
    #: (not true for copy-on-write filesystems).
    overwrites_in_place = False
    #: True when unlinking leaves the removed names' bytes in the
    #: directory's blocks, so that directories that lost entries must be
    #: rebuilt (see :func:`~sparc_nova.engine.disk.batch.rebuild_directory`).
    rebuilds_directories = False
    #: The raw working copy on the host (set by the scrub's session), so
    #: that :meth:`clean` can skip what its allocation map shows is a
    #: hole (see :mod:`~sparc_nova.engine.disk.free_blocks`); None: not
    #: known, clean everything.
    working_copy: str | None = None

    def __init__(self, workdir: str):
        #: Host directory for temporary files of this scrub.
        self.workdir = workdir

    def overwrite(self, g, files: list[tuple[str, dict]]) -> None:
        """Overwrite matched files' bytes before they are unlinked, when
        the filesystem writes in place. ``files`` are (path, lstatns)
        pairs; files with other hard links are left alone (the kept link
        still needs the bytes).
        """
        if not self.overwrites_in_place:
            return
        batch.overwrite_with_zeros(g, [
            path for path, stat in files
            if _is_regular(stat) and stat['st_nlink'] == 1])

    def trim(self, g, mountpoint: str) -> None:
        """Discard free blocks (the working copy punches holes)."""
        g.fstrim(mountpoint)

    def clean(self, g, device: str) -> list[str]:
        """Clean the unmounted filesystem on ``device``; return notes
        for the report (steps taken).
        """
        return []

    def check(self, g, device: str) -> None:
        """Raise RuntimeError when the unmounted filesystem is
        inconsistent.
        """


def _is_regular(stat: dict) -> bool:
    return (stat['st_mode'] & 0o170000) == 0o100000


def is_directory(stat: dict) -> bool:
    """Whether ``stat`` (a libguestfs ``statns``/``lstatns`` dict)
    describes a directory.
    """
    return (stat['st_mode'] & 0o170000) == 0o040000
