"""Checkpoint container formats, as stevedore plugins.

A format recognises its files by their first bytes and hands back where
the raw QEMU migration stream lies (decompressing it first if it must),
then reads the stream's layout and places its RAM in guest physical
memory. A guest memory dump (an ELF core) has no migration stream: its
plugin reads the whole file as the "stream" and describes its segments
as RAM (:mod:`.memory_dump`). A qcow2 disk image holds one stream per
internal snapshot made with memory: its plugin extracts the one named by
``snapshot`` (:mod:`.qcow2_vmstate`) and writes a scrub back into the
image itself (:attr:`OpenedStream.container`).
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
from sparc_nova.checkpoint import cpu_state
from sparc_nova.checkpoint import elf_core
from sparc_nova.checkpoint import kdump
from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import machine as machine_mod
from sparc_nova.checkpoint import memory_dump
from sparc_nova.checkpoint import qcow2
from sparc_nova.checkpoint import qcow2_vmstate
from sparc_nova.checkpoint import qemu_stream
from sparc_nova.checkpoint import stream_follow
from sparc_nova.checkpoint import tempfiles
from sparc_nova import exception

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
    :ivar container: what writes a scrub back when the stream is a part
        of a larger file (a qcow2 snapshot's
        :class:`~.qcow2_vmstate.Vmstate`), else None.
    """

    file: typing.BinaryIO
    base: int
    header: object = None
    compressed: int = 0
    label: str = ''
    temporary: typing.Any = None
    container: typing.Any = None


class CheckpointFormat:
    """Interface of a checkpoint format plugin."""

    #: Short name, shown by ``sparc checkpoint info``.
    name = ''
    #: Whether QEMU can resume the guest from it (a scrub then plants a
    #: SIGKILL in the excluded processes; a memory dump gets none).
    restorable = True
    #: Whether a page's record is its 4096 bytes and nothing else (a
    #: rewrite then never turns a page into a shorter record).
    pages_only = False
    #: Whether the file holds several checkpoints, one of which is named
    #: by ``snapshot`` (a qcow2 image's internal snapshots).
    has_snapshots = False

    def detect(self, head: bytes) -> bool:
        """Whether a file starting with ``head`` (16 bytes) is ours."""
        raise NotImplementedError

    def open_stream(self, f: typing.BinaryIO, path: str,
                    limits: limits_mod.Limits,
                    work_dir: str | None,
                    snapshot: str | None = None) -> OpenedStream:
        """Parse the container and locate the stream (of internal
        snapshot ``snapshot`` for a format that :attr:`has_snapshots`).
        """
        raise NotImplementedError

    def compressed(self, f: typing.BinaryIO, path: str,
                   limits: limits_mod.Limits) -> bool:
        """Whether :meth:`open_stream` would decompress the stream."""
        return False

    def parse_layout(self, opened: OpenedStream, view: memoryview,
                     size: int, path: str, limits: limits_mod.Limits,
                     progress=None):
        """The layout of the stream ``view`` (``size`` bytes) that
        :meth:`open_stream` located: a
        :class:`~.qemu_stream.StreamLayout` (sections, RAM index,
        devices, machine type) or its equivalent.
        """
        return qemu_stream.parse(view, size, path, opened.base, opened.label,
                                 limits, progress)

    def ram_ranges(self, layout, path: str) -> list[machine_mod.RamRange]:
        """Where the layout's RAM blocks lie in guest physical memory:
        ``pc.ram`` by the machine type's rules.
        """
        ram = layout.ram
        if machine_mod.RAM_BLOCK not in ram.by_name:
            raise exception.UnsupportedCheckpoint(
                path, 'no %r RAM block (blocks: %s)' % (
                    machine_mod.RAM_BLOCK,
                    ', '.join(b.name for b in ram.blocks)))
        return machine_mod.ram_layout(
            layout.machine, ram.block(machine_mod.RAM_BLOCK).length, path)

    def describe(self, layout) -> dict:
        """Facts of this format for ``sparc checkpoint info``."""
        return {}

    def cpus(self, layout, view) -> list[cpu_state.CpuState]:
        """The vCPUs' registers (``view``: the stream's bytes)."""
        return cpu_state.cpus(layout.devices)


class LibvirtSaveFormat(CheckpointFormat):
    """libvirt's QEMU save image (``virsh save``, managed save)."""

    name = 'libvirt-save'

    def detect(self, head: bytes) -> bool:
        return libvirt_save.is_save_image(head)

    def compressed(self, f, path, limits):
        return bool(libvirt_save.read_header(f, path, limits).compressed)

    def open_stream(self, f, path, limits, work_dir, snapshot=None):
        header = libvirt_save.read_header(f, path, limits)
        if not header.compressed:
            return OpenedStream(f, header.stream_offset, header)
        tmp = _stream_temporary(path, work_dir)
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

    def open_stream(self, f, path, limits, work_dir, snapshot=None):
        return OpenedStream(f, 0)


