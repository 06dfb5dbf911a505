"""The host side of a scrub: the image files outside the appliance.

The private working directory, the raw working copy (:func:`convert`
from the source), the destination written through a temporary file next
to it (:func:`sparc_nova.checkpoint.tempfiles.replacement`, the one
atomic replace of every writer; :func:`convert` back, :func:`compare`
with the verified working copy). Every
qemu-img call names its formats and runs under the caller's
:class:`~.qemu_img.Limits`.
"""

import os
import tempfile

from sparc_nova.engine.disk import qemu_img
from sparc_nova.engine.disk import temporaries
from sparc_nova import exception

__all__ = ['compare', 'convert', 'make_work_directory']


def make_work_directory(parent: str, image: str) -> str:
    """A new directory, mode 0700, in ``parent`` for the working copy of
    ``image`` (named in errors), with this process's
    :func:`~.temporaries.work_prefix`.

    :raises DiskImageError: it cannot be created.
    """
    try:
        workdir = tempfile.mkdtemp(prefix=temporaries.work_prefix(),
                                   dir=parent)
    except OSError as e:
        raise exception.DiskImageError(
            image, 'cannot create a working directory in %s (%s)'
            % (parent, e.strerror)) from e
    os.chmod(workdir, 0o700)
    return workdir


def convert(src: str, src_format: str, dst: str, dst_format: str,
            image: str, limits: qemu_img.Limits) -> None:
    """Write ``src`` (read as ``src_format``) to ``dst`` in
    ``dst_format``; a raw ``dst`` is sparse at 4 KiB granularity.

    :raises DiskImageError: qemu-img failed (or hit a limit); the message
        names ``image`` and ``dst`` is removed.
    """
    args = ['-f', src_format, '-O', dst_format]
    if dst_format == 'raw':
        args += ['-S', '4k']
    result = qemu_img.run('convert', args, [src, dst], limits)
    if result.returncode != 0:
        if os.path.exists(dst):
            os.unlink(dst)
        raise exception.DiskImageError(
            image, 'qemu-img convert to %s failed: %s' % (
                dst_format, result.stderr.strip()[-300:] or
                'exit %d (killed at a [sparc] disk_qemu_img_convert_* '
                'limit?)' % result.returncode))


def compare(work: str, dst: str, dst_format: str, image: str,
            limits: qemu_img.Limits) -> None:
    """Check that the guest view of ``dst`` (in ``dst_format``) equals
    the raw ``work`` file (what the in-appliance verification saw) byte
    for byte.

    :raises DiskVerificationError: they differ, or the comparison failed.
    """
    result = qemu_img.run('compare', ['-q', '-f', 'raw', '-F', dst_format],
                          [work, dst], limits)
    if result.returncode != 0:
        raise exception.DiskVerificationError(
            image, 'the written image differs from the verified working '
                   'copy: %s' % (result.stderr.strip()[-300:] or
                                 'exit %d' % result.returncode), device=dst)
