"""The QEMU migration stream (``QEVM``, version 3), as ``virsh save`` and
managed save write it.

Big endian throughout (QEMU ``migration/savevm.c`` and ``migration/ram.c``)::

    be32 0x5145564d 'QEVM', be32 3
    0x07 CONFIGURATION  be32 len, machine type name [subsections]
    0x01 START / 0x04 FULL  be32 section_id, u8 len, idstr,
                            be32 instance_id, be32 version_id, payload
    0x02 PART / 0x03 END    be32 section_id, payload
    0x7e FOOTER             be32 section_id (after every section)
    0x00 EOF
    0x06 VMDESCRIPTION      be32 len, JSON (see vmdesc.py)

:class:`StreamParser` reads the sections in order, one handler per section
type: CONFIGURATION (machine type and its subsections), START / PART /
END of the ``ram`` section (its records: :mod:`.qemu_ram`), FULL device
sections (walked with the vmdesc, :mod:`.vmdesc`) and EOF.

Everything here is bounded: each step advances the position, the number of
sections and of RAM records is capped (:class:`~.limits.Limits`), and every
read is checked against the end of the stream.
"""

import dataclasses

import numpy as np

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import qemu_ram
from sparc_nova.checkpoint import ram_index
from sparc_nova.checkpoint import vmdesc as vmdesc_mod
from sparc_nova import exception

__all__ = ['parse', 'StreamParser', 'StreamReader', 'StreamLayout',
           'Section', 'DeviceState', 'MAGIC', 'VERSION', 'SECTION_NAMES',
           'SEC_EOF', 'SEC_START', 'SEC_PART', 'SEC_END', 'SEC_FULL',
           'SEC_SUBSECTION', 'SEC_VMDESCRIPTION', 'SEC_CONFIGURATION',
           'SEC_COMMAND', 'SEC_FOOTER']

MAGIC = 0x5145564d
VERSION = 3

SEC_EOF = 0x00
SEC_START = 0x01
SEC_PART = 0x02
SEC_END = 0x03
SEC_FULL = 0x04
SEC_SUBSECTION = 0x05
SEC_VMDESCRIPTION = 0x06
SEC_CONFIGURATION = 0x07
SEC_COMMAND = 0x08
SEC_FOOTER = 0x7e

SECTION_NAMES = {SEC_EOF: 'EOF', SEC_START: 'START', SEC_PART: 'PART',
                 SEC_END: 'END', SEC_FULL: 'FULL',
                 SEC_CONFIGURATION: 'CONFIGURATION', SEC_COMMAND: 'COMMAND'}

#: Subsections QEMU may append to the CONFIGURATION section.
_CONFIG_SUBSECTIONS = ('configuration/target-page-bits',
                       'configuration/capabilities', 'configuration/uuid')


@dataclasses.dataclass
class Section:
    """One section of the stream (offsets relative to the stream start)."""

    kind: int
    section_id: int
    idstr: str
    instance_id: int
    version_id: int
    offset: int
    end: int


@dataclasses.dataclass
class DeviceState:
    """A device (FULL) section decoded with its vmdesc entry."""

    name: str
    instance_id: int
    version: int
    offset: int
    end: int
    values: dict


@dataclasses.dataclass
class StreamLayout:
    """What a parsed stream contains (offsets relative to its start)."""

    size: int
    machine: str
    sections: list[Section]
    ram: ram_index.RamIndex
    devices: list[DeviceState]
    vmdesc: dict | None
    eof_offset: int
    #: Why device state was not (fully) decoded, if it was not.
    device_state_note: str | None = None


class StreamReader:
    """Bounds-checked big-endian reads from a buffer (an mmap)."""

    def __init__(self, buf, size: int, path: str, base: int = 0,
                 label: str = ''):
        self.buf = buf
        self.size = size
        self.path = path + label
        self.base = base
        self.u8arr = np.frombuffer(buf, dtype=np.uint8, count=size)

    #: True for a stream another process is still writing
    #: (:mod:`.stream_follow`).
    growing = False

    def available(self) -> int:
        """Bytes that may be read now without waiting."""
        return self.size

    def wait_complete(self) -> None:
        """Wait until the stream is written to its end (no-op here)."""

    def file_offset(self, pos: int) -> int:
        return self.base + pos

    def error(self, msg: str, pos: int):
        return exception.CheckpointFormatError(self.path, msg,
                                               self.file_offset(pos))

    def need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise self.error('truncated: %s needs %d bytes, %d left'
                             % (what, n, max(0, self.size - pos)), pos)

    def u8(self, pos: int) -> int:
        self.need(pos, 1, 'a byte')
        return self.buf[pos]

    def be32(self, pos: int) -> int:
        self.need(pos, 4, 'a 32-bit field')
        return int.from_bytes(self.buf[pos:pos + 4], 'big')

    def be64(self, pos: int) -> int:
        self.need(pos, 8, 'a 64-bit field')
        return int.from_bytes(self.buf[pos:pos + 8], 'big')

    def bytes(self, pos: int, n: int) -> bytes:
        self.need(pos, n, '%d bytes' % n)
        return bytes(self.buf[pos:pos + n])

    def idstr(self, pos: int) -> tuple[str, int]:
        """u8 length + ASCII string; returns (string, next position)."""
        n = self.u8(pos)
        raw = self.bytes(pos + 1, n)
        try:
            return raw.decode('ascii'), pos + 1 + n
        except UnicodeDecodeError:
            raise self.error('identifier is not ASCII', pos)