class ElfDumpFormat(CheckpointFormat):
    """A guest memory dump: QEMU's ``dump-guest-memory`` ELF core
    (``virsh dump --memory-only --format elf``). Read, scrubbed and
    verified like a save image; it cannot be restored, so no process is
    killed in it.
    """

    name = 'elf-dump'
    restorable = False
    pages_only = True

    def detect(self, head: bytes) -> bool:
        return elf_core.is_elf(head)

    def open_stream(self, f, path, limits, work_dir, snapshot=None):
        return OpenedStream(f, 0)

    def parse_layout(self, opened, view, size, path, limits, progress=None):
        return memory_dump.layout(elf_core.read_core(opened.file, path,
                                                     limits))

    def ram_ranges(self, layout, path):
        return memory_dump.ram_ranges(layout)

    def describe(self, layout):
        return layout.describe()

    def cpus(self, layout, view):
        return memory_dump.cpus(layout, view)


class KdumpFormat(CheckpointFormat):
    """A kdump-compressed guest memory dump (``virsh dump --memory-only
    --format kdump-zlib|kdump-lzo|kdump-snappy``), flattened or seekable
    (:mod:`.kdump`). Its pages are decompressed into a private temporary
    file laid out as an ELF core's segments, read like an ELF dump; a
    scrub writes a new dump (changed pages stored raw). It cannot be
    restored, so no process is killed in it.
    """

    name = 'kdump-compressed'
    restorable = False
    pages_only = True

    def detect(self, head: bytes) -> bool:
        return kdump.is_kdump(head)

    def compressed(self, f, path, limits):
        # The pages are always decompressed: the file itself is no image.
        return True

    def open_stream(self, f, path, limits, work_dir, snapshot=None):
        tmp = _stream_temporary(path, work_dir)
        try:
            dump, core, base = kdump.read(f, path, tmp, limits)
            tmp.flush()
        except BaseException:
            tmp.close()
            raise
        return OpenedStream(tmp, 0, label=' (decompressed pages of the dump)',
                            temporary=tmp,
                            container=kdump.Container(dump, core, base))

    def parse_layout(self, opened, view, size, path, limits, progress=None):
        lay = memory_dump.layout(opened.container.core)
        lay.kdump = opened.container.dump
        return lay

    def ram_ranges(self, layout, path):
        return memory_dump.ram_ranges(layout)

    def describe(self, layout):
        return {'kdump': layout.kdump.describe(),
                'restore': 'none (a memory dump cannot be restored)'}

    def cpus(self, layout, view):
        return memory_dump.cpus(layout, view)


class Qcow2SnapshotFormat(CheckpointFormat):
    """The memory state of an internal snapshot of a qcow2 disk image
    (``virsh snapshot-create-as DOM NAME`` of a running guest, QEMU's
    ``savevm``), named by ``snapshot``. The vmstate is extracted into a
    private temporary file and parsed as a migration stream; a scrub is
    written back into the snapshot's own clusters (in place through the
    journal, or into a copy of the whole image), restored by ``virsh
    snapshot-revert``.
    """

    name = 'qcow2-snapshot'
    has_snapshots = True

    def detect(self, head: bytes) -> bool:
        return qcow2.is_qcow2(head)

    def compressed(self, f, path, limits):
        # The stream is always extracted: the file itself is no stream.
        return True

    def open_stream(self, f, path, limits, work_dir, snapshot=None):
        if snapshot is None:
            names = [s['name'] for s in qcow2_vmstate.list_snapshots(
                f, path, limits)['snapshots'] if s['vm_state_size']]
            raise exception.CheckpointError(
                path, 'a qcow2 disk image: name the internal snapshot with '
                      '--snapshot (snapshots with memory: %s)'
                % (', '.join(names) or 'none'))
        vm = qcow2_vmstate.open_vmstate(f, path, snapshot, limits)
        tmp = _stream_temporary(path, work_dir)
        try:
            vm.extract(tmp)
        except BaseException:
            tmp.close()
            raise
        return OpenedStream(tmp, 0, label=' (vmstate of snapshot %r)'
                            % vm.snapshot.name, temporary=tmp, container=vm)


def _stream_temporary(path: str, work_dir: str | None):
    """A new private temporary file for a stream extracted from ``path``.
    Named with our pid: the leftover of a killed run (the whole
    unscrubbed guest RAM) is found and removed by the sweep.
    """
    return tempfile.NamedTemporaryFile(
        prefix=tempfiles.stream_prefix(),
        dir=work_dir or os.path.dirname(os.path.abspath(path)))


def load() -> list[CheckpointFormat]:
    """Every installed format plugin, in name order."""
    mgr = extension.ExtensionManager(NAMESPACE, invoke_on_load=True)
    return sorted((ext.obj for ext in mgr), key=lambda fmt: fmt.name)
