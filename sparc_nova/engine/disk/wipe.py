"""Where bytes are zeroed, apart from the removed files themselves
(those are overwritten by their filesystem backend in
:func:`.removal.remove`).

* :func:`trim`: the free blocks of a mounted filesystem are discarded
  (the raw working copy punches 4 KiB holes), right after its files were
  removed.
* :func:`wipe_swap`: swap areas are zeroed and their signature re-made
  with the same UUID and label.
* :func:`wipe_free_extents`: the unallocated extents of each LVM volume
  group are zeroed through a temporary logical volume.
* :func:`clean_filesystems`: each filesystem's backend
  (:mod:`.backends`) cleans what a trim leaves behind (the journal,
  for instance).
"""

from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import session as session_mod
from sparc_nova.engine.disk import volumes as volumes_mod

__all__ = ['clean_filesystems', 'trim', 'wipe_free_extents', 'wipe_swap',
           'zero_device']

#: Name of the temporary logical volume over a group's free extents.
_WIPE_LV = 'sparc-wipe'


def trim(session: session_mod.Session, volume: volumes_mod.Volume,
         mountpoint: str) -> None:
    """Discard free blocks of ``volume`` mounted at ``mountpoint``. Where
    the device cannot discard (LUKS opened without allow-discards), this
    is noted in the volume's report and the clean step and the
    verification decide.

    :raises RuntimeError: the trim failed otherwise.
    """
    try:
        session.backend(volume).trim(session.g, mountpoint)
    except RuntimeError as e:
        if 'not supported' not in str(e):
            raise
        volume.report.steps.append('discard not supported by the '
                                   'device: not trimmed')


def wipe_swap(session: session_mod.Session) -> None:
    """Zero every swap volume and re-create its signature with the same
    UUID and label.

    :raises DiskScrubError: naming the swap device.
    """
    g = session.g
    for volume in session.volumes.values():
        if volume.role != volumes_mod.ROLE_SWAP:
            continue
        try:
            label = g.vfs_label(volume.device) or None
            uuid = g.vfs_uuid(volume.device) or None
            zero_device(g, volume.device)
            g.mkswap(volume.device, label=label, uuid=uuid)
        except RuntimeError as e:
            session.fail('wiping swap failed: %s' % session.detail(e),
                         device=volume.device, cause=e)
        volume.report.action = 'wiped'
        volume.report.steps.append('zeroed, swap signature re-created '
                                   'with the same UUID and label')


def wipe_free_extents(session: session_mod.Session) -> None:
    """Unallocated extents of each volume group can hold data of
    removed logical volumes: they are zeroed through a temporary LV
    (created over all free extents, then removed), and reported as an
    ``lvm-free-space`` volume with the byte count.

    :raises DiskScrubError: naming the temporary LV.
    """
    g = session.g
    for vg in g.vgs_full():
        if int(vg['vg_free']) <= 0:
            continue
        name = vg['vg_name']
        lv = '/dev/%s/%s' % (name, _WIPE_LV)
        try:
            g.lvcreate_free(_WIPE_LV, name, 100)
            zero_device(g, lv)
            g.lvremove(lv)
        except RuntimeError as e:
            session.fail('wiping free extents of volume group %s failed: '
                         '%s' % (name, session.detail(e)),
                         device=lv, cause=e)
        session.report.volumes.append(report_mod.VolumeReport(
            '/dev/' + name, 'lvm-free-space', action='wiped',
            steps=['%d bytes of free extents zeroed' % int(vg['vg_free'])]))


def clean_filesystems(session: session_mod.Session) -> None:
    """Let each scrubbed or unmodified filesystem's backend clean its
    free space; the steps it reports go into the volume's report.

    :raises DiskScrubError: naming the device.
    """
    g = session.g
    for volume in session.volumes.values():
        if volume.role != volumes_mod.ROLE_FILESYSTEM or \
                volume.report.action == 'skipped':
            continue
        try:
            volume.report.steps.extend(
                session.backend(volume).clean(g, volume.device))
        except RuntimeError as e:
            session.fail('cleaning free space failed: %s'
                         % session.detail(e),
                         device=volume.device, cause=e)
        if volume.report.action == 'unmodified':
            volume.report.action = 'cleaned'


def zero_device(g, device: str) -> None:
    """Zero a whole device: discard when discards read back as zeros,
    write zeros otherwise.

    :raises RuntimeError: writing zeros failed.
    """
    try:
        g.blkdiscard(device)
        if g.blkdiscardzeroes(device):
            return
    except RuntimeError:
        pass
    g.zero_device(device)