class StreamParser:
    """Parses one migration stream into a :class:`StreamLayout`."""

    def __init__(self, reader: StreamReader,
                 limits: limits_mod.Limits = limits_mod.DEFAULT,
                 progress=None):
        self.r = reader
        self.limits = limits
        self.ram = qemu_ram.RamSectionParser(reader, limits, progress)
        self.ram_section_id = None
        self.machine = ''
        self.sections = []
        self.devices = []
        self.device_state_note = None
        self.eof = None
        self.vmdesc = self.stream_end = self.device_descs = None

    # -- top level ---------------------------------------------------------

    def parse(self) -> StreamLayout:
        """Read the whole stream.

        :raises sparc_nova.exception.CheckpointFormatError: a malformed
            stream (the message names the file and the offset).
        :raises sparc_nova.exception.UnsupportedCheckpoint: a valid stream
            this parser does not read (version, compression, iterative
            sections other than RAM).
        :raises sparc_nova.exception.LimitExceeded: more sections, RAM or
            records than the limits allow.
        """
        r = self.r
        self._check_header()
        # The vmdesc JSON is the stream's tail: a stream still being
        # written is followed through its RAM first and the vmdesc read
        # once the device sections (which need it) are reached.
        if not r.growing:
            self._load_vmdesc()
        handlers = {SEC_CONFIGURATION: self._configuration,
                    SEC_START: self._ram_start,
                    SEC_PART: self._ram_part, SEC_END: self._ram_part,
                    SEC_FULL: self._device, SEC_EOF: self._eof}
        pos = 8
        for _ in range(self.limits.max_sections):
            if self.stream_end is not None and pos >= self.stream_end:
                raise r.error('stream ends without an EOF marker', pos)
            kind = r.u8(pos)
            if self.stream_end is None and kind in (SEC_FULL, SEC_EOF):
                r.wait_complete()
                self._load_vmdesc()
                if pos >= self.stream_end:
                    raise r.error('stream ends without an EOF marker', pos)
            handler = handlers.get(kind)
            if handler is None:
                raise r.error('unknown section type 0x%02x' % kind, pos)
            pos = handler(pos)
            if pos is None:
                break
        else:
            raise exception.LimitExceeded(
                r.path, 'more than %d sections' % self.limits.max_sections,
                r.file_offset(pos))
        if self.ram_section_id is None:
            raise r.error('stream has no RAM section', 8)
        if not self.ram.announced:
            raise r.error('the RAM section announces no RAM blocks (no '
                          'MEM_SIZE record)', 8)
        if self.eof is None:
            self.eof = self.stream_end
        if r.growing:
            self.ram.check_claim()
        return StreamLayout(size=r.size, machine=self.machine,
                            sections=self.sections, ram=self.ram.index(),
                            devices=self.devices, vmdesc=self.vmdesc,
                            eof_offset=self.eof,
                            device_state_note=self.device_state_note)

    def _check_header(self) -> None:
        r = self.r
        if r.size < 8:
            raise r.error('too short for a QEMU migration stream (%d bytes)'
                          % r.size, 0)
        if r.be32(0) != MAGIC:
            raise r.error('not a QEMU migration stream (magic 0x%08x, '
                          'expected QEVM)' % r.be32(0), 0)
        if r.be32(4) != VERSION:
            raise exception.UnsupportedCheckpoint(
                r.path, 'migration stream version %d is not supported '
                        '(version %d only)' % (r.be32(4), VERSION),
                r.file_offset(4))

    def _load_vmdesc(self) -> None:
        """Find the vmdesc: it sets the end of the sections and the
        device descriptions (None without a vmdesc).
        """
        r = self.r
        desc = vmdesc_mod.locate(r.buf, r.size, r.path,
                                 self.limits.max_vmdesc)
        self.vmdesc = desc[1] if desc else None
        self.stream_end = desc[0] if desc else r.size
        self.device_descs = list(self.vmdesc['devices']) \
            if self.vmdesc else None

    def _section_header(self, pos: int) -> tuple[int, str, int, int, int]:
        """A START or FULL section's header: ``(section_id, idstr,
        instance_id, version_id, payload position)``.
        """
        r = self.r
        sid = r.be32(pos + 1)
        idstr, p = r.idstr(pos + 5)
        return sid, idstr, r.be32(p), r.be32(p + 4), p + 8

    def _close(self, start: int, kind: int, sid: int, idstr: str,
               inst: int, ver: int, pos: int) -> int:
        """Check the footer at ``pos``, record the section; return the
        position after the footer.
        """
        pos = self._footer(pos, sid, idstr)
        self.sections.append(Section(kind, sid, idstr, inst, ver, start,
                                     pos))
        return pos

    # -- one handler per section type: each takes the section's offset
    # -- and returns the next section's, or None to stop.

    def _configuration(self, pos: int) -> int:
        r = self.r
        if self.sections or self.machine:
            raise r.error('CONFIGURATION section not at the start', pos)
        n = r.be32(pos + 1)
        if n > 256:
            raise r.error('machine type name of %d bytes' % n, pos)
        self.machine = r.bytes(pos + 5, n).decode('ascii', 'replace')
        return self._config_subsections(pos + 5 + n)

    def _ram_start(self, start: int) -> int:
        r = self.r
        sid, idstr, inst, ver, pos = self._section_header(start)
        if idstr != 'ram' or self.ram_section_id is not None:
            raise exception.UnsupportedCheckpoint(
                r.path, 'iterative section %r is not supported '
                        '(only RAM)' % idstr, r.file_offset(start))
        self.ram_section_id = sid
        pos = self.ram.records(pos, first=True)
        return self._close(start, SEC_START, sid, idstr, inst, ver, pos)

    def _ram_part(self, start: int) -> int:
        """A PART or END section (only the RAM section is iterative)."""
        r = self.r
        kind = r.u8(start)
        sid = r.be32(start + 1)
        if sid != self.ram_section_id:
            raise r.error('%s of section %d, which was never '
                          'started as an iterative section'
                          % (SECTION_NAMES[kind], sid), start)
        pos = self.ram.records(start + 5, first=False)
        return self._close(start, kind, sid, 'ram', 0, 0, pos)

    def _device(self, start: int) -> int | None:
        """A FULL section: one device's state, walked with its vmdesc
        entry (the next one in order).
        """
        r = self.r
        sid, idstr, inst, ver, pos = self._section_header(start)
        if self.device_descs is None:
            self.device_state_note = (
                'the stream carries no vmdesc: device state from offset '
                '%d on was not decoded' % r.file_offset(start))
            self.sections.append(Section(SEC_FULL, sid, idstr, inst, ver,
                                         start, self.stream_end))
            return None
        if not self.device_descs:
            raise r.error('device section %r has no vmdesc entry'
                          % idstr, start)
        d = self.device_descs.pop(0)
        if (not isinstance(d, dict) or d.get('name') != idstr or
                d.get('instance_id') != inst):
            raise r.error(
                'device section %r instance %d does not match the '
                'vmdesc entry %r' % (idstr, inst, d.get('name')
                                     if isinstance(d, dict) else d),
                start)
        end, values = vmdesc_mod.SectionWalker(r).walk(d, pos)
        self.devices.append(DeviceState(idstr, inst, ver, start, end,
                                        values))
        return self._close(start, SEC_FULL, sid, idstr, inst, ver, end)

    def _eof(self, pos: int) -> None:
        self.eof = pos
        return None

    def _config_subsections(self, pos: int) -> int:
        r = self.r
        for _ in range(len(_CONFIG_SUBSECTIONS)):
            if r.u8(pos) != SEC_SUBSECTION:
                return pos
            name, p = r.idstr(pos + 1)
            p += 4   # version
            if name == 'configuration/target-page-bits':
                if r.be32(p) != 12:
                    raise exception.UnsupportedCheckpoint(
                        r.path, 'target page bits %d (12 only)' % r.be32(p),
                        r.file_offset(p))
                pos = p + 4
            elif name == 'configuration/capabilities':
                count = r.be32(p)
                if count > 64:
                    raise r.error('%d capabilities' % count, p)
                p += 4
                for _ in range(count):
                    _, p = r.idstr(p)
                pos = p
            elif name == 'configuration/uuid':
                r.need(p, 16, 'uuid')
                pos = p + 16
            else:
                raise exception.UnsupportedCheckpoint(
                    r.path, 'unknown configuration subsection %r' % name,
                    r.file_offset(pos))
        return pos

    def _footer(self, pos: int, sid: int, idstr: str) -> int:
        r = self.r
        if r.u8(pos) != SEC_FOOTER:
            raise r.error('section %r (id %d) does not end with a footer '
                          '(found 0x%02x)' % (idstr, sid, r.u8(pos)), pos)
        if r.be32(pos + 1) != sid:
            raise r.error('footer of section %d names section %d'
                          % (sid, r.be32(pos + 1)), pos)
        return pos + 5


def parse(buf, size: int, path: str, base: int = 0, label: str = '',
          limits: limits_mod.Limits = limits_mod.DEFAULT,
          progress=None) -> StreamLayout:
    """Parse the migration stream held in ``buf[:size]``.

    :param base: offset of the stream within its file (for error messages).
    :param label: appended to ``path`` in messages (e.g. that offsets are
        those of the decompressed stream).
    """
    reader = StreamReader(buf, size, path, base, label)
    return StreamParser(reader, limits, progress).parse()
