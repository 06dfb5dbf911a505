"""ext2, ext3 and ext4.

Matched files are overwritten in place and unlinked (Linux >= 5.15 also
wipes the directory entry of an unlinked name). After unmounting, the
journal, which keeps copies of recently written metadata blocks
(directory blocks, so names), is removed; zerofree then zeroes every
block the bitmaps mark free (deleted files, the former journal,
reserved blocks included, which a fill-the-disk wipe cannot reach), and a
fresh, zeroed journal of the same size is created.
"""

import re

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk.backends import base

__all__ = ['ExtBackend']


class ExtBackend(base.Backend):
    """ext2/3/4: overwrite in place, then journal removed, free blocks
    zeroed and journal re-created (see the module docstring).
    """

    fstypes = ('ext2', 'ext3', 'ext4')
    overwrites_in_place = True

    def clean(self, g, device: str) -> list[str]:
        notes = []
        header = appliance.run(g, ['dumpe2fs', '-h', device])
        journal_mib = _journal_mib(header)
        if journal_mib:
            appliance.run(g, ['tune2fs', '-O', '^has_journal', device])
            notes.append('journal removed')
        g.zerofree(device)
        notes.append('free blocks zeroed (zerofree)')
        if journal_mib:
            appliance.run(g, ['tune2fs', '-O', 'has_journal', '-J',
                              'size=%d' % journal_mib, device])
            notes.append('journal re-created (%d MiB)' % journal_mib)
        return notes

    def check(self, g, device: str) -> None:
        appliance.run(g, ['e2fsck', '-f', '-n', device])


def _journal_mib(dumpe2fs_header: str) -> int:
    """Journal size in MiB from ``dumpe2fs -h`` (0: no journal)."""
    if not re.search(r'^Filesystem features:.*\bhas_journal\b',
                     dumpe2fs_header, re.M):
        return 0
    m = re.search(r'^(?:Total j|J)ournal size:\s+(\d+)([kMG])',
                  dumpe2fs_header, re.M)
    if not m:
        return 0
    size, unit = int(m.group(1)), m.group(2)
    mib = {'k': size / 1024, 'M': size, 'G': size * 1024}[unit]
    return max(1, int(mib))
