"""Scrub a memory checkpoint while libvirt finishes saving the guest.

A libvirt save has two halves. First QEMU writes the migration stream
into the image (its magic reads ``LibvirtQemudPart``) and libvirt marks
the image complete (``LibvirtQemudSave``); then libvirt stops QEMU and
releases the guest's memory and devices, and only then does the save
call return. For a 4 GiB guest the second half takes as long as the
first (1.5 s of writing, then 1.6 s). The image is complete and no
longer written once it is marked, so :func:`save_and_scrub` scrubs it
then (:func:`.memory.scrub_checkpoint`, the same scrub as for a finished
file), while libvirt stops QEMU: the scrub then adds to the save only
what it takes beyond libvirt's own clean-up.

``save_and_scrub(save, path, selectors, *, timeout=1800, **options)
-> ScrubReport``

    Contract:

    * ``save()``: writes the libvirt save image ``path`` and returns when
      libvirt has finished (e.g. ``virDomainSaveFlags``); it runs in a
      thread of its own. Its exception is re-raised unchanged: libvirt
      removes a partial image and keeps the guest.
    * ``options``: the keyword arguments of
      :func:`.memory.scrub_checkpoint` (not ``output``, ``in_place`` or
      ``dry_run``: the image is replaced by its scrubbed version, same
      owner and mode).
    * The scrub starts once the image is marked complete (polled every
      :data:`POLL_SECONDS`), or once ``save()`` returns if that comes
      first; ``timeout`` bounds the wait.
    * Fails closed: when the scrub fails its error is raised after
      ``save()`` has returned, and the unscrubbed image is left to the
      caller, which must discard it (the guest's state is only there:
      restore the guest from it, then delete it;
      :mod:`sparc_nova.virt.libvirt.live_save` does).
    * Returns the scrub's :class:`~.report.ScrubReport`, with
      ``timings['save']`` (the save call), ``timings['after_save']``
      (what the scrub added after it) and ``during_save`` (when the image
      was complete, whether the scrub overlapped libvirt's clean-up).
"""

import threading
import time

from sparc_nova.checkpoint import libvirt_save
from sparc_nova.engine import errors
from sparc_nova.engine import memory as memory_mod
from sparc_nova.engine import report as report_mod
from sparc_nova import exception

#: Seconds between two looks at the image's magic.
POLL_SECONDS = 0.005


def _complete(path: str) -> bool:
    """Whether libvirt has marked the save image at ``path`` complete."""
    try:
        with open(path, 'rb') as f:
            return f.read(len(libvirt_save.MAGIC)) == libvirt_save.MAGIC
    except OSError:
        return False


def _wait_complete(path: str, saving: threading.Thread,
                   deadline: float) -> bool:
    """Wait until the image is marked complete (True) or ``saving`` ends
    (False); bounded by ``deadline``.
    """
    while saving.is_alive():
        if _complete(path):
            return True
        if time.monotonic() >= deadline:
            raise errors.ScrubError(path, 'the save did not complete in '
                                          'time')
        time.sleep(POLL_SECONDS)
    return False


def save_and_scrub(save, path: str, selectors, *, timeout: float = 1800,
                   **options) -> report_mod.ScrubReport:
    """Save and scrub, the scrub overlapping the end of the save; see the
    module docstring for the contract.
    """
    for name in ('output', 'in_place', 'dry_run'):
        if name in options:
            raise TypeError('save_and_scrub() takes no %r' % name)
    box = {}

    def run_save():
        try:
            save()
        except BaseException as e:  # re-raised in the caller's thread
            box['error'] = e
        finally:
            box['end'] = time.monotonic()
    t0 = time.monotonic()
    saving = threading.Thread(target=run_save, name='sparc-save',
                              daemon=True)
    saving.start()
    rep = scrub_error = None
    try:
        overlapped = _wait_complete(path, saving, t0 + timeout)
        complete_at = time.monotonic()
        if not overlapped:
            saving.join()
        if 'error' not in box:
            rep = memory_mod.scrub_checkpoint(path, selectors, **options)
    except exception.SparcError as e:
        scrub_error = e
    end = time.monotonic()
    saving.join()
    if 'error' in box:
        raise box['error']
    if scrub_error is not None:
        raise scrub_error
    rep.timings['save'] = round(box['end'] - t0, 4)
    rep.timings['after_save'] = round(max(0.0, end - box['end']), 4)
    rep.timings['total'] = round(max(end, box['end']) - t0, 4)
    rep.during_save = {
        'image_complete_after': round(complete_at - t0, 4),
        'scrub_overlapped_save': overlapped,
    }
    return rep
