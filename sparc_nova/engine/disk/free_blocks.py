"""Zero the free blocks of a filesystem that can still hold data, and
prove on the host that every free block reads as zeros.

A filesystem's free blocks can hold the bytes of removed and deleted
files. Zeroing every one of them through the appliance (``zerofree``
reads each free block; 30-40 MB/s under TCG) costs most of a scrub,
while most free blocks of a working copy are holes: never written in the
source (the working copy is sparse) or discarded by the trim after the
removal (discards punch holes in the raw file). A hole reads as zeros.

So, for a filesystem that lies on the working copy's drive itself (a
partition of it, or the whole drive: the kernel's own start and size of
the partition, from sysfs in the appliance, map it to the file), the
filesystem's free extents (its backend lists them from its bitmaps) are
intersected with the host's allocation map of the working copy
(:mod:`.allocation`); only that intersection is zeroed, in the
appliance, with ``BLKZEROOUT`` (``blkdiscard -z``). Then the host reads
every free extent that is not a hole and fails unless it is all zeros:
nothing here trusts that a discard reached the file, that the trim
covered every free block, or that the zeroing command did what it said.

A filesystem in LVM, LUKS or any other mapping, or one whose free list
the backend cannot give, is not mapped (:func:`zero_allocated_free`
returns None) and the backend zeroes every free block as before.
"""

import re

from sparc_nova.engine.disk import allocation
from sparc_nova.engine.disk import appliance

__all__ = ['MAX_ZERO_RANGES', 'device_extent', 'zero_allocated_free',
           'zero_ranges']

#: Ranges zeroed by :func:`zero_ranges` in one scrub of a filesystem;
#: more (a free map fragmented on purpose, discards that did not reach
#: the file) and the backend's full zeroing is cheaper than one command
#: per range.
MAX_ZERO_RANGES = 256
#: The working copy is the first (and only) drive of the appliance.
_WORK_DEVICE_RE = re.compile(r'^/dev/sda(\d*)$')
_SECTOR = 512


def device_extent(g, device: str) -> allocation.Range | None:
    """``(offset, length)`` in bytes of ``device`` (as the libguestfs API
    names it) in the working copy, as the appliance's kernel maps it
    (sysfs ``start`` and ``size`` of the partition, in 512-byte
    sectors); None when ``device`` is not the working copy's drive or
    one of its partitions.

    :raises RuntimeError: the appliance could not answer.
    """
    m = _WORK_DEVICE_RE.match(device)
    if not m:
        return None
    out = appliance.run(g, [
        'sh', '-c',
        'p=${1##*/}; d=${2##*/}; '
        'if [ "$p" = "$d" ]; then echo 0 "$(cat /sys/class/block/$d/size)";'
        ' elif [ -r "/sys/class/block/$d/$p/start" ]; then '
        'echo "$(cat /sys/class/block/$d/$p/start)" '
        '"$(cat /sys/class/block/$d/$p/size)"; '
        'else echo none; fi', 'sh', device, '/dev/sda'])
    fields = out.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    start, size = (int(f) * _SECTOR for f in fields)
    return (start, size) if size > 0 else None


def zero_ranges(g, device: str, ranges: list[allocation.Range]) -> None:
    """Write zeros over ``ranges`` (byte offsets in ``device``, multiples
    of 512) with ``BLKZEROOUT``, then sync, in one appliance call.

    :raises RuntimeError: a range could not be zeroed.
    """
    if not ranges:
        return
    lines = '\n'.join('%d %d' % r for r in ranges)
    appliance.run(g, [
        'sh', '-c',
        'printf "%s\\n" "$2" | while read -r o l; do '
        'blkdiscard -z -o "$o" -l "$l" "$1" || exit 1; done && sync',
        'sh', device, lines])


def _sector_aligned(ranges: list[allocation.Range]
                    ) -> list[allocation.Range]:
    """``ranges`` widened to whole 512-byte sectors (free extents are
    whole filesystem blocks, so the widened ranges stay inside them).
    """
    aligned: list[allocation.Range] = []
    for start, length in ranges:
        first = start - start % _SECTOR
        end = -(-(start + length) // _SECTOR) * _SECTOR
        aligned.append((first, end - first))
    return aligned


def zero_allocated_free(g, device: str, working_copy: str | None,
                        free: list[allocation.Range] | None
                        ) -> int | None:
    """Zero the free extents ``free`` (byte ranges in ``device``, from its
    filesystem's bitmaps) where the working copy can hold data, then
    check on the host that every byte of them reads as zero.

    :returns: bytes zeroed; None when this cannot be done here (no
        working copy, ``device`` not mapped linearly into it, no free
        list, a free extent outside the device, or more than
        :data:`MAX_ZERO_RANGES` ranges to zero): the caller must zero
        every free block itself.
    :raises RuntimeError: zeroing failed, or a free block still holds a
        byte other than zero afterwards (nothing is left to a later
        step: the scrub fails).
    """
    if working_copy is None or free is None:
        return None
    extent = device_extent(g, device)
    if extent is None:
        return None
    offset, size = extent
    if any(start < 0 or start + length > size for start, length in free):
        return None
    in_file = [(start + offset, length) for start, length in free]
    targets = allocation.intersect(
        in_file, allocation.data_ranges(working_copy, offset,
                                        offset + size))
    if len(targets) > MAX_ZERO_RANGES:
        return None
    zero_ranges(g, device, _sector_aligned(
        [(start - offset, length) for start, length in targets]))
    left = allocation.nonzero_ranges(working_copy, allocation.intersect(
        in_file, allocation.data_ranges(working_copy, offset,
                                        offset + size)))
    if left:
        raise RuntimeError(
            '%d bytes of free blocks still hold data after zeroing'
            % allocation.total(left))
    return allocation.total(targets)
