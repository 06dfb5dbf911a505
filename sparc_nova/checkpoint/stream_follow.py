"""Parse a libvirt save image while libvirt and QEMU are still writing it.

libvirt writes a save image front to back: its header and the domain XML
first (magic ``LibvirtQemudPart``), then QEMU's migration stream; when
QEMU is done libvirt rewrites the magic to ``LibvirtQemudSave`` (and then
stops QEMU, which for a large guest takes as long again). A checkpoint
opened with a :class:`Follow` (:func:`.checkpoint.open_checkpoint`) is
parsed by the parser of finished files (:mod:`.qemu_stream`) as QEMU
writes it, waiting for bytes, so that the parse is done by the time the
image is complete.

The stream is complete when the magic says so, or when the caller's
``done()`` says the writer has gone (e.g. the save call returned); only
then is its vmdesc read and a short stream an error. Every wait is
bounded by the :class:`Follow`'s deadline.
"""

import dataclasses
import mmap
import os
import time
import typing
from xml.etree import ElementTree

import numpy as np

from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import qemu_stream
from sparc_nova import exception

#: Seconds between two looks at the file while waiting.
POLL_SECONDS = 0.004
#: Bytes of new stream to wait for before mapping it (unless the writer
#: is slower than :data:`MAX_LAG_SECONDS` to provide them).
STEP = 16 * 1024 * 1024
#: Longest wait for :data:`STEP` more bytes once what is needed is there.
MAX_LAG_SECONDS = 0.05
#: Stream bytes allowed beyond the guest RAM's page records.
EXTRA_STREAM_BYTES = 512 * 1024 * 1024


@dataclasses.dataclass
class Follow:
    """How to follow a save image being written.

    :ivar deadline: ``time.monotonic()`` after which waiting is an error.
    :ivar done: returns True once the writer has gone (its image is then
        as complete as it will be).
    :ivar completed_at: set to ``time.monotonic()`` when the image was
        found complete.
    """

    deadline: float
    done: typing.Callable[[], bool] = lambda: False
    completed_at: float | None = None

    @classmethod
    def within(cls, seconds: float, done=None) -> 'Follow':
        return cls(time.monotonic() + seconds, done or (lambda: False))


def _timed_out(path: str, what: str, offset: int):
    return exception.CheckpointFormatError(
        path, 'gave up waiting for %s: the save did not finish in time'
        % what, offset)


def _complete_now(fd: int, follow: Follow) -> bool:
    """Whether the image open as ``fd`` is complete: libvirt has marked
    it so, or the writer has gone. Records when that was first seen.
    """
    marked = os.pread(fd, len(libvirt_save.MAGIC), 0) == libvirt_save.MAGIC
    if not (marked or follow.done()):
        return False
    if follow.completed_at is None:
        follow.completed_at = time.monotonic()
    return True


def _wait_complete(fd: int, path: str, follow: Follow,
                   offset: int = 0) -> None:
    """Wait until the image open as ``fd`` is complete (``offset`` is
    where a timeout error points).
    """
    while not _complete_now(fd, follow):
        if time.monotonic() >= follow.deadline:
            raise _timed_out(path, 'the end of the save', offset)
        time.sleep(POLL_SECONDS)


class GrowingReader(qemu_stream.StreamReader):
    """A :class:`~.qemu_stream.StreamReader` over a stream that libvirt
    and QEMU are still writing.

    ``need`` waits for the bytes it asks for; ``size`` is ``bound`` until
    the image is complete, then the stream's final size.
    """

    growing = True

    def __init__(self, fd: int, path: str, base: int, bound: int,
                 follow: Follow):
        self.path = path
        self.base = base
        self._fd = fd
        self._bound = bound
        self._follow = follow
        self._final = None
        self._mapped = 0
        self.mapping = None
        self.buf = memoryview(b'')
        self.u8arr = np.zeros(0, dtype=np.uint8)
        self._remap()

    @property
    def size(self) -> int:
        return self._final if self._final is not None else self._bound

    def available(self) -> int:
        return self._mapped

    def _written(self) -> int:
        return max(0, os.fstat(self._fd).st_size - self.base)

    def _remap(self) -> None:
        size = min(self._written(), self._bound)
        if size <= self._mapped:
            return
        mm = mmap.mmap(self._fd, self.base + size, prot=mmap.PROT_READ)
        self.mapping = mm
        self.buf = memoryview(mm)[self.base:]
        self.u8arr = np.frombuffer(self.buf, dtype=np.uint8)
        self._mapped = size

    def _complete(self) -> None:
        self._remap()
        self._final = self._mapped

    def need(self, pos: int, n: int, what: str) -> None:
        if self._final is None and pos >= 0 and n >= 0 and \
                pos + n > self._mapped:
            self._wait_for(pos + n)
        super().need(pos, n, what)

    def _wait_for(self, want: int) -> None:
        since = None
        while time.monotonic() < self._follow.deadline:
            if _complete_now(self._fd, self._follow):
                self._complete()
                return
            written = self._written()
            if written >= want:
                now = time.monotonic()
                since = since or now
                if written >= want + STEP or now - since > MAX_LAG_SECONDS:
                    self._remap()
                    return
            time.sleep(POLL_SECONDS)
        raise _timed_out(self.path, '%d bytes of stream' % want,
                         self.file_offset(self._mapped))

    def wait_complete(self) -> None:
        _wait_complete(self._fd, self.path, self._follow,
                       self.file_offset(self._mapped))
        self._complete()


