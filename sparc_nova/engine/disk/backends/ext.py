"""ext2, ext3 and ext4.

Matched files are overwritten in place and unlinked (Linux >= 5.15 also
wipes the directory entry of an unlinked name). After unmounting, the
journal, which keeps copies of recently written metadata blocks
(directory blocks, so names), is removed; then every block the bitmaps
mark free (deleted files, the former journal, reserved blocks included,
which a fill-the-disk wipe cannot reach) is made to read as zeros, and a
fresh, zeroed journal of the same size is created.

Making free blocks read as zeros: on a filesystem that lies on the raw
working copy's drive, its free extents (``dumpe2fs``, the same bitmaps
zerofree reads) are zeroed only where the working copy is not a hole,
and the host checks that every free block reads as zero
(:mod:`..free_blocks`); elsewhere (LVM, LUKS, bigalloc, a free map too
fragmented) ``zerofree`` reads and zeroes every free block.
"""

import re

from sparc_nova.engine.disk import allocation
from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk.backends import base
from sparc_nova.engine.disk import free_blocks

__all__ = ['ExtBackend', 'free_extents', 'parse_free_extents']


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
        free = free_extents(g, device, remove_journal=bool(journal_mib))
        if journal_mib:
            notes.append('journal removed')
        zeroed = free_blocks.zero_allocated_free(
            g, device, self.working_copy, free)
        if zeroed is None:
            g.zerofree(device)
            notes.append('free blocks zeroed (zerofree)')
        else:
            notes.append('free blocks read as zeros (%d bytes of them '
                         'zeroed, the rest are holes of the working '
                         'copy)' % zeroed)
        if journal_mib:
            appliance.run(g, ['tune2fs', '-O', 'has_journal', '-J',
                              'size=%d' % journal_mib, device])
            notes.append('journal re-created (%d MiB)' % journal_mib)
        return notes

    def check(self, g, device: str) -> None:
        appliance.run(g, ['e2fsck', '-f', '-n', device])


#: Bytes of ``dumpe2fs`` output read for the free extents (about 16 per
#: extent); a longer list means a free map fragmented on purpose, and
#: zerofree does the work instead.
_FREE_LIST_BYTES = 3 * 1024 * 1024
_FREE_LINE_RE = re.compile(r'^\s+Free blocks: ?(.*)$', re.M)


def free_extents(g, device: str, remove_journal: bool = False
                 ) -> list[allocation.Range] | None:
    """The free extents of the unmounted ext filesystem on ``device`` in
    bytes from its start, as ``dumpe2fs`` reads its block bitmaps; None
    when they cannot be trusted or are too many to list (see
    :func:`parse_free_extents`). With ``remove_journal``, the journal is
    removed first (``tune2fs -O ^has_journal``; its blocks are then
    free), in the same appliance call.

    :raises RuntimeError: tune2fs or dumpe2fs failed.
    """
    out = appliance.run(g, [
        'sh', '-c',
        'if [ "$2" = yes ]; then tune2fs -O ^has_journal "$1" >/dev/null '
        '|| exit; fi; '
        'dumpe2fs "$1" > /tmp/sparc-dumpe2fs 2>/dev/null; rc=$?; '
        'grep -E "^(Filesystem features|Block count|Block size|'
        'First block):|^ +Free blocks:" /tmp/sparc-dumpe2fs '
        '| head -c %d; rm -f /tmp/sparc-dumpe2fs; exit $rc'
        % (_FREE_LIST_BYTES + 1), 'sh', device,
        'yes' if remove_journal else 'no'])
    if len(out) > _FREE_LIST_BYTES:
        return None
    return parse_free_extents(out)


def parse_free_extents(dump: str) -> list[allocation.Range] | None:
    """Free extents (byte ranges, sorted, merged) from the header and the
    per-group ``Free blocks:`` lines of ``dumpe2fs``; the guest wrote
    every number in it. None (the caller zeroes every free block the
    slow way) when a header field is missing, the filesystem allocates
    in clusters (bigalloc: the bitmaps count clusters), or any extent is
    malformed, reversed or outside the filesystem.
    """
    header = {}
    for name in ('Filesystem features', 'Block count', 'Block size',
                 'First block'):
        m = re.search(r'^%s:\s*(.*)$' % name, dump, re.M)
        if not m:
            return None
        header[name] = m.group(1).strip()
    if 'bigalloc' in header['Filesystem features'].split():
        return None
    try:
        count = int(header['Block count'])
        size = int(header['Block size'])
    except ValueError:
        return None
    if size not in (1024, 2048, 4096, 8192, 16384, 32768, 65536) or \
            count <= 0:
        return None
    blocks = []
    for line in _FREE_LINE_RE.findall(dump):
        for item in filter(None, (i.strip() for i in line.split(','))):
            first, _, last = item.partition('-')
            if not first.isdigit() or not (last or first).isdigit():
                return None
            first, last = int(first), int(last or first)
            if first > last or last >= count:
                return None
            blocks.append((first, last))
    return allocation.merged([(first * size, (last - first + 1) * size)
                              for first, last in blocks])


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
