"""Save a libvirt domain and scrub its memory checkpoint while libvirt
writes it (:mod:`sparc_nova.engine.live`), failing closed.

This is engine code that knows one libvirt call sequence (save, and
restore on failure) and nothing of Nova: the ``sparc checkpoint save``
command and the Nova driver can both use it.

``save_scrubbed(dom, path, selectors, **options) -> ScrubReport``

    Contract:

    * ``dom``: a ``libvirt.virDomain`` (running or paused), saved to
      ``path`` with ``virDomainSaveFlags`` as ``virsh save`` does (a
      running guest restores running).
    * ``options``: the keyword arguments of
      :func:`~sparc_nova.engine.live.save_and_scrub`.
    * Fails closed and leaves the guest usable: if the save fails, libvirt
      keeps the guest and the error is raised; if the save succeeded but
      the scrub failed, the guest is restored from the image, the image
      deleted and the scrub's error raised. No unscrubbed image is left at
      ``path``, unless libvirt cannot restore the guest from it: then the
      image is the guest, and the error names it.

Needs libvirt-python (Debian's python3-libvirt), as Nova's libvirt
driver does; it is imported only when a failed scrub must restore the
guest.
"""

import os

from sparc_nova.engine import live
from sparc_nova.engine import report as report_mod
from sparc_nova import exception

__all__ = ['save_scrubbed']


def _restore_and_discard(conn, path: str) -> None:
    """Bring the guest back from ``path``, then delete the image. If the
    restore fails the image is kept (the guest's state is only there) and
    the error says so.
    """
    import libvirt
    try:
        conn.restore(path)
    except libvirt.libvirtError as e:
        raise exception.SparcError(
            'the guest could not be restored from its unscrubbed image %s '
            '(%s): restore it or delete it' % (path, e))
    os.unlink(path)


def save_scrubbed(dom, path: str, selectors: list[str],
                  **options) -> report_mod.ScrubReport:
    """Save ``dom`` (a ``libvirt.virDomain``) to ``path`` and scrub the
    image while libvirt writes it, excluding the processes ``selectors``
    name; see the module docstring for the contract.

    :raises libvirt.libvirtError: the save failed (the guest is kept).
    :raises sparc_nova.exception.SparcError: the scrub failed (the guest
        was restored from the image and the image deleted), or the guest
        could not be restored (the image is kept and named).
    """
    saved = False

    def save():
        nonlocal saved
        dom.saveFlags(path, None, 0)
        saved = True
    try:
        return live.save_and_scrub(save, path, selectors, **options)
    except exception.SparcError:
        if saved:
            _restore_and_discard(dom.connect(), path)
        raise