class _Positional:
    """Reads of an open file by offset (``os.pread``), leaving the file
    object's own buffer and position alone: a buffered reader that had
    read the header while the image was incomplete would go on serving
    that copy after libvirt rewrote it.
    """

    def __init__(self, fd: int):
        self._fd = fd
        self._pos = 0

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise ValueError('only absolute seeks')
        self._pos = pos
        return pos

    def read(self, n: int) -> bytes:
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        return data


def wait_header(f, path: str, follow: Follow,
                limits: limits_mod.Limits = limits_mod.DEFAULT
                ) -> libvirt_save.SaveHeader:
    """The libvirt header of the image open in ``f``, once libvirt has
    written it (the image may still be incomplete). Read by offset: ``f``
    itself is not read.
    """
    fd = f.fileno()
    while True:
        written = os.fstat(fd).st_size
        gone = follow.done()
        if written >= libvirt_save.HEADER_SIZE:
            data_len = libvirt_save.HEADER.unpack(
                os.pread(fd, libvirt_save.HEADER_SIZE, 0))[2]
            if written >= libvirt_save.HEADER_SIZE + data_len or \
                    data_len > limits.max_header_data or gone:
                return libvirt_save.read_header(_Positional(fd), path,
                                                limits, partial=True)
        elif gone:
            raise exception.CheckpointFormatError(
                path, 'the save ended before libvirt wrote its header',
                written)
        if time.monotonic() >= follow.deadline:
            raise _timed_out(path, 'the libvirt header', written)
        time.sleep(POLL_SECONDS)


def wait_complete(f, path: str, follow: Follow) -> None:
    """Wait until the image open in ``f`` is complete."""
    _wait_complete(f.fileno(), path, follow)


def stream_bound(header: libvirt_save.SaveHeader,
                 limits: limits_mod.Limits = limits_mod.DEFAULT) -> int:
    """Largest stream accepted for the image of ``header``, in bytes: a
    record for every page of the guest's RAM (the domain XML's
    ``<memory>``, in KiB as libvirt writes it) and room for the other RAM
    blocks (video memory, firmware) and the device state.
    """
    ram = limits.max_guest_ram
    try:
        mem = ElementTree.fromstring(header.domain_xml).findtext('memory')
        ram = min(ram, int(mem) * 1024)
    except (ElementTree.ParseError, TypeError, ValueError):
        pass
    return ram // 4096 * 4104 + EXTRA_STREAM_BYTES


@dataclasses.dataclass
class Followed:
    """A stream parsed while it was written: its layout and a read-only
    mapping of the whole finished file.
    """

    layout: qemu_stream.StreamLayout
    mapping: mmap.mmap


def parse(f, path: str, follow: Follow,
          limits: limits_mod.Limits = limits_mod.DEFAULT
          ) -> Followed | None:
    """Parse the stream of the libvirt save image open in ``f`` while it
    is written; returns when the image is complete.

    :returns: the layout :func:`~.qemu_stream.parse` would give for the
        finished image, with the file's mapping, or None for a compressed
        image (which can only be read once complete; this waits for
        that).
    :raises CheckpointError: malformed, larger than :func:`stream_bound`,
        or not finished before the deadline.
    """
    head = wait_header(f, path, follow, limits)
    if head.compressed:
        wait_complete(f, path, follow)
        return None
    reader = GrowingReader(f.fileno(), path, head.stream_offset,
                           stream_bound(head, limits), follow)
    layout = qemu_stream.StreamParser(reader, limits).parse()
    return Followed(layout, reader.mapping)
