"""Checkpoint container formats, as stevedore plugins.

A format recognises its files by their first bytes and hands back where
the raw QEMU migration stream lies (decompressing it first if it must).
Plugins are registered in setup.cfg under ``sparc_nova.checkpoint.formats``;
a new container (another hypervisor's save file wrapping a QEMU stream) is
a new class plus one line there.
"""

import dataclasses
import os
import tempfile
import typing

from stevedore import extension

from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import stream_follow
from sparc_nova.checkpoint import tempfiles

NAMESPACE = 'sparc_nova.checkpoint.formats'


@dataclasses.dataclass
class OpenedStream:
    """Where the raw migration stream of a checkpoint is.

    :ivar file: an open binary file holding the stream.
    :ivar base: offset of the stream in ``file``.
    :ivar header: the container's parsed header, if it has one.
    :ivar compressed: the container's compression (0 = raw).
    :ivar label: added to error messages about stream offsets (e.g. that
        they are offsets in the decompressed stream).
    :ivar temporary: a temporary file to close (and so delete) with the
        checkpoint.
    """

    file: typing.BinaryIO
    base: int
    header: object = None
    compressed: int = 0
    label: str = ''
    temporary: typing.Any = None


class CheckpointFormat:
    """Interface of a checkpoint format plugin."""

    #: Short name, shown by ``sparc checkpoint info``.
    name = ''

    def detect(self, head: bytes) -> bool:
        """Whether a file starting with ``head`` (16 bytes) is ours."""
        raise NotImplementedError

    def open_stream(self, f: typing.BinaryIO, path: str,
                    limits: limits_mod.Limits,
                    work_dir: str | None) -> OpenedStream:
        """Parse the container and locate the stream."""
        raise NotImplementedError

    def compressed(self, f: typing.BinaryIO, path: str,
                   limits: limits_mod.Limits) -> bool:
        """Whether :meth:`open_stream` would decompress the stream."""
        return False


class LibvirtSaveFormat(CheckpointFormat):
    """libvirt's QEMU save image (``virsh save``, managed save)."""

    name = 'libvirt-save'

    def detect(self, head: bytes) -> bool:
        return libvirt_save.is_save_image(head)

    def compressed(self, f, path, limits):
        return bool(libvirt_save.read_header(f, path, limits).compressed)

    def open_stream(self, f, path, limits, work_dir):
        header = libvirt_save.read_header(f, path, limits)
        if not header.compressed:
            return OpenedStream(f, header.stream_offset, header)
        # Named with our pid: the leftover of a killed run (the whole
        # unscrubbed guest RAM) is found and removed by the sweep.
        tmp = tempfile.NamedTemporaryFile(
            prefix=tempfiles.stream_prefix(),
            dir=work_dir or os.path.dirname(os.path.abspath(path)))
        try:
            compression.decompress(
                header.compressed, f, header.stream_offset, tmp, path,
                run_as=(limits.helper_user, limits.helper_group),
                max_bytes=stream_follow.stream_bound(header, limits))
            tmp.flush()
        except BaseException:
            tmp.close()
            raise
        return OpenedStream(tmp, 0, header, header.compressed,
                            ' (decompressed %s stream)' % header.compression,
                            tmp)


class QemuStreamFormat(CheckpointFormat):
    """A bare QEMU migration stream (``migrate "exec:cat > FILE"``)."""

    name = 'qemu-stream'

    def detect(self, head: bytes) -> bool:
        return head[:4] == b'QEVM'

    def open_stream(self, f, path, limits, work_dir):
        return OpenedStream(f, 0)


def load() -> list[CheckpointFormat]:
    """Every installed format plugin, in name order."""
    mgr = extension.ExtensionManager(NAMESPACE, invoke_on_load=True)
    return sorted((ext.obj for ext in mgr), key=lambda fmt: fmt.name)
