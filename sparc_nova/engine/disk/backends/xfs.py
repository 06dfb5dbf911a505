"""XFS.

Matched files are overwritten in place and unlinked: XFS writes in place
unless an extent is shared by reflink, and a shared extent stays with the
kept file that shares it. XFS marks a removed directory entry unused but
keeps its name bytes in the directory block, so every directory that
lost entries is rebuilt (its entries move to fresh blocks; the old blocks
become free). While mounted, fstrim discards every free
extent (the working copy punches holes for them, so they read as zeros).
After unmounting, ``xfs_repair -L`` zeroes the log, which keeps copies of
recently logged metadata (directory blocks, inodes).
"""

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk.backends import base

__all__ = ['XfsBackend']


class XfsBackend(base.Backend):
    """XFS: overwrite in place, directories rebuilt, free extents
    trimmed, log zeroed (see the module docstring).
    """

    fstypes = ('xfs',)
    overwrites_in_place = True
    rebuilds_directories = True

    def clean(self, g, device: str) -> list[str]:
        g.xfs_repair(device, forcelogzero=True)
        return ['free extents discarded (fstrim)', 'log zeroed']

    def check(self, g, device: str) -> None:
        appliance.run(g, ['xfs_repair', '-n', device])
