"""Open a memory checkpoint: a libvirt save image, a bare QEMU stream, a
guest memory dump (ELF core or kdump-compressed) or an internal snapshot
of a qcow2 disk image.

:class:`Checkpoint` ties the format pieces together: the libvirt header
(:mod:`.libvirt_save`), decompression (:mod:`.compression`), the stream
(:mod:`.qemu_stream`), the machine layout (:mod:`.machine`), the guest
physical view (:mod:`.physmem`) and the vCPUs (:mod:`.cpu_state`).
"""

import mmap
import os
import typing
import xml.etree.ElementTree as ET

from sparc_nova.checkpoint import formats
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import physmem
from sparc_nova.checkpoint import qcow2_vmstate
from sparc_nova.checkpoint import stream_follow
from sparc_nova import exception


class Checkpoint:
    """A parsed memory checkpoint, read-only, backed by an mmap.

    Use as a context manager, or call :meth:`close`: a compressed image is
    decompressed into a temporary file that close() removes.

    :ivar path: the checkpoint file.
    :ivar kind: the format plugin's name (``libvirt-save``,
        ``qemu-stream``, ``elf-dump``).
    :ivar restorable: whether QEMU can resume the guest from it (a guest
        memory dump cannot).
    :ivar pages_only: whether a page's record is its bytes alone (a dump:
        a rewrite keeps every page record's size).
    :ivar header: the :class:`~.libvirt_save.SaveHeader` (libvirt only).
    :ivar layout: the :class:`~.qemu_stream.StreamLayout` (a
        :class:`~.memory_dump.DumpLayout` for a memory dump).
    :ivar memory: the :class:`~.physmem.GuestPhysicalMemory`.
    :ivar stream_base: offset of the raw stream in :attr:`stream_file`.
    :ivar snapshot: the internal snapshot read (qcow2 images), or None.
    :ivar container: what writes a scrub back into a file that holds
        more than the stream (a qcow2 snapshot's
        :class:`~.qcow2_vmstate.Vmstate`, a kdump-compressed dump's
        :class:`~.kdump.Container`), or None.
    """

    def __init__(self, path: str, work_dir: str | None = None,
                 limits: limits_mod.Limits = limits_mod.DEFAULT,
                 progress=None, file=None,
                 follow: stream_follow.Follow | None = None,
                 snapshot: str | None = None):
        self.path = path
        self.limits = limits
        self.header = None
        self.snapshot = snapshot
        self.container = None
        self._tmp = None
        self._file = None
        self._mm = None
        try:
            self._open(work_dir, progress, file, follow)
        except BaseException:
            self.close()
            raise

    def _open(self, work_dir, progress, f, follow):
        path = self.path
        if f is None:
            f = open_file(path)
        self._file = f
        followed = None
        if follow is not None:
            followed = stream_follow.parse(f, path, follow, self.limits)
            # Drop whatever ``f`` buffered while the image was incomplete
            # (a seek from the end always empties a buffered reader).
            f.seek(0, os.SEEK_END)
        fmt = _format(f, path)
        self.kind = fmt.name
        self.restorable = fmt.restorable
        self.pages_only = fmt.pages_only
        self._format = fmt
        if self.snapshot is not None and not fmt.has_snapshots:
            raise exception.CheckpointError(
                path, 'a %s holds no internal snapshots: --snapshot applies '
                      'to qcow2 disk images' % fmt.name)
        opened = fmt.open_stream(f, path, self.limits, work_dir,
                                 self.snapshot)
        self._tmp = opened.temporary
        self.container = opened.container
        self.header = opened.header
        stream_file, base = opened.file, opened.base
        self.stream_file = stream_file
        self.stream_base = base
        size = os.fstat(stream_file.fileno()).st_size
        if size <= base:
            raise exception.CheckpointFormatError(
                path, 'file ends before the memory stream starts', size)
        self.stream_size = size - base
        if followed is not None:
            if followed.layout.size != self.stream_size or \
                    len(followed.mapping) != size:
                raise exception.CheckpointFormatError(
                    path, 'the image changed after it was complete (%d '
                          'stream bytes, %d when followed)'
                    % (self.stream_size, followed.layout.size), size)
            self._mm = followed.mapping
        else:
            self._mm = mmap.mmap(stream_file.fileno(), 0,
                                 prot=mmap.PROT_READ)
        self._view = memoryview(self._mm)[base:]
        self.layout = followed.layout if followed else fmt.parse_layout(
            opened, self._view, self.stream_size, path, self.limits,
            progress)
        ranges = fmt.ram_ranges(self.layout, path)
        self.memory = physmem.GuestPhysicalMemory(self._view, self.layout.ram,
                                                  ranges)
        self.cpus = fmt.cpus(self.layout, self._view)

    @property
    def stream(self) -> memoryview:
        """The raw (decompressed) migration stream."""
        return self._view

    @property
    def compressed(self) -> int:
        return self.header.compressed if self.header else 0

    def domain_summary(self) -> dict:
        """Name, UUID, memory, vCPUs and machine type from the domain XML
        (libvirt images only).
        """
        if not self.header:
            return {}
        try:
            root = ET.fromstring(self.header.domain_xml)
        except ET.ParseError as e:
            return {'error': 'domain XML does not parse: %s' % e}
        os_type = root.find('./os/type')

        def text(xpath):
            el = root.find(xpath)
            return el.text if el is not None else None
        return {'name': text('name'), 'uuid': text('uuid'),
                'type': root.get('type'),
                'memory_kib': text('memory'), 'vcpus': text('vcpu'),
                'machine': os_type.get('machine') if os_type is not None
                else None}

    def info(self) -> dict:
        """Everything ``sparc checkpoint info`` shows."""
        lay = self.layout
        out = {'path': self.path, 'kind': self.kind,
               'stream_offset': self.stream_base
               if not self.compressed and self.container is None else None,
               'stream_size': self.stream_size,
               'machine': lay.machine}
        if self.header:
            h = self.header
            out['header'] = {'version': h.version, 'data_len': h.data_len,
                             'was_running': h.was_running,
                             'compression': h.compression}
            out['domain'] = self.domain_summary()
        out['ram_blocks'] = self.layout.ram.stats()
        out['ram_index'] = self.layout.ram.summary()
        out['guest_ram'] = [{'gpa': '0x%x' % r.gpa, 'block': r.block,
                             'block_offset': '0x%x' % r.block_offset,
                             'length': r.length}
                            for r in self.memory.ranges]
        out['sections'] = len(lay.sections)
        out['devices'] = len(lay.devices)
        if lay.device_state_note:
            out['device_state_note'] = lay.device_state_note
        out.update(self._format.describe(lay))
        if self.container is not None and self.snapshot is not None:
            out['qcow2'] = self.container.describe()
            out['restore'] = ('virsh snapshot-revert DOMAIN %s (the domain '
                              'shut off while it is scrubbed)'
                              % self.container.snapshot.name)
        out['vcpus'] = [c.as_dict() for c in self.cpus]
        return out

    def close(self) -> None:
        if getattr(self, '_view', None) is not None:
            self._view.release()
            self._view = None
        if getattr(self, 'memory', None) is not None:
            self.memory = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            self._mm = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_file(path: str) -> typing.BinaryIO:
    """``path`` opened for reading, unless an in-place scrub of it was
    interrupted (it must be recovered first).
    """
    if journal.pending(path):
        raise exception.CheckpointError(
            path, 'an in-place scrub of this file was interrupted; run '
                  '"sparc checkpoint recover %s" to finish it' % path)
    try:
        return open(path, 'rb')
    except OSError as e:
        raise exception.CheckpointError(path, 'cannot open: %s' % e.strerror)


