"""Fuzz targets for a save image read while it is written
(:mod:`sparc_nova.checkpoint.stream_follow`) and for the decompression
front end of compressed save images (:mod:`~sparc_nova.checkpoint.formats`,
:mod:`~sparc_nova.checkpoint.compression`).

Each target must return or raise a documented clear error
(:class:`sparc_nova.exception.SparcError`); anything else, a hang or
unbounded memory or disk is a bug. Used by ``tools/fuzz/run.py`` (long
runs) and by ``tests/unit/checkpoint/test_follow_fuzz_regression.py``
(corpus replay).
"""

import bz2
import gzip
import io
import lzma
import os
import tempfile
import time
import types

from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import formats
from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import qemu_stream
from sparc_nova.checkpoint import stream_follow
from sparc_nova import exception
from tools.fuzz import checkpoint_targets

__all__ = ['follow_stream', 'decompress_stream', 'compressed_image',
           'TARGETS']

#: Small limits so that one execution stays fast.
LIMITS = limits_mod.Limits(max_guest_ram=64 * 1024 * 1024,
                           max_sections=4096, max_vmdesc=1 << 20,
                           max_page_copies=4, max_header_data=1 << 20)
#: Seconds a followed parse may wait in all (the writer below finishes in
#: far fewer polls than that; running into it means a hang).
DEADLINE_SECONDS = 20.0
#: Most a compressed image may expand to under :data:`LIMITS` (the
#: bound of a stream of the largest guest they allow).
DECOMPRESSED_BOUND = LIMITS.max_guest_ram // 4096 * 4104 + \
    stream_follow.EXTRA_STREAM_BYTES


#: What :mod:`.stream_follow` sees as :mod:`time` during a fuzz call.
_NO_SLEEP = types.SimpleNamespace(monotonic=time.monotonic,
                                  sleep=lambda seconds: None)


class _Image:
    """A save image in a memory file, written a chunk per poll the way
    libvirt writes it: the partial magic first, the final magic last.
    """

    def __init__(self, image: bytes, step: int):
        self.fd = os.memfd_create('sparc-fuzz-follow')
        self._image = image
        self._step = step
        self._at = 0
        final = image[:len(libvirt_save.MAGIC)]
        self._marked = final == libvirt_save.MAGIC
        if self._marked:
            image = b'LibvirtQemudPart' + image[len(final):]
        self._writing = image
        self.poll()

    def fileno(self) -> int:
        return self.fd

    def poll(self) -> bool:
        """Write the next chunk; True once the writer is done."""
        if self._at < len(self._writing):
            chunk = self._writing[self._at:self._at + self._step]
            os.pwrite(self.fd, chunk, self._at)
            self._at += len(chunk)
            return False
        if self._marked:
            os.pwrite(self.fd, libvirt_save.MAGIC, 0)
        return True

    def close(self) -> None:
        os.close(self.fd)


def follow_stream(data: bytes) -> None:
    """``data[0]`` picks the writer's chunk size (16 bytes to 64 KiB), the
    rest is the image.

    :mod:`.stream_follow` does not sleep between polls during the call
    (the writer advances once per poll, so waiting gains nothing).
    """
    if len(data) < 2:
        return
    image = _Image(data[1:], max(16 << (data[0] % 13), len(data) // 256))
    saved = (stream_follow.POLL_SECONDS, stream_follow.MAX_LAG_SECONDS,
             stream_follow.time)
    stream_follow.POLL_SECONDS = stream_follow.MAX_LAG_SECONDS = 0
    stream_follow.time = _NO_SLEEP
    followed = None
    try:
        follow = stream_follow.Follow.within(DEADLINE_SECONDS, image.poll)
        followed = stream_follow.parse(image, 'fuzz', follow, LIMITS)
        if followed is not None:
            followed.layout.ram.stats()
    except exception.SparcError:
        pass
    finally:
        (stream_follow.POLL_SECONDS, stream_follow.MAX_LAG_SECONDS,
         stream_follow.time) = saved
        if followed is not None:
            followed.mapping.close()
        image.close()
    if time.monotonic() > follow.deadline:
        raise AssertionError('the followed parse ran into its deadline')


def decompress_stream(data: bytes) -> None:
    """A compressed save image: the format is detected, the header read,
    the stream decompressed by the real program into a temporary file in
    the work directory and parsed, as
    :func:`sparc_nova.checkpoint.open_checkpoint` does. The decompressed
    stream must stay within the bound of the limits and the temporary
    must be gone afterwards.
    """
    fmt = formats.LibvirtSaveFormat()
    if not fmt.detect(data[:16]):
        return
    work = _work_dir()
    opened = None
    try:
        opened = fmt.open_stream(io.BytesIO(data), 'fuzz', LIMITS, work)
        size = opened.file.seek(0, os.SEEK_END) - opened.base
        if size > DECOMPRESSED_BOUND:
            raise AssertionError('decompressed to %d bytes' % size)
        opened.file.seek(opened.base)
        stream = opened.file.read()
        qemu_stream.parse(stream, len(stream), 'fuzz', limits=LIMITS)
    except exception.SparcError:
        pass
    finally:
        if opened is not None and opened.temporary is not None:
            opened.temporary.close()
    left = os.listdir(work)
    if left:
        raise AssertionError('left behind in the work directory: %s' % left)


_WORK = []


def _work_dir() -> str:
    """This process's (empty) work directory for decompressed streams."""
    if not _WORK:
        _WORK.append(tempfile.mkdtemp(prefix='sparc-fuzz-decompress-'))
    return _WORK[0]


#: Compressors run in-process to build inputs (the product decompresses
#: with the programs), by libvirt format number.
_COMPRESS = {compression.GZIP: gzip.compress, compression.BZIP2: bz2.compress,
             compression.XZ: lzma.compress}
_DOMAIN = ("<domain type='kvm'><name>fuzz</name><memory unit='KiB'>%d"
           "</memory></domain>\0")


def compressed_image(data: bytes) -> bytes:
    """A compressed save image built from fuzz bytes: ``data[0]`` picks
    the format, ``data[1]`` the guest's memory size in the domain XML and
    ``data[2:4]`` where the compressed stream is cut or corrupted; the
    rest is a plausible stream (:func:`checkpoint_targets.structured`).
    """
    data = data.ljust(4, b'\0')
    fmt = sorted(_COMPRESS)[data[0] % len(_COMPRESS)]
    payload = _COMPRESS[fmt](checkpoint_targets.structured(data[4:]))
    damage = int.from_bytes(data[2:4], 'little')
    if data[0] & 0x80 and payload:
        at = damage % len(payload)
        payload = payload[:at] + bytes([payload[at] ^ 0x5a]) + \
            payload[at + 1:]
    elif data[0] & 0x40:
        payload = payload[:damage % (len(payload) + 1)]
    xml = (_DOMAIN % (4 << (data[1] % 16))).encode()
    xml_data = xml + b'<cookie/>\0'
    header = libvirt_save.HEADER.pack(libvirt_save.MAGIC, 2, len(xml_data),
                                      1, fmt, len(xml), *([0] * 14))
    return header + xml_data + payload


def decompress_built(data: bytes) -> None:
    """:func:`decompress_stream` of :func:`compressed_image`."""
    decompress_stream(compressed_image(data))


TARGETS = {'follow': follow_stream, 'decompress': decompress_stream,
           'decompress-structured': decompress_built}
