"""scrub_image: remove a policy's files from a disk image so that no byte
of them survives, and prove it.

Contract:

* ``src`` is never modified and is read in the format the caller
  gives (or that oslo.utils' format inspector finds), never in one
  qemu guesses; an image that would read other host files (backing
  file, data file, extents) is refused unless the caller allows a
  backing chain (:mod:`.source`, :mod:`.preflight`). Every qemu-img
  call names its formats and runs under resource limits
  (:mod:`.qemu_img`).
* The scrub works on a private raw working copy (an allowed backing
  chain flattened; raw so that discards punch 4 KiB holes) in a fresh
  0700 directory, and writes ``dst`` in the requested format through a
  temporary file in ``dst``'s directory that is renamed into place only
  after verification.
* Fail closed: on any error no ``dst`` (and no temporary file) is left,
  and the exception (a :class:`~sparc_nova.exception.DiskError`) names
  the image, the device or file concerned, and why.
* One libguestfs appliance launch per scrub.

The steps, each in its own module (:func:`scrub_image` runs them in
this order):

1. host-side checks of the source and destination (:mod:`.preflight`);
2. the private raw working copy (:mod:`.host_image`);
3. one appliance launch (:mod:`.appliance`) on the working copy, and its
   partition layout (:mod:`.layout`);
4. LUKS volumes opened, volumes classified, trees found
   (:mod:`.discover`, :mod:`.volumes`);
5. for every tree: the rules choose the files (:mod:`.rules`), kept-file
   hashes and canaries are recorded (:mod:`.evidence`,
   :mod:`.canaries`), files are overwritten and removed, directories
   rebuilt (:mod:`.removal`, :mod:`.backends`) and free blocks trimmed;
6. swap areas, free LVM extents and each filesystem's free space wiped
   (:mod:`.wipe`);
7. verification in the appliance: no rule matches any more, kept files
   unchanged, no canary in a decrypted view or the working copy,
   filesystems consistent (:mod:`.verify`, :mod:`.scan`);
8. the destination written through a temporary file (:mod:`.host_image`);
9. the destination compared with the working copy and scanned for
   canaries (:mod:`.verify`), then renamed into place.
"""

import os
import shutil
import time
from typing import Callable

from oslo_log import log as logging

from sparc_nova.checkpoint import tempfiles
from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import discover
from sparc_nova.engine.disk import fast_boot
from sparc_nova.engine.disk import host_image
from sparc_nova.engine.disk import layout
from sparc_nova.engine.disk import options as options_mod
from sparc_nova.engine.disk import preflight
from sparc_nova.engine.disk import removal
from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine.disk import session as session_mod
from sparc_nova.engine.disk import temporaries
from sparc_nova.engine.disk import verify
from sparc_nova.engine.disk import wipe
from sparc_nova import exception

__all__ = ['STEPS', 'ProgressFn', 'ScrubOptions', 'scrub_image']

LOG = logging.getLogger(__name__)

ScrubOptions = options_mod.ScrubOptions

#: Called as ``progress(step_number, step_count, description)``.
ProgressFn = Callable[[int, int, str], None]

STEPS = ('checking the source image', 'making the working copy',
         'starting the appliance', 'opening volumes',
         'selecting and removing files', 'cleaning free space',
         'verifying inside the image', 'writing the destination',
         'verifying the destination')


