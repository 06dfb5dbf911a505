"""What a filesystem backend does for a scrub.

A backend knows one family of filesystems. The scrub calls it in this
order, on one appliance handle:

1. :meth:`remove` for each matched path while the filesystem is mounted
   read-write (at ``mounted_path``, a path in the appliance's view);
2. :meth:`trim` once per filesystem while it is still mounted;
3. :meth:`clean` once per filesystem after everything is unmounted:
   make freed blocks, stale journal/log copies and deleted names
   unreadable;
4. :meth:`check` after the scrub, unmounted: a read-only consistency
   check that raises on any error.
"""

CHUNK = 2 * 1024 * 1024


class Backend:
    """Base backend: remove by unlinking, trim, no cleaning, no check."""

    #: vfs types (as libguestfs' ``vfs_type`` reports them) handled.
    fstypes: tuple[str, ...] = ()
    #: True when overwriting a file's bytes reaches the same disk blocks
    #: (not true for copy-on-write filesystems).
    overwrites_in_place = False

    def __init__(self, workdir: str):
        #: Host directory for temporary files of this scrub.
        self.workdir = workdir

    def remove(self, g, mounted_path: str, stat: dict) -> None:
        """Remove one non-directory path. ``stat`` is ``lstatns``."""
        if self.overwrites_in_place and _is_regular(stat) \
                and stat['st_nlink'] == 1:
            overwrite_with_zeros(g, mounted_path, stat['st_size'])
        g.rm(mounted_path)

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
    return (stat['st_mode'] & 0o170000) == 0o040000


def overwrite_with_zeros(g, path: str, size: int) -> None:
    """Overwrite ``size`` bytes of ``path`` in place (no truncation, so
    the filesystem keeps the same blocks), then flush.
    """
    zeros = b'\0' * CHUNK
    offset = 0
    while offset < size:
        n = min(CHUNK, size - offset)
        written = g.pwrite(path, zeros[:n], offset)
        if written <= 0:
            raise RuntimeError('short write at offset %d' % offset)
        offset += written
    g.sync()
