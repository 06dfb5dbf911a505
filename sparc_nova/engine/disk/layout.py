"""The partition table and signatures of the working copy, read inside
the appliance.

The guest wrote every byte of them: they are parsed by the appliance's
kernel, parted and blkid (through libguestfs), never on the host.
"""

from sparc_nova import exception

__all__ = ['no_filesystem_partitions']

#: MBR partition ids of extended partitions (containers of logical
#: partitions, no filesystem by design).
_NO_FS_MBR_IDS = (0x05, 0x0f, 0x85)
#: GPT partition types that hold no filesystem by design: BIOS boot.
_NO_FS_GPT_TYPES = ('21686148-6449-6E6F-744E-656564454649',)


def _holds_no_filesystem(g, partition: str) -> bool:
    disk = g.part_to_dev(partition)
    number = g.part_to_partnum(partition)
    try:
        table = g.part_get_parttype(disk)
        if table == 'msdos':
            return g.part_get_mbr_id(disk, number) in _NO_FS_MBR_IDS
        if table == 'gpt':
            return g.part_get_gpt_type(disk, number).upper() in \
                _NO_FS_GPT_TYPES
    except RuntimeError:
        return False
    return False


def no_filesystem_partitions(g, image: str,
                             filesystems: dict[str, str] | None = None
                             ) -> set[str]:
    """Partitions of the appliance's disks that hold no filesystem by
    design (extended partitions, BIOS boot partitions), as libguestfs
    names them. ``filesystems`` is ``g.list_filesystems()`` when the
    caller has it already (it probes every device: seconds under TCG).

    :raises DiskImageError: no partition or disk carries any signature
        (a non-image, or a disk with no filesystem, LVM, LUKS or swap);
        ``image`` is the path named in the error.
    """
    partitions = g.list_partitions()
    no_fs = {p for p in partitions if _holds_no_filesystem(g, p)}
    found = {device: fstype for device, fstype
             in (g.list_filesystems() if filesystems is None
                 else filesystems).items() if device not in no_fs}
    # list_filesystems leaves out a LUKS volume it has no key for (and
    # can leave out LVM physical volumes): ask blkid for the signature of
    # every partition it did not list.
    for partition in partitions:
        if partition in no_fs or found.get(partition) not in (None, '',
                                                              'unknown'):
            continue
        try:
            found[partition] = g.vfs_type(partition)
        except RuntimeError:
            pass
    if not any(t and t != 'unknown' for t in found.values()):
        what = ('a partition table whose partitions hold no filesystem'
                if partitions else 'no partition table and no filesystem')
        raise exception.DiskImageError(
            image, 'nothing to scrub: the disk has %s, LVM, LUKS or swap '
                   'signature (%s)' % (what, 'empty disk?' if partitions
                                       else 'not a disk image?'))
    return no_fs
