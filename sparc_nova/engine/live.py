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
open_image=None, in_place_if_possible=False, **options) -> ScrubReport``

    Contract:

    * ``save()``: writes the libvirt save image ``path`` and returns when
      libvirt has finished (e.g. ``virDomainSaveFlags``); it runs in a
      thread of its own. Its exception is re-raised unchanged: libvirt
      removes a partial image and keeps the guest.
    * ``options``: the keyword arguments of
      :func:`.memory.scrub_checkpoint` (not ``output``, ``in_place``,
      ``write``, ``dry_run``, ``follow`` or ``file``). The image is
      replaced by its scrubbed version (same owner and mode), or, with
      ``in_place_if_possible`` (and the ``journal_key`` it needs, and
      optionally a ``journal_dir``), patched in place when
      :func:`sparc_nova.checkpoint.write_mode.choose` allows it for the
      image's compression, read from its header as it is written, and its
      directory.
    * ``open_image()``: returns the image open for reading (binary) once
      libvirt has created it, None before; it may raise a
      :class:`~sparc_nova.exception.SparcError` to refuse the file it
      found (the scrub fails). The scrub reads only that file, and an
      in-place patch writes only to it. None: ``path`` is opened as
      soon as it exists.
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

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import stream_follow
from sparc_nova.checkpoint import write_mode
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


def _open_if_created(path: str):
    """``path`` open for reading, or None while it does not exist."""
    try:
        return open(path, 'rb')
    except FileNotFoundError:
        return None


def _wait_created(path: str, open_image, saving: threading.Thread,
                  deadline: float):
    """Wait until libvirt has created the image (returned open by
    ``open_image()``) or the save ended (None); bounded by ``deadline``.
    """
    while True:
        ended = not saving.is_alive()
        f = open_image()
        if f is not None or ended:
            return f
        if time.monotonic() >= deadline:
            raise errors.ScrubError(path, 'the save did not start in time')
        time.sleep(POLL_SECONDS)


def _scrub_opened(f, path: str, selectors, follow: stream_follow.Follow,
                  in_place_if_possible: bool,
                  options: dict) -> report_mod.ScrubReport:
    """Scrub the image open in ``f`` as it is written; with
    ``in_place_if_possible`` the write mode is decided
    (:func:`sparc_nova.checkpoint.write_mode.choose`) from its header's
    compression as soon as that is written.
    """
    if not in_place_if_possible:
        return memory_mod.scrub_checkpoint(path, selectors, follow=follow,
                                           file=f, **options)
    options = dict(options)
    journal_key = options.pop('journal_key', None)
    journal_dir = options.pop('journal_dir', None)
    try:
        head = stream_follow.wait_header(
            f, path, follow, options.get('limits') or limits_mod.DEFAULT)
        write = write_mode.choose(path, head.compressed,
                                  in_place_if_possible=True,
                                  journal_key=journal_key,
                                  journal_dir=journal_dir)
    except BaseException:
        f.close()
        raise
    return memory_mod.scrub_checkpoint(path, selectors, follow=follow,
                                       write=write, file=f, **options)


def save_and_scrub(save, path: str, selectors, *, timeout: float = 1800,
                   nice: int = SCRUB_NICE, open_image=None,
                   in_place_if_possible: bool = False,
                   **options) -> report_mod.ScrubReport:
    """Save and scrub, the scrub overlapping the save; see the module
    docstring for the contract.
    """
    for name in ('output', 'in_place', 'write', 'dry_run', 'follow',
                 'file'):
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
            f = _wait_created(path, open_image or (
                lambda: _open_if_created(path)), saving, follow.deadline)
            if f is not None:
                scrubbed['report'] = _scrub_opened(
                    f, path, selectors, follow, in_place_if_possible,
                    options)
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