def _format(f, path: str) -> formats.CheckpointFormat:
    """The format plugin of the file open in ``f`` (read from its start;
    left just past the 16 bytes that identify it).
    """
    f.seek(0)
    head = f.read(16)
    fmt = next((x for x in formats.load() if x.detect(head)), None)
    if fmt is None:
        raise exception.CheckpointFormatError(
            path, 'not a libvirt save image, a QEMU migration stream, an ELF '
                  'memory dump, a kdump-compressed memory dump or a qcow2 '
                  'disk image (starts with %r)'
            % head[:16], 0)
    return fmt


def restorable(path: str) -> bool:
    """Whether the checkpoint at ``path`` can be restored (a guest memory
    dump cannot).

    :raises CheckpointError: it cannot be opened, or is not a checkpoint.
    """
    with open_file(path) as f:
        return _format(f, path).restorable


def stream_is_raw(f, path: str,
                  limits: limits_mod.Limits = limits_mod.DEFAULT) -> bool:
    """Whether the checkpoint open in ``f`` holds its migration stream
    uncompressed, so that the file itself can be parsed. Leaves ``f`` at
    its start.

    :raises CheckpointFormatError: not a checkpoint, or a bad header.
    """
    try:
        return not _format(f, path).compressed(f, path, limits)
    finally:
        f.seek(0)


def open_checkpoint(path: str, work_dir: str | None = None,
                    limits: limits_mod.Limits = limits_mod.DEFAULT,
                    progress=None, file=None,
                    follow: stream_follow.Follow | None = None,
                    snapshot: str | None = None) -> Checkpoint:
    """Open and parse a memory checkpoint.

    :param file: an open binary file to read instead of opening ``path``
        (which then only names the checkpoint in messages); the
        checkpoint closes it. No interrupted-scrub journal is looked for:
        the caller that opened the file did that.
    :param follow: the image (a libvirt save image) is still being
        written: parse it as it is written and return once it is complete
        (:mod:`.stream_follow`).
    :param snapshot: the internal snapshot of a qcow2 disk image to read
        (its memory state); refused for any other format.
    """
    return Checkpoint(path, work_dir, limits, progress, file, follow,
                      snapshot)


def internal_snapshots(path: str,
                       limits: limits_mod.Limits = limits_mod.DEFAULT
                       ) -> dict | None:
    """The internal snapshots of ``path`` when it is a qcow2 disk image
    (:func:`.qcow2_vmstate.list_snapshots`), else None.

    :raises CheckpointError: it cannot be opened, or a malformed image.
    """
    with open_file(path) as f:
        if not _format(f, path).has_snapshots:
            return None
        return qcow2_vmstate.list_snapshots(f, path, limits)
