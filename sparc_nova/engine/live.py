"""Scrub a memory checkpoint while libvirt saves the guest.

A libvirt save has two halves. First QEMU writes the migration stream
into the image (its magic reads ``LibvirtQemudPart``) and libvirt marks
the image complete (``LibvirtQemudSave``); then libvirt stops QEMU and
releases the guest's memory and devices, and only then does the save
call return. For a 4 GiB guest the second half takes about as long as
the first (1.3-1.5 s of writing, then 1.6 s). :func:`save_and_scrub`
runs the scrub of a finished file (:func:`.memory.scrub_checkpoint`) on
the image from the moment libvirt creates it: the scrub's sandbox child
starts and both it and this process parse the stream as QEMU writes it
(:mod:`sparc_nova.checkpoint.stream_follow`); once the image is marked
complete (libvirt writes it no more), the guest kernel is modelled, the
plan made and the image rewritten and verified, while libvirt stops QEMU.
The scrub then adds to the save only what it takes beyond libvirt's own
clean-up.

``save_and_scrub(save, path, selectors, *, timeout=1800, nice=10,
**options) -> ScrubReport``

    Contract:

    * ``save()``: writes the libvirt save image ``path`` and returns when
      libvirt has finished (e.g. ``virDomainSaveFlags``); it runs in a
      thread of its own. Its exception is re-raised unchanged: libvirt
      removes a partial image and keeps the guest.
    * ``options``: the keyword arguments of
      :func:`.memory.scrub_checkpoint` (not ``output``, ``in_place``,
      ``write`` or ``dry_run``: the image is replaced by its scrubbed
      version, same owner and mode).
    * The image counts as complete once libvirt marks it so, or once
      ``save()`` returns if that comes first; ``timeout`` bounds every
      wait. The scrub runs in a thread of its own at least at ``nice``
      (its sandbox child too), so that it takes the CPU the save leaves
      idle.
    * Fails closed: when the scrub fails its error is raised after
      ``save()`` has returned, and the unscrubbed image is left to the
      caller, which must discard it (the guest's state is only there:
      restore the guest from it, then delete it;
      :mod:`sparc_nova.engine.domain_save` does).
    * Returns the scrub's :class:`~.report.ScrubReport`, with
      ``timings['save']`` (the save call), ``timings['after_save']``
      (what the scrub added after it) and ``during_save`` (when the image
      was complete, whether the scrub overlapped libvirt's clean-up).
"""

import os
import threading
import time

from sparc_nova.checkpoint import stream_follow
from sparc_nova.engine import errors
from sparc_nova.engine import memory as memory_mod
from sparc_nova.engine import report as report_mod
from sparc_nova import exception

__all__ = ['POLL_SECONDS', 'SCRUB_NICE', 'save_and_scrub']

#: Seconds between two looks for the image file.
POLL_SECONDS = 0.005
#: Nice value of the scrub (and its sandbox child) while it overlaps the
#: save: it takes the CPU the save leaves idle.
SCRUB_NICE = 10


def _wait_created(path: str, saving: threading.Thread,
                  deadline: float) -> bool:
    """Wait until libvirt has created the image (True) or the save ended
    (False); bounded by ``deadline``.
    """
    while saving.is_alive():
        if os.path.exists(path):
            return True
        if time.monotonic() >= deadline:
            raise errors.ScrubError(path, 'the save did not start in time')
        time.sleep(POLL_SECONDS)
    return os.path.exists(path)


def save_and_scrub(save, path: str, selectors, *, timeout: float = 1800,
                   nice: int = SCRUB_NICE,
                   **options) -> report_mod.ScrubReport:
    """Save and scrub, the scrub overlapping the save; see the module
    docstring for the contract.
    """
    for name in ('output', 'in_place', 'write', 'dry_run', 'follow'):
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
    follow = stream_follow.Follow(t0 + timeout,
                                  lambda: not saving.is_alive())
    scrubbed = {}

    def run_scrub():
        # The scrub yields the CPU to the save it overlaps (and its
        # sandbox child, started from this thread, inherits that); a
        # thread already nicer stays so.
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(
                nice, os.getpriority(os.PRIO_PROCESS, tid)))
        except OSError:
            pass
        try:
            if _wait_created(path, saving, follow.deadline):
                scrubbed['report'] = memory_mod.scrub_checkpoint(
                    path, selectors, follow=follow, **options)
        except BaseException as e:  # re-raised in the caller's thread
            scrubbed['error'] = e
    scrubbing = threading.Thread(target=run_scrub, name='sparc-scrub',
                                 daemon=True)
    scrubbing.start()
    scrubbing.join()
    end = time.monotonic()
    saving.join()
    rep = scrubbed.get('report')
    scrub_error = scrubbed.get('error')
    if scrub_error is not None and \
            not isinstance(scrub_error, exception.SparcError):
        raise scrub_error
    if 'error' in box:
        raise box['error']
    if scrub_error is not None:
        raise scrub_error
    if rep is None:
        raise errors.ScrubError(path, 'the save wrote no image')
    complete = follow.completed_at or box['end']
    rep.timings['save'] = round(box['end'] - t0, 4)
    rep.timings['after_save'] = round(max(0.0, end - box['end']), 4)
    rep.timings['total'] = round(max(end, box['end']) - t0, 4)
    rep.during_save = {
        'image_complete_after': round(complete - t0, 4),
        'scrub_overlapped_save': complete < box['end'],
    }
    return rep
