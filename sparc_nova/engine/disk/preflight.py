"""Checks made on the host before the appliance starts: is the source
an image qemu can read in full, in the format it was given, reading no
file but itself (or a backing chain the operator allowed), and can the
destination be written.

Every failure raises :class:`~sparc_nova.exception.DiskImageError` and
leaves nothing behind. Nothing here parses guest data: the partition
table and the filesystems are read inside the appliance
(:mod:`.layout`).
"""

import dataclasses
import json
import os
import tempfile

from sparc_nova.engine.disk import qemu_img
from sparc_nova.engine.disk import source as source_mod
from sparc_nova import exception
from sparc_nova.i18n import _P

__all__ = ['OUTPUT_FORMATS', 'MIN_DISK_BYTES', 'MAX_CHAIN', 'SourceImage',
           'inspect_source', 'check_destination']

#: Formats whose metadata ``qemu-img check`` can verify.
_CHECKABLE = ('qcow2', 'qed', 'vdi', 'vhdx', 'vmdk', 'parallels')

#: ``qemu-img check`` exit codes that mean the image is usable
#: (0 clean, 3 leaked clusters only).
_CHECK_OK = (0, 3)

OUTPUT_FORMATS = ('qcow2', 'raw')

#: The smallest disk a scrub accepts (the smallest ext2 filesystem).
MIN_DISK_BYTES = 64 * 1024

#: Files a backing chain may have, the source included.
MAX_CHAIN = 16


@dataclasses.dataclass
class SourceImage:
    """What ``qemu-img info`` says about the source.

    ``virtual_size`` is in bytes; ``backing_chain`` lists the backing
    files below ``path`` (flattened into the working copy; empty unless
    the chain was allowed); ``files_read`` is every file the working
    copy is made from, ``path`` first.
    """
    path: str
    format: str
    virtual_size: int
    backing_chain: list[str]

    @property
    def files_read(self) -> list[str]:
        return [self.path] + self.backing_chain


def _qemu_img(command: str, args: list[str], path: str,
              limits: qemu_img.Limits) -> qemu_img.Result:
    try:
        return qemu_img.run(command, args, [path], limits)
    except OSError as e:
        raise exception.DiskImageError(
            path, 'cannot run qemu-img (%s): install it (see bindep.txt)'
            % e.strerror) from e


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else 'no message'


def inspect_source(path: str, fmt: str | None = None,
                   allow_backing_chain: bool = False,
                   limits: qemu_img.Limits | None = None) -> SourceImage:
    """Refuse a source that is missing, not a regular file, unreadable,
    not in format ``fmt``, reading other files (unless
    ``allow_backing_chain``), or whose metadata is corrupt or truncated.

    :param fmt: the source format (:data:`.source.FORMATS`); None finds
        it with the format inspector (:func:`.source.detect`), never with
        a qemu probe.
    :param allow_backing_chain: read (and flatten) backing files, each
        with the backing format its overlay records.
    :param limits: qemu-img's resource limits.
    """
    limits = limits or qemu_img.Limits()
    if not os.path.exists(path):
        raise exception.DiskImageError(path, 'no such file')
    if not os.path.isfile(path):
        raise exception.DiskImageError(path, 'not a regular file')
    if not os.access(path, os.R_OK):
        raise exception.DiskImageError(path, 'not readable')
    fmt = fmt or source_mod.detect(path)
    chain = _chain(path, fmt, allow_backing_chain, limits)
    if fmt in _CHECKABLE:
        check = _qemu_img('check', ['--output=json', '-f', fmt], path,
                          limits)
        if check.returncode not in _CHECK_OK:
            try:
                detail = json.loads(check.stdout)
                corruptions = detail.get('corruptions', 0)
                errors = detail.get('check-errors', 0)
                why = '%s, %s' % (
                    _P('%d corruption', '%d corruptions', corruptions)
                    % corruptions,
                    _P('%d check error', '%d check errors', errors) % errors)
            except ValueError:
                why = _last_line(check.stderr)
            truncated = 'exceeding the end of the file' in check.stderr
            raise exception.DiskImageError(
                path, '%s image is %s (%s)' % (
                    fmt, 'truncated' if truncated else 'corrupt', why))
    size = int(chain[0][1]['virtual-size'])
    if size < MIN_DISK_BYTES:
        raise exception.DiskImageError(
            path, 'not a disk image: %d bytes are too small to hold a '
                  'filesystem' % size)
    return SourceImage(path=path, format=fmt, virtual_size=size,
                       backing_chain=[name for name, _ in chain[1:]])


