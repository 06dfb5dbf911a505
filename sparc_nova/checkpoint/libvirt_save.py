"""The libvirt QEMU save image: header, domain XML, cookie, memory stream.

Layout (libvirt ``src/qemu/qemu_saveimage.h``, little endian)::

    char magic[16]          "LibvirtQemudSave" ("LibvirtQemudPart" while a
                            save is being written)
    uint32 version          2 (1 in old images: never compressed)
    uint32 data_len         bytes of XML data that follow the header
    uint32 was_running
    uint32 compressed       0 raw, else a compression.* format
    uint32 cookieOffset     offset of the cookie XML within the data
    uint32 unused[14]
    data_len bytes          domain XML, NUL, cookie XML, NUL, zero padding
    ...                     the QEMU migration stream (compressed as said)
"""

import dataclasses
import struct

from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova import exception

MAGIC = b'LibvirtQemudSave'
MAGIC_PARTIAL = b'LibvirtQemudPart'
HEADER = struct.Struct('<16s5I14I')
HEADER_SIZE = HEADER.size   # 92
SUPPORTED_VERSIONS = (1, 2)


@dataclasses.dataclass
class SaveHeader:
    """The parsed header of a libvirt save image."""

    version: int
    data_len: int
    was_running: bool
    compressed: int
    cookie_offset: int
    domain_xml: str
    cookie_xml: str
    #: The raw header and XML data, written back unchanged on rewrite.
    raw: bytes

    @property
    def stream_offset(self) -> int:
        """Where the (possibly compressed) QEMU stream starts in the file."""
        return HEADER_SIZE + self.data_len

    @property
    def compression(self) -> str:
        return compression.name(self.compressed)


def is_save_image(head: bytes) -> bool:
    return head[:16] in (MAGIC, MAGIC_PARTIAL)


def read_header(f, path: str,
                limits: limits_mod.Limits = limits_mod.DEFAULT,
                partial: bool = False) -> SaveHeader:
    """Parse the header and XML of an open save image.

    :param partial: accept an image libvirt is still writing (magic
        ``LibvirtQemudPart``).
    """
    f.seek(0)
    head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        raise exception.CheckpointFormatError(
            path, 'file is %d bytes, shorter than a libvirt save header '
                  '(%d bytes)' % (len(head), HEADER_SIZE), len(head))
    fields = HEADER.unpack(head)
    magic, version, data_len, was_running, compressed, cookie_off = \
        fields[:6]
    if magic == MAGIC_PARTIAL and not partial:
        raise exception.CheckpointFormatError(
            path, 'incomplete save image (magic LibvirtQemudPart): libvirt '
                  'did not finish writing it', 0)
    if magic not in (MAGIC, MAGIC_PARTIAL):
        raise exception.CheckpointFormatError(
            path, 'not a libvirt save image (magic %r)' % magic[:16], 0)
    if version not in SUPPORTED_VERSIONS:
        raise exception.UnsupportedCheckpoint(
            path, 'save image header version %d is not supported (known: '
                  '%s)' % (version, ', '.join(map(str, SUPPORTED_VERSIONS))),
            16)
    if version == 1 and compressed:
        raise exception.CheckpointFormatError(
            path, 'version 1 header cannot be compressed', 28)
    if compressed not in compression.NAMES:
        raise exception.UnsupportedCheckpoint(
            path, 'unknown compression format %d' % compressed, 28)
    if data_len > limits.max_header_data:
        raise exception.LimitExceeded(
            path, 'header declares %d bytes of XML, more than the limit %d'
                  % (data_len, limits.max_header_data), 20)
    data = f.read(data_len)
    if len(data) < data_len:
        raise exception.CheckpointFormatError(
            path, 'file ends inside the domain XML (header declares %d '
                  'bytes, %d present)' % (data_len, len(data)),
            HEADER_SIZE + len(data))
    if cookie_off and cookie_off >= data_len:
        raise exception.CheckpointFormatError(
            path, 'cookie offset %d lies outside the %d bytes of XML'
                  % (cookie_off, data_len), 32)
    xml_end = cookie_off if cookie_off else data_len
    domain_xml = data[:xml_end].split(b'\0', 1)[0]
    cookie_xml = data[cookie_off:].split(b'\0', 1)[0] if cookie_off else b''
    try:
        return SaveHeader(version=version, data_len=data_len,
                          was_running=bool(was_running),
                          compressed=compressed, cookie_offset=cookie_off,
                          domain_xml=domain_xml.decode('utf-8'),
                          cookie_xml=cookie_xml.decode('utf-8'),
                          raw=head + data)
    except UnicodeDecodeError as e:
        raise exception.CheckpointFormatError(
            path, 'domain XML is not UTF-8', HEADER_SIZE + e.start)