def scrub_image(src: str, dst: str, rules: rules_mod.Rules,
                options: ScrubOptions | None = None,
                progress: ProgressFn | None = None
                ) -> report_mod.ScrubReport:
    """Write a scrubbed copy of the disk image ``src`` to ``dst``.

    :param src: image file in ``options.source_format`` (see
        :class:`~.options.ScrubOptions` for backing files).
    :param dst: output path; replaced atomically if it exists.
    :param rules: what to remove (:class:`~.rules.Rules`).
    :param options: how (None: the defaults of
        :class:`~.options.ScrubOptions`, not the configuration: callers
        build them with :meth:`~.options.ScrubOptions.from_conf`).
    :param progress: called before each of :data:`STEPS`.
    :returns: the :class:`~.report.ScrubReport` (JSON via ``to_dict``).
    :raises DiskImageError: unusable input or destination (nothing was
        started or written).
    :raises DiskScrubError: a step failed; nothing was written.
    :raises DiskVerificationError: the result failed verification; it
        was deleted.
    """
    options = options or ScrubOptions()
    started = time.monotonic()
    step = _Stepper(progress)
    report = report_mod.ScrubReport(
        source=src, destination=dst, output_format=options.output_format,
        reveal_paths=options.reveal_paths)

    step()
    source = preflight.inspect_source(src, options.source_format,
                                      options.allow_backing_chain,
                                      options.qemu_img_limits)
    report.source_format = source.format
    report.source_files = source.files_read
    preflight.check_destination(dst, src, options.output_format)
    parent = options.work_dir or os.path.dirname(os.path.abspath(dst))
    stale = temporaries.remove_stale(dst, parent)
    if stale:
        LOG.info('Removed %d temporaries of killed scrubs', len(stale))
    workdir = host_image.make_work_directory(parent, src)
    try:
        step()
        work = os.path.join(workdir, 'work.raw')
        host_image.convert(source.path, source.format, work, 'raw', src,
                           options.qemu_img_limits)
        session = _scrub_in_appliance(src, rules, options, report, workdir,
                                      work, step)
        _write_destination(session, dst, step)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.duration_s = round(time.monotonic() - started, 1)
    LOG.info('Scrubbed %s into %s: %d paths removed, %d canaries, '
             '%d kept files checked, %.1f s', src, dst, len(report.removed),
             report.canaries, report.kept_files_checked, report.duration_s)
    return report


def _scrub_in_appliance(src: str, rules: rules_mod.Rules,
                        options: ScrubOptions,
                        report: report_mod.ScrubReport, workdir: str,
                        work: str, step: '_Stepper') -> session_mod.Session:
    """Steps 3 to 7 on the raw working copy ``work``, in one appliance."""
    step()
    launched = time.monotonic()
    fixed = None
    if options.appliance_cache_dir:
        fixed = fast_boot.prepare(options.appliance_cache_dir,
                                  appliance.supermin_dir())
    g = appliance.launch(src, [(work, False)], options.accel,
                         options.memsize_mib,
                         timeout=options.launch_timeout_s,
                         notes=report.notes, appliance_dir=fixed)
    session = session_mod.Session(g, src, rules, options, report, workdir,
                                  work)
    try:
        disks = layout.read(g, src)
        step()
        discover.open_volumes(session, disks)
        step()
        removal.remove_selected(session)
        step()
        wipe.wipe_swap(session)
        wipe.wipe_free_extents(session)
        wipe.clean_filesystems(session)
        step()
        verify.verify_in_appliance(session)
        g.shutdown()
    except RuntimeError as e:
        # libguestfs reports every failure as RuntimeError; the steps
        # that can name a device did so already (DiskError).
        raise exception.DiskScrubError(
            src, 'appliance step failed: %s' % session.detail(e)
        ) from None
    finally:
        g.close()
    report.appliance_s = round(time.monotonic() - launched, 1)
    return session


def _write_destination(session: session_mod.Session, dst: str,
                       step: '_Stepper') -> None:
    """Steps 8 and 9: convert the verified working copy into a temporary
    file next to ``dst``, compare and scan it, rename it over ``dst``
    and make the rename durable; on any failure the temporary goes.
    """
    options = session.options
    fmt = options.output_format
    step()
    with tempfiles.replacement(dst) as (_, tmp_dst):
        host_image.convert(session.work, 'raw', tmp_dst, fmt, session.image,
                           options.qemu_img_limits)
        step()
        host_image.compare(session.work, tmp_dst, fmt, session.image,
                           options.qemu_img_limits)
        verify.verify_output(session, tmp_dst, fmt)


class _Stepper:
    """Announces the next of :data:`STEPS` to ``progress`` at each call."""

    def __init__(self, progress: ProgressFn | None):
        self.progress = progress
        self.index = 0

    def __call__(self) -> None:
        self.index += 1
        if self.progress is not None:
            self.progress(self.index, len(STEPS), STEPS[self.index - 1])