def _chain(path: str, fmt: str, allow_backing_chain: bool,
           limits: qemu_img.Limits) -> list[tuple[str, dict]]:
    """``(file, qemu-img info)`` of the source and, when allowed, of
    each backing file below it, top first.

    Each layer is opened with an explicit format (its overlay must
    record the backing format: qemu would otherwise probe it), passes
    the format inspector's checks, and may have no data file and no
    ``json:`` backing specification.
    """
    chain = []
    name, layer_fmt = path, fmt
    while True:
        if name != path and not os.path.isfile(name):
            raise exception.DiskImageError(
                path, 'backing file %r of %s is missing or not a regular '
                      'file' % (name, chain[-1][0]))
        source_mod.check(name, layer_fmt, allow_backing_chain)
        result = _qemu_img('info', ['--output=json', '-f', layer_fmt],
                           name, limits)
        if result.returncode != 0:
            raise exception.DiskImageError(
                path, 'not a %s image qemu can open%s: %s' % (
                    layer_fmt, '' if name == path else ' (%s)' % name,
                    _last_line(result.stderr)))
        info = json.loads(result.stdout)
        chain.append((name, info))
        data_file = (info.get('format-specific', {}).get('data', {})
                     .get('data-file'))
        if data_file:
            raise exception.DiskImageError(
                path, 'refused: %s has a data file %r' % (name, data_file))
        backing = info.get('backing-filename')
        if not backing:
            return chain
        full = info.get('full-backing-filename') or backing
        if not allow_backing_chain:
            raise exception.DiskImageError(
                path, 'refused: %s has a backing file %r' % (name, backing))
        if backing.startswith('json:') or full.startswith('json:'):
            raise exception.DiskImageError(
                path, 'refused: %s names its backing file with a json: '
                      'specification %r' % (name, backing))
        if not info.get('backing-filename-format'):
            raise exception.DiskImageError(
                path, 'refused: %s does not record the format of its '
                      'backing file %r (qemu would guess it)'
                % (name, backing))
        if len(chain) >= MAX_CHAIN:
            raise exception.DiskImageError(
                path, 'refused: the backing chain is longer than %d files'
                % MAX_CHAIN)
        name, layer_fmt = full, info['backing-filename-format']


def check_destination(dst: str, src: str, output_format: str) -> None:
    """Refuse a destination that is the source, a directory, or in a
    directory that cannot be written (a file is created and removed there
    to find out: permission bits say nothing for root or read-only
    mounts).
    """
    if output_format not in OUTPUT_FORMATS:
        raise exception.DiskImageError(
            dst, 'unknown output format %r (choose from %s)'
            % (output_format, ', '.join(OUTPUT_FORMATS)))
    if os.path.isdir(dst):
        raise exception.DiskImageError(dst, 'destination is a directory')
    if os.path.exists(dst) and os.path.samefile(dst, src):
        raise exception.DiskImageError(
            dst, 'destination is the source (the source is never '
                 'modified)')
    directory = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(directory):
        raise exception.DiskImageError(
            dst, 'destination directory %s does not exist' % directory)
    try:
        fd, probe = tempfile.mkstemp(prefix='.sparc-probe-', dir=directory)
    except OSError as e:
        raise exception.DiskImageError(
            dst, 'destination directory %s is not writable (%s)'
            % (directory, e.strerror)) from e
    os.close(fd)
    os.unlink(probe)
