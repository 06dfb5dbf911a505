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

The ``ram`` section's payload is a list of RAM records, each starting with
``be64 offset | flags``; see :data:`RAM_FLAGS`. Device (FULL) sections are
walked with the vmdesc.

Everything here is bounded: each step advances the position, the number of
sections and of RAM records is capped (:class:`~.limits.Limits`), and every
read is checked against the end of the stream.
"""

import dataclasses

import numpy as np
from numpy.lib import stride_tricks

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import ram_index
from sparc_nova.checkpoint import vmdesc as vmdesc_mod
from sparc_nova import exception

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

RAM_ZERO = 0x02
RAM_MEM_SIZE = 0x04
RAM_PAGE = 0x08
RAM_EOS = 0x10
RAM_CONTINUE = 0x20
RAM_XBZRLE = 0x40
RAM_HOOK = 0x80
RAM_COMPRESS_PAGE = 0x100
RAM_MULTIFD_FLUSH = 0x200
RAM_FLAG_MASK = 0xfff

RAM_FLAGS = {RAM_ZERO: 'ZERO', RAM_MEM_SIZE: 'MEM_SIZE', RAM_PAGE: 'PAGE',
             RAM_EOS: 'EOS', RAM_CONTINUE: 'CONTINUE', RAM_XBZRLE: 'XBZRLE',
             RAM_HOOK: 'HOOK', RAM_COMPRESS_PAGE: 'COMPRESS_PAGE',
             RAM_MULTIFD_FLUSH: 'MULTIFD_FLUSH'}
_UNSUPPORTED_RAM = RAM_XBZRLE | RAM_HOOK | RAM_COMPRESS_PAGE | \
    RAM_MULTIFD_FLUSH

PAGE_SIZE = ram_index.PAGE_SIZE
PAGE_RECORD = 8 + PAGE_SIZE
ZERO_RECORD = 8 + 1            # the smallest record a page can have
_MAX_RUN_CHUNK = 1 << 16

#: Subsections QEMU may append to the CONFIGURATION section.
_CONFIG_SUBSECTIONS = ('configuration/target-page-bits',
                       'configuration/capabilities', 'configuration/uuid')


def flag_names(flags: int) -> str:
    names = [n for bit, n in sorted(RAM_FLAGS.items()) if flags & bit]
    unknown = flags & ~sum(RAM_FLAGS)
    if unknown:
        names.append('0x%x' % unknown)
    return '|'.join(names) or '0'


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
        self.progress = progress
        self.blocks = []
        self.blocks_by_name = {}
        self.builder = None
        self.current_block = None
        self.ram_section_id = None
        self._mem_size_pos = 0

    # -- top level ---------------------------------------------------------

    def parse(self) -> StreamLayout:
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
        # The vmdesc JSON is the stream's tail: a stream still being
        # written is followed through its RAM first and the vmdesc read
        # once the device sections (which need it) are reached.
        vmdesc = stream_end = device_descs = None
        if not r.growing:
            vmdesc, stream_end, device_descs = self._vmdesc()
        pos = 8
        machine = ''
        sections = []
        devices = []
        note = None
        ram_seen = False
        eof = None
        for _ in range(self.limits.max_sections):
            if stream_end is not None and pos >= stream_end:
                raise r.error('stream ends without an EOF marker', pos)
            kind = r.u8(pos)
            start = pos
            if stream_end is None and kind in (SEC_FULL, SEC_EOF):
                r.wait_complete()
                vmdesc, stream_end, device_descs = self._vmdesc()
                if pos >= stream_end:
                    raise r.error('stream ends without an EOF marker', pos)
            if kind == SEC_CONFIGURATION:
                if sections or machine:
                    raise r.error('CONFIGURATION section not at the start',
                                  pos)
                n = r.be32(pos + 1)
                if n > 256:
                    raise r.error('machine type name of %d bytes' % n, pos)
                machine = r.bytes(pos + 5, n).decode('ascii', 'replace')
                pos = self._config_subsections(pos + 5 + n)
                continue
            if kind == SEC_EOF:
                eof = pos
                break
            if kind in (SEC_START, SEC_FULL):
                sid = r.be32(pos + 1)
                idstr, p = r.idstr(pos + 5)
                inst = r.be32(p)
                ver = r.be32(p + 4)
                pos = p + 8
            elif kind in (SEC_PART, SEC_END):
                sid = r.be32(pos + 1)
                pos += 5
                if sid != self.ram_section_id:
                    raise r.error('%s of section %d, which was never '
                                  'started as an iterative section'
                                  % (SECTION_NAMES[kind], sid), start)
                idstr, inst, ver = 'ram', 0, 0
            else:
                raise r.error('unknown section type 0x%02x' % kind, pos)

            if kind == SEC_START:
                if idstr != 'ram' or self.ram_section_id is not None:
                    raise exception.UnsupportedCheckpoint(
                        r.path, 'iterative section %r is not supported '
                                '(only RAM)' % idstr, r.file_offset(start))
                self.ram_section_id = sid
                pos = self._ram_records(pos, first=True)
                ram_seen = True
            elif kind in (SEC_PART, SEC_END):
                pos = self._ram_records(pos, first=False)
            else:   # FULL: a device
                if device_descs is None:
                    note = ('the stream carries no vmdesc: device state '
                            'from offset %d on was not decoded'
                            % r.file_offset(start))
                    sections.append(Section(kind, sid, idstr, inst, ver,
                                            start, stream_end))
                    break
                if not device_descs:
                    raise r.error('device section %r has no vmdesc entry'
                                  % idstr, start)
                d = device_descs.pop(0)
                if (not isinstance(d, dict) or d.get('name') != idstr or
                        d.get('instance_id') != inst):
                    raise r.error(
                        'device section %r instance %d does not match the '
                        'vmdesc entry %r' % (idstr, inst, d.get('name')
                                             if isinstance(d, dict) else d),
                        start)
                end, values = vmdesc_mod.SectionWalker(r).walk(d, pos)
                devices.append(DeviceState(idstr, inst, ver, start, end,
                                           values))
                pos = end
            pos = self._footer(pos, sid, idstr)
            sections.append(Section(kind, sid, idstr, inst, ver, start,
                                    pos))
        else:
            raise exception.LimitExceeded(
                r.path, 'more than %d sections' % self.limits.max_sections,
                r.file_offset(pos))
        if not ram_seen:
            raise r.error('stream has no RAM section', 8)
        if self.builder is None:
            raise r.error('the RAM section announces no RAM blocks (no '
                          'MEM_SIZE record)', 8)
        if eof is None:
            eof = stream_end
        if r.growing:
            self._check_claim()
        index = self.builder.finish(self.blocks)
        return StreamLayout(size=r.size, machine=machine, sections=sections,
                            ram=index, devices=devices, vmdesc=vmdesc,
                            eof_offset=eof, device_state_note=note)

    def _vmdesc(self):
        """``(vmdesc, end of the sections, device descriptions)``."""
        r = self.r
        desc = vmdesc_mod.locate(r.buf, r.size, r.path,
                                 self.limits.max_vmdesc)
        vmdesc = desc[1] if desc else None
        return (vmdesc, desc[0] if desc else r.size,
                list(vmdesc['devices']) if vmdesc else None)

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

    # -- RAM ---------------------------------------------------------------

    def _mem_size(self, pos: int, total: int) -> int:
        r = self.r
        if total > self.limits.max_guest_ram:
            raise exception.LimitExceeded(
                r.path, 'RAM blocks claim %d bytes, more than the limit of '
                        '%d' % (total, self.limits.max_guest_ram),
                r.file_offset(pos - 8))
        seen = 0
        for _ in range(4096):
            if seen == total:
                break
            name, p = r.idstr(pos)
            length = r.be64(p)
            if length > total - seen or length == 0:
                raise r.error('RAM block %r of %d bytes does not fit the '
                              'announced total of %d' % (name, length,
                                                         total), pos)
            if name in self.blocks_by_name:
                raise r.error('RAM block %r announced twice' % name, pos)
            block = ram_index.RamBlock(len(self.blocks), name, length)
            self.blocks.append(block)
            self.blocks_by_name[name] = block
            seen += length
            pos = p + 8
        else:
            raise r.error('too many RAM blocks', pos)
        self._mem_size_pos = pos
        self._check_claim()
        pages = sum(b.pages for b in self.blocks)
        self.builder = ram_index.RamIndexBuilder(
            self.limits.max_page_copies * pages + 65536)
        return pos

    def _check_claim(self) -> None:
        """Per-page tables are sized by the RAM blocks' claim: a claim the
        stream cannot back with one record per page is refused before
        they are built (a stream still being written is checked again
        once complete).
        """
        r = self.r
        pages = sum(b.pages for b in self.blocks)
        if pages * ZERO_RECORD > r.size:
            raise exception.LimitExceeded(
                r.path, 'RAM blocks claim %d bytes (%d pages) but the '
                        '%d-byte stream can hold at most %d page records'
                        % (sum(b.length for b in self.blocks), pages,
                           r.size, r.size // ZERO_RECORD),
                r.file_offset(self._mem_size_pos))

    def _ram_records(self, pos: int, first: bool) -> int:
        r = self.r
        # Every iteration consumes at least 8 bytes, so the stream size
        # bounds the loop; the record budget bounds memory.
        for _ in range(r.size // 8 + 1):
            hdr_off = pos
            hdr = r.be64(pos)
            flags = hdr & RAM_FLAG_MASK
            addr = hdr & ~RAM_FLAG_MASK
            pos += 8
            if flags & RAM_MEM_SIZE:
                if not first or self.blocks or flags != RAM_MEM_SIZE:
                    raise r.error('unexpected MEM_SIZE record (flags %s)'
                                  % flag_names(flags), hdr_off)
                pos = self._mem_size(pos, addr)
                continue
            if flags & RAM_EOS:
                if flags != RAM_EOS:
                    raise r.error('corrupt RAM record flags %s'
                                  % flag_names(flags), hdr_off)
                return pos
            if self.builder is None:
                raise r.error('RAM page before the MEM_SIZE record',
                              hdr_off)
            if flags & _UNSUPPORTED_RAM:
                raise exception.UnsupportedCheckpoint(
                    r.path, 'RAM record with flags %s: compressed, XBZRLE, '
                            'multifd and RDMA streams are not supported'
                            % flag_names(flags), r.file_offset(hdr_off))
            kind_flag = flags & (RAM_ZERO | RAM_PAGE)
            if (kind_flag not in (RAM_ZERO, RAM_PAGE) or
                    flags & ~(RAM_ZERO | RAM_PAGE | RAM_CONTINUE)):
                raise r.error('corrupt RAM record flags %s'
                              % flag_names(flags), hdr_off)
            if not flags & RAM_CONTINUE:
                name, pos = r.idstr(pos)
                block = self.blocks_by_name.get(name)
                if block is None:
                    raise r.error('RAM record names unknown block %r'
                                  % name, hdr_off)
                self.current_block = block
            elif self.current_block is None:
                raise r.error('CONTINUE record with no current RAM block',
                              hdr_off)
            block = self.current_block
            page = addr >> ram_index.PAGE_SHIFT
            if page >= block.pages:
                raise r.error('page offset 0x%x is beyond RAM block %r '
                              '(%d bytes)' % (addr, block.name,
                                              block.length), hdr_off)
            if kind_flag == RAM_PAGE:
                r.need(pos, PAGE_SIZE, 'page data')
                ok = self.builder.add(block.index, page, hdr_off, pos,
                                      ram_index.KIND_PAGE, 0)
                pos += PAGE_SIZE
                stride = PAGE_RECORD
                kind = ram_index.KIND_PAGE
            else:
                fill = r.u8(pos)
                ok = self.builder.add(block.index, page, hdr_off, pos,
                                      ram_index.KIND_ZERO, fill)
                pos += 1
                stride = ZERO_RECORD
                kind = ram_index.KIND_ZERO
            if not ok:
                raise self._too_many(hdr_off)
            pos = self._run(pos, block, page, kind_flag, kind, stride)
        raise r.error('RAM section never ends', pos)

    def _too_many(self, pos):
        return exception.LimitExceeded(
            self.r.path, 'more than %d RAM records for %d pages'
            % (self.builder.max_records,
               sum(b.pages for b in self.blocks)), self.r.file_offset(pos))

    def _run(self, pos: int, block, page: int, kind_flag: int, kind: int,
             stride: int) -> int:
        """Vectorised fast path: consume the longest run of CONTINUE
        records of the same kind for consecutive pages that starts at
        ``pos``, checking predicted headers at a fixed stride.
        """
        r = self.r
        max_n = min(block.pages - page - 1, (r.available() - pos) // stride)
        if max_n <= 0:
            return pos
        flags = kind_flag | RAM_CONTINUE
        done = 0
        chunk = 16
        while done < max_n:
            n = min(chunk, max_n - done)
            start = pos + done * stride
            view = stride_tricks.as_strided(r.u8arr[start:], shape=(n, 8),
                                            strides=(stride, 1),
                                            writeable=False)
            hdrs = view.view('>u8')[:, 0]
            first = page + 1 + done
            expect = ((np.arange(first, first + n, dtype=np.uint64)
                       << np.uint64(12)) | np.uint64(flags))
            ok = hdrs == expect
            m = n if ok.all() else int(np.argmin(ok))
            if m:
                offs = start + np.arange(m, dtype=np.int64) * stride
                fills = r.u8arr[offs + 8] if kind == ram_index.KIND_ZERO \
                    else None
                if not self.builder.add_run(
                        block.index,
                        np.arange(first, first + m, dtype=np.int64),
                        offs, kind, fills):
                    raise self._too_many(start)
                done += m
            if m < n:
                break
            chunk = min(chunk * 8, _MAX_RUN_CHUNK)
            if self.progress:
                self.progress(pos + done * stride, r.size)
        return pos + done * stride


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
