"""kdump-compressed guest memory dumps: the bounded reader and writer.

``virsh dump --memory-only --format kdump-zlib|kdump-lzo|kdump-snappy``
has QEMU write makedumpfile's compressed dump ("diskdump") layout, in
logical offsets:

* block 0: the disk dump header (``KDUMP   ``, header version, block
  size, sizes of the sub header and bitmaps in blocks, compression in
  ``status``);
* block 1: the kdump sub header (``max_mapnr_64``, where the ELF notes
  and the vmcoreinfo lie), followed by the ELF notes (per vCPU a
  ``CORE`` and a ``QEMU`` note, then ``VMCOREINFO``);
* two bitmaps of ``max_mapnr`` bits (pages present, pages dumped);
* one 24-byte page descriptor per dumped page, ascending by frame
  (offset of its data, its size, its flags: compressed with the
  file's compression, or 0 for 4096 raw bytes);
* the page data (QEMU stores every zero page as one shared raw page).

These logical bytes are stored in one of two ways. The *seekable*
layout is the file itself (what QEMU writes to a plain file since 8.2,
and what ``makedumpfile -R`` rebuilds). The *flattened* layout (what
QEMU 7.2 writes, since libvirt hands it a pipe) is a 4096-byte
``makedumpfile`` header and a sequence of pieces, each a big-endian
(logical offset, size) pair and its bytes, ended by a pair of -1.

Hostile input rules: every logical offset lies below
:func:`max_logical_size` (the guest RAM bound's worth of raw pages,
descriptors and bitmaps); flattened pieces may not overlap each other
(an overlap would let two pieces disagree on the same bytes; a gap
reads as zeros, as in the file ``makedumpfile -R`` writes); the
dumped frames lie within ``Limits.max_guest_ram`` plus the 4 GiB below
which x86 machines put their PCI hole and firmware, and count at most
``Limits.max_guest_ram`` bytes; a page's data lies after the
descriptors and inside the logical file, is at most 4096 bytes, and
inflates (zlib with a bound, lzo and snappy with the optional
libraries) to exactly 4096 bytes. A dump filtered by makedumpfile (the
two bitmaps differ) is refused. Errors name the file and the offset.

:func:`read` decompresses the dumped pages into a private file that
is an ELF core (the dump's notes, one segment per run of dumped
frames), so that the RAM index, the guest-physical view and the vCPUs
of :mod:`.memory_dump` serve it unchanged, and a sandboxed planner
given that file reads it as an ELF dump. Offsets in errors about the
dump's structures are logical offsets (the same as file offsets in the
seekable layout). :func:`write_copy` writes a new dump in the same layout with
changed pages stored raw (flags 0) and every other page's stored bytes
copied.
"""

import bisect
import dataclasses
import os
import struct
import typing
import zlib

import numpy as np

from sparc_nova.checkpoint import elf_core
from sparc_nova.checkpoint import elf_write
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import tempfiles
from sparc_nova import exception

__all__ = ['COMPRESS_LZO', 'COMPRESS_SNAPPY', 'COMPRESS_ZLIB', 'Container',
           'FLAT_SIGNATURE', 'KDUMP_SIGNATURE', 'Kdump', 'LogicalFile',
           'PAGE_SIZE', 'is_kdump', 'max_logical_size', 'open_logical',
           'read', 'write_copy']

KDUMP_SIGNATURE = b'KDUMP   '
FLAT_SIGNATURE = b'makedumpfile'
#: Bytes of the flattened format's header.
FLAT_HEADER_SIZE = 4096
PAGE_SIZE = 4096
COMPRESS_ZLIB = 0x1
COMPRESS_LZO = 0x2
COMPRESS_SNAPPY = 0x4
_COMPRESSIONS = {COMPRESS_ZLIB: 'zlib', COMPRESS_LZO: 'lzo',
                 COMPRESS_SNAPPY: 'snappy'}

#: signature, header_version, utsname (6 x 65), timestamp (22), status,
#: block_size, sub_hdr_size, bitmap_blocks, max_mapnr, total_ram_blocks,
#: device_blocks, written_blocks, current_cpu, nr_cpus.
_HEADER = struct.Struct('<8sI390s22s10I')
#: phys_base, dump_level, split, start_pfn, end_pfn, offset_vmcoreinfo,
#: size_vmcoreinfo, offset_note, note_size, offset_eraseinfo,
#: size_eraseinfo, start_pfn_64, end_pfn_64, max_mapnr_64.
_SUB_HEADER = struct.Struct('<QIIQQQQQQQQQQQ')
#: The flattened format's header: signature, type, version (big-endian).
_FLAT_HEADER = struct.Struct('>16sqq')
#: A flattened piece: logical offset, size (big-endian).
_PIECE = struct.Struct('>qq')
_PIECE_END = (-1, -1)
#: Page descriptor: offset, size, flags, page_flags.
DESCRIPTOR = np.dtype([('offset', '<u8'), ('size', '<u4'),
                       ('flags', '<u4'), ('page_flags', '<u8')])

#: Runs of dumped frames accepted (QEMU writes one per guest-physical
#: range: a handful).
MAX_RUNS = 65536
#: Bytes of ELF notes accepted.
MAX_NOTE_BYTES = elf_core.MAX_NOTE_BYTES
#: Bytes of vmcoreinfo text accepted.
MAX_VMCOREINFO = 1024 * 1024
#: Guest physical space beyond ``max_guest_ram`` the frames may lie in
#: (x86 machines keep the PCI hole and the firmware below 4 GiB and put
#: the RAM that does not fit below it above 4 GiB).
_HOLE = 4 * limits_mod.GiB
#: Bytes read or written at once while copying.
_CHUNK = 1024 * 1024


def is_kdump(head: bytes) -> bool:
    """Whether ``head`` starts a kdump-compressed dump (either layout)."""
    return head[:8] == KDUMP_SIGNATURE or head[:12] == FLAT_SIGNATURE


def max_logical_size(limits: limits_mod.Limits) -> int:
    """The largest logical size of a dump within ``limits``: every page
    raw, its descriptor, the bitmaps and 64 MiB of headers and notes.
    """
    pages = (limits.max_guest_ram + _HOLE) // PAGE_SIZE
    return pages * (PAGE_SIZE + DESCRIPTOR.itemsize) + pages // 4 + \
        64 * 1024 * 1024


def _error(path, message, offset=None):
    return exception.CheckpointFormatError(path, 'kdump: ' + message, offset)


class LogicalFile:
    """The logical bytes of a dump, read by logical offset.

    :ivar flattened: whether the file is in the flattened layout.
    :ivar size: the logical size (the end of the last piece).
    :ivar stored: the bytes the pieces hold (a table that must be read
        whole, such as the page descriptors, fits in it: a gap, read as
        zeros, never makes one larger than the file).
    :ivar pieces: for a flattened file, ``(logical offset, file offset,
        size)`` of every piece, by logical offset; for a seekable file,
        one piece covering the whole file.
    """

    def __init__(self, fd: int, path: str, flattened: bool,
                 pieces: list[tuple[int, int, int]], flat_header: bytes):
        self.fd = fd
        self.path = path
        self.flattened = flattened
        self.pieces = pieces
        self.flat_header = flat_header
        self._starts = [p[0] for p in pieces]
        self.size = max((p[0] + p[2] for p in pieces), default=0)
        self.stored = sum(p[2] for p in pieces)

    def read(self, offset: int, size: int, what: str) -> bytes:
        """``size`` logical bytes at ``offset`` (a gap between pieces
        reads as zeros).

        :raises CheckpointFormatError: the range ends past the logical
            end of the dump.
        """
        if offset < 0 or size < 0 or offset + size > self.size:
            raise _error(self.path, '%s (%d bytes at logical offset %d) '
                                    'lies past the end of the dump (%d '
                                    'bytes)' % (what, size, offset,
                                                self.size), offset)
        out = bytearray(size)
        i = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        end = offset + size
        while i < len(self.pieces) and self.pieces[i][0] < end:
            lo, foff, n = self.pieces[i]
            a, b = max(lo, offset), min(lo + n, end)
            if a < b:
                data = os.pread(self.fd, b - a, foff + (a - lo))
                if len(data) != b - a:
                    raise _error(self.path, 'file ends inside %s' % what,
                                 foff + (a - lo))
                out[a - offset:b - offset] = data
            i += 1
        return bytes(out)


def _flat_pieces(fd: int, path: str, file_size: int, bound: int
                 ) -> list[tuple[int, int, int]]:
    """The pieces of a flattened file, by logical offset, checked."""
    pieces = []
    pos = FLAT_HEADER_SIZE
    # Every piece takes at least its 16-byte header: the loop ends.
    while True:
        head = os.pread(fd, _PIECE.size, pos)
        if len(head) != _PIECE.size:
            raise _error(path, 'flattened dump ends without its end marker '
                               '(truncated)', pos)
        offset, size = _PIECE.unpack(head)
        if (offset, size) == _PIECE_END:
            break
        if offset < 0 or size < 0 or offset > bound or size > bound - offset:
            raise exception.LimitExceeded(
                path, 'kdump: flattened piece of %d bytes at logical offset '
                      '%d lies past the limit (%d bytes)'
                % (size, offset, bound), pos)
        if size > file_size - pos - _PIECE.size:
            raise _error(path, 'flattened piece of %d bytes is cut by the '
                               'end of the file (truncated)' % size, pos)
        if size:
            pieces.append((offset, pos + _PIECE.size, size))
        pos += _PIECE.size + size
    pieces.sort()
    for (a, _, n), (b, fb, _) in zip(pieces, pieces[1:]):
        if b < a + n:
            raise _error(path, 'flattened pieces overlap at logical offset '
                               '%d' % b, fb - _PIECE.size)
    if not pieces:
        raise _error(path, 'flattened dump holds no data', pos)
    return pieces


def open_logical(f: typing.BinaryIO, path: str,
                 limits: limits_mod.Limits = limits_mod.DEFAULT
                 ) -> LogicalFile:
    """The logical bytes of the dump open in ``f``, either layout.

    :raises CheckpointFormatError: a truncated or overlapping piece, a
        missing end marker.
    :raises LimitExceeded: a piece past :func:`max_logical_size`.
    """
    fd = f.fileno()
    file_size = os.fstat(fd).st_size
    head = os.pread(fd, FLAT_HEADER_SIZE, 0)
    if head[:8] == KDUMP_SIGNATURE:
        return LogicalFile(fd, path, False, [(0, 0, file_size)], b'')
    if len(head) < FLAT_HEADER_SIZE:
        raise _error(path, 'file ends inside the flattened header', 0)
    sig, ftype, version = _FLAT_HEADER.unpack_from(head)
    if sig.rstrip(b'\0') != FLAT_SIGNATURE or ftype != 1 or version != 1:
        raise exception.UnsupportedCheckpoint(
            path, 'kdump: flattened header of type %d version %d (only '
                  'type 1 version 1)' % (ftype, version))
    return LogicalFile(fd, path, True,
                       _flat_pieces(fd, path, file_size,
                                    max_logical_size(limits)), head)


@dataclasses.dataclass
class Kdump:
    """The parsed layout of a kdump-compressed dump.

    :ivar logical: its logical bytes.
    :ivar compression: the ``status`` compression bit (0: none).
    :ivar max_mapnr: frames the bitmaps describe.
    :ivar pfns: the dumped frames, ascending (int64).
    :ivar descriptors: their page descriptors (:data:`DESCRIPTOR`).
    :ivar desc_offset: logical offset of the descriptor table.
    :ivar note_offset: logical offset of the ELF notes.
    :ivar note_size: their bytes.
    :ivar vmcoreinfo: the vmcoreinfo text of the sub header, or None.
    :ivar header_version: the disk dump header's version.
    """

    logical: LogicalFile
    compression: int
    max_mapnr: int
    pfns: np.ndarray
    descriptors: np.ndarray
    desc_offset: int
    note_offset: int
    note_size: int
    vmcoreinfo: bytes | None
    header_version: int

    @property
    def compression_name(self) -> str:
        return _COMPRESSIONS.get(self.compression, 'none')

    @property
    def data_offset(self) -> int:
        """Logical offset where page data may start."""
        return self.desc_offset + len(self.descriptors) * DESCRIPTOR.itemsize

    def describe(self) -> dict:
        """The dump's own facts for ``sparc checkpoint info``."""
        return {'layout': 'flattened' if self.logical.flattened
                else 'seekable',
                'header_version': self.header_version,
                'compression': self.compression_name,
                'pages': len(self.pfns), 'max_mapnr': self.max_mapnr,
                'ranges': [{'gpa': '0x%x' % (pfn * PAGE_SIZE),
                            'length': n * PAGE_SIZE}
                           for pfn, n, _ in self.runs()],
                'vmcoreinfo': self.vmcoreinfo is not None}

    def runs(self) -> list[tuple[int, int, int]]:
        """``(first frame, frames, index of the first)`` of every run of
        consecutive dumped frames.
        """
        p = self.pfns
        if not len(p):
            return []
        breaks = np.flatnonzero(np.diff(p) != 1) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(p)]))
        return [(int(p[s]), int(e - s), int(s))
                for s, e in zip(starts.tolist(), ends.tolist())]


def _bitmap_bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8),
                         bitorder='little')


def parse(logical: LogicalFile,
          limits: limits_mod.Limits = limits_mod.DEFAULT) -> Kdump:
    """Parse the headers, bitmaps and descriptors of a dump.

    :raises CheckpointFormatError: a malformed header, bitmap or
        descriptor; a descriptor's data outside the dump.
    :raises LimitExceeded: frames or pages past the guest RAM bound.
    :raises UnsupportedCheckpoint: a block size other than 4096, an
        unknown compression, a filtered dump.
    """
    path = logical.path
    (sig, version, _uts, _ts, status, block_size, sub_blocks, bitmap_blocks,
     mapnr32, *_rest) = _HEADER.unpack(
        logical.read(0, _HEADER.size, 'the disk dump header'))
    if sig != KDUMP_SIGNATURE:
        raise _error(path, 'no KDUMP signature at logical offset 0', 0)
    if block_size != PAGE_SIZE:
        raise exception.UnsupportedCheckpoint(
            path, 'kdump: block size %d (only %d)' % (block_size, PAGE_SIZE))
    compression = status & (COMPRESS_ZLIB | COMPRESS_LZO | COMPRESS_SNAPPY)
    if compression and compression not in _COMPRESSIONS:
        raise _error(path, 'several compressions in status 0x%x' % status)
    sub = _SUB_HEADER.unpack(logical.read(
        PAGE_SIZE, _SUB_HEADER.size, 'the kdump sub header'))
    (_phys_base, _level, _split, _s, _e, vmci_off, vmci_size, note_off,
     note_size, _er, _ers, _s64, _e64, mapnr64) = sub
    max_mapnr = mapnr64 if version >= 6 else mapnr32
    max_frames = (limits.max_guest_ram + _HOLE) // PAGE_SIZE
    if max_mapnr > max_frames:
        raise exception.LimitExceeded(
            path, 'kdump: the bitmaps describe %d frames (at most %d: the '
                  'guest RAM bound and 4 GiB)' % (max_mapnr, max_frames),
            PAGE_SIZE)
    bitmap_off = (1 + sub_blocks) * PAGE_SIZE
    half = bitmap_blocks // 2 * PAGE_SIZE
    if bitmap_blocks % 2 or half * 8 < max_mapnr:
        raise _error(path, '%d bitmap blocks cannot hold two bitmaps of %d '
                           'frames' % (bitmap_blocks, max_mapnr), 436)
    if half > (max_frames + 7) // 8 + PAGE_SIZE:
        raise exception.LimitExceeded(
            path, 'kdump: bitmaps of %d bytes (at most %d frames)'
            % (half, max_frames), 436)
    if note_size > MAX_NOTE_BYTES or vmci_size > MAX_VMCOREINFO:
        raise exception.LimitExceeded(
            path, 'kdump: %d bytes of notes, %d of vmcoreinfo'
            % (note_size, vmci_size), PAGE_SIZE)
    for off, size, what in ((note_off, note_size, 'ELF notes'),
                            (vmci_off, vmci_size, 'vmcoreinfo')):
        if size and (off < PAGE_SIZE + _SUB_HEADER.size or
                     off + size > bitmap_off):
            raise _error(path, 'the %s (%d bytes at %d) lie outside the sub '
                               'header blocks' % (what, size, off),
                         PAGE_SIZE)
    present = _bitmap_bits(logical.read(bitmap_off, half, 'the bitmaps'))
    dumped = _bitmap_bits(logical.read(bitmap_off + half, half,
                                       'the bitmaps'))
    present[max_mapnr:] = 0
    dumped[max_mapnr:] = 0
    if not np.array_equal(present, dumped):
        raise exception.UnsupportedCheckpoint(
            path, 'kdump: the dump leaves out pages of the guest (a dump '
                  'filtered by makedumpfile)')
    pfns = np.flatnonzero(dumped).astype(np.int64)
    del present, dumped
    if len(pfns) * PAGE_SIZE > limits.max_guest_ram:
        raise exception.LimitExceeded(
            path, 'kdump: the bitmap claims %d pages (%d bytes of guest '
                  'memory, limit %d)' % (len(pfns), len(pfns) * PAGE_SIZE,
                                         limits.max_guest_ram), bitmap_off)
    if not len(pfns):
        raise _error(path, 'the dump holds no page', bitmap_off)
    desc_off = bitmap_off + bitmap_blocks * PAGE_SIZE
    if len(pfns) * DESCRIPTOR.itemsize > logical.stored:
        raise exception.LimitExceeded(
            path, 'kdump: the bitmap claims %d pages, whose descriptors '
                  'alone take more than the %d bytes the file holds'
            % (len(pfns), logical.stored), bitmap_off)
    table = np.frombuffer(logical.read(
        desc_off, len(pfns) * DESCRIPTOR.itemsize, 'the page descriptors'),
        dtype=DESCRIPTOR)
    dump = Kdump(logical, compression, max_mapnr, pfns, table, desc_off,
                 note_off, note_size, None, version)
    if len(dump.runs()) > MAX_RUNS:
        raise exception.LimitExceeded(
            path, 'kdump: more than %d runs of frames' % MAX_RUNS, bitmap_off)
    _check_descriptors(dump)
    if vmci_size:
        dump.vmcoreinfo = logical.read(vmci_off, vmci_size, 'vmcoreinfo')
    return dump


def _check_descriptors(dump: Kdump) -> None:
    t = dump.descriptors
    path = dump.logical.path
    bad_flags = (t['flags'] != 0) & (t['flags'] != dump.compression)
    raw_size = (t['flags'] == 0) & (t['size'] != PAGE_SIZE)
    size = (t['size'] == 0) | (t['size'] > PAGE_SIZE)
    outside = (t['offset'] < dump.data_offset) | \
        (t['offset'] > dump.logical.size - t['size'].astype(np.uint64))
    outside |= t['offset'] > dump.logical.size
    for mask, what in ((bad_flags, 'flags that are not the file\'s '
                                   'compression'),
                       (raw_size, 'an uncompressed page not of 4096 bytes'),
                       (size, 'a size of 0 or more than 4096 bytes'),
                       (outside, 'data outside the dump\'s page data')):
        if mask.any():
            i = int(np.argmax(mask))
            d = t[i]
            raise _error(path, 'the page descriptor of frame 0x%x has %s '
                               '(offset %d, size %d, flags 0x%x)'
                         % (int(dump.pfns[i]), what,
                            int(d['offset']), int(d['size']),
                            int(d['flags'])),
                         dump.desc_offset + i * DESCRIPTOR.itemsize)


def _decompressor(compression: int, path: str):
    """A function of a page's stored bytes to its 4096 bytes (or to
    more or fewer, which the caller refuses).
    """
    if compression == COMPRESS_ZLIB:
        def inflate(data):
            d = zlib.decompressobj()
            out = d.decompress(data, PAGE_SIZE + 1)
            if not d.eof and len(out) <= PAGE_SIZE:
                raise zlib.error('incomplete zlib stream')
            return out
        return inflate
    if compression == COMPRESS_LZO:
        try:
            import lzo
        except ImportError:
            raise exception.UnsupportedCheckpoint(
                path, 'kdump-lzo dump: the python-lzo library is not '
                      'installed')

        def unlzo(data):
            return lzo.decompress(data, False, PAGE_SIZE)
        return unlzo
    if compression == COMPRESS_SNAPPY:
        try:
            import cramjam
        except ImportError:
            raise exception.UnsupportedCheckpoint(
                path, 'kdump-snappy dump: the cramjam library is not '
                      'installed')

        def unsnappy(data):
            # The raw format starts with the length it inflates to (a
            # varint): check it before inflating.
            n, shift, i = 0, 0, 0
            while i < min(len(data), 5):
                n |= (data[i] & 0x7f) << shift
                shift += 7
                i += 1
                if not data[i - 1] & 0x80:
                    break
            if n != PAGE_SIZE:
                raise ValueError('the snappy data claims %d bytes' % n)
            return bytes(cramjam.snappy.decompress_raw(data))
        return unsnappy
    return None


def read(f: typing.BinaryIO, path: str, dst: typing.BinaryIO,
         limits: limits_mod.Limits = limits_mod.DEFAULT
         ) -> tuple[Kdump, elf_core.ElfCore, int]:
    """Parse the dump open in ``f`` and write it to ``dst`` (an empty
    private file) as an ELF core (:mod:`.elf_write`: the dump's ELF notes,
    one ``PT_LOAD`` per run of frames, every page decompressed; zero
    pages are left as holes). The file is then read back as any ELF
    dump, by this process or by a sandboxed planner given ``dst``.

    :returns: the dump's layout, ``dst``'s ELF core layout, and the
        offset in ``dst`` of the first page (the others follow it in
        frame order).
    :raises CheckpointFormatError: see :func:`open_logical`,
        :func:`parse`; a page that does not inflate to exactly 4096
        bytes (naming the frame); notes the ELF reader refuses.
    """
    dump = parse(open_logical(f, path, limits), limits)
    logical = dump.logical
    notes = logical.read(dump.note_offset, dump.note_size, 'ELF notes')
    segments = [elf_write.Segment(pfn * PAGE_SIZE, n * PAGE_SIZE)
                for pfn, n, _ in dump.runs()]
    dst.seek(0)
    elf_write.write_core(dst, segments, notes, lambda seg, out: None)
    dst.flush()
    out = dst.fileno()
    base = os.fstat(out).st_size
    os.ftruncate(out, base + len(dump.pfns) * PAGE_SIZE)
    inflate = _decompressor(dump.compression, path)
    ahead = _ReadAhead(logical)
    zero = bytes(PAGE_SIZE)
    cache_key, cache = None, None
    # Consecutive non-zero pages are written together: ``run`` holds the
    # pages from page index ``run_at``.
    run_at, run = 0, []
    t = dump.descriptors
    keys = zip(t['offset'].tolist(), t['size'].tolist(),
               t['flags'].tolist())
    for i, key in enumerate(keys):
        if key != cache_key:
            cache_key, cache = key, _page(ahead, key, inflate,
                                          int(dump.pfns[i]))
        if cache == zero:
            continue
        if run and (run_at + len(run) != i or
                    len(run) * PAGE_SIZE >= _CHUNK):
            _pwrite_all(out, b''.join(run), base + run_at * PAGE_SIZE)
            run = []
        if not run:
            run_at = i
        run.append(cache)
    if run:
        _pwrite_all(out, b''.join(run), base + run_at * PAGE_SIZE)
    core = elf_core.read_core(dst, path, limits)
    if core.vmcoreinfo is None:
        core.vmcoreinfo = dump.vmcoreinfo
    dump.vmcoreinfo = core.vmcoreinfo
    return dump, core, base


class _ReadAhead:
    """Reads of page data through a window of :data:`_CHUNK` logical
    bytes that only moves forward: a dump stores its pages one after the
    other, and one read per page cost more than inflating it. A read
    behind the window (pages sharing stored data, typically the one zero
    page every zero frame names) is read on its own, and the last such
    read is kept. Whatever order hostile descriptors take, the window
    starts at least ``_CHUNK - PAGE_SIZE`` bytes further each time it
    moves (a stored page is at most 4096 bytes), so the window reads the
    logical file about once, and a read behind it costs no more than the
    page it returns.
    """

    def __init__(self, logical: LogicalFile):
        self.path = logical.path
        self._logical = logical
        self._start = 0
        self._data = b''
        self._behind = (None, b'')

    def read(self, offset: int, size: int, what: str) -> bytes:
        """As :meth:`LogicalFile.read`."""
        logical = self._logical
        at = offset - self._start
        if 0 <= at and at + size <= len(self._data):
            return self._data[at:at + size]
        if at < 0 or offset + size > logical.size:
            if self._behind[0] != (offset, size):
                self._behind = ((offset, size),
                                logical.read(offset, size, what))
            return self._behind[1]
        self._start = offset
        self._data = logical.read(
            offset, max(size, min(_CHUNK, logical.size - offset)), what)
        return self._data[:size]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _page(logical: 'LogicalFile | _ReadAhead', key: tuple[int, int, int],
          inflate, pfn: int) -> bytes:
    """The 4096 bytes of the page stored as ``key`` (offset, size,
    flags) for frame ``pfn``.
    """
    data = logical.read(key[0], key[1], 'page data')
    if not key[2]:
        return data
    try:
        data = inflate(data)
    except Exception as e:
        raise _error(logical.path, 'the page of frame 0x%x (at logical '
                                   'offset %d) does not inflate: %s'
                     % (pfn, key[0], e))
    if len(data) != PAGE_SIZE:
        raise _error(logical.path, 'the page of frame 0x%x (at logical '
                                   'offset %d) inflates to %s bytes, not %d'
                     % (pfn, key[0], 'more than %d' % PAGE_SIZE
                        if len(data) > PAGE_SIZE else len(data), PAGE_SIZE))
    return data


class _Sink:
    """Writes logical bytes to the new dump: pieces of a flattened file,
    or at their offsets in a seekable one.
    """

    def __init__(self, f: typing.BinaryIO, flattened: bool,
                 flat_header: bytes):
        self.f = f
        self.flattened = flattened
        if flattened:
            f.write(flat_header)

    def write(self, offset: int, data: bytes) -> None:
        for pos in range(0, len(data), _CHUNK):
            part = data[pos:pos + _CHUNK]
            if self.flattened:
                self.f.write(_PIECE.pack(offset + pos, len(part)))
                self.f.write(part)
            else:
                self.f.seek(offset + pos)
                self.f.write(part)

    def close(self) -> None:
        if self.flattened:
            self.f.write(_PIECE.pack(*_PIECE_END))


def _changed_pages(groups: list[journal.Group], base: int, npages: int,
                   path: str) -> dict[int, bytes]:
    """Page index to new content, from the rewrite's groups (offsets in
    the decompressed file :func:`read` wrote).
    """
    out = {}
    for g in groups:
        if g.kind == journal.FILL_PAGE:
            content = bytes([g.fill]) * PAGE_SIZE
        elif g.kind == journal.FULL_PAGE:
            content = g.content
        else:
            raise exception.CheckpointError(
                path, 'kdump: a rewrite of %d byte fills cannot be written '
                      'to a dump' % len(g.offsets))
        for off in np.asarray(g.offsets, dtype=np.int64).tolist():
            i, rem = divmod(off - base, PAGE_SIZE)
            if rem or not 0 <= i < npages:
                raise exception.CheckpointError(
                    path, 'kdump: a patch at offset %d is not a page of the '
                          'dump' % off)
            out[i] = content
    return out


class Container:
    """What writes a scrub of a dump back: a new dump (the file's
    pages are compressed one by one, so it is never patched in place).

    :ivar dump: the parsed dump.
    :ivar core: the decompressed file's layout as an ELF core's.
    :ivar base: offset of the first page in the decompressed file.
    """

    def __init__(self, dump: Kdump, core: elf_core.ElfCore, base: int):
        self.dump = dump
        self.core = core
        self.base = base
        self.snapshot = None

    def describe(self) -> dict:
        return {}

    def patch_in_place(self, groups, stream_fd, journal_key,
                       journal_dir=None) -> None:
        raise exception.CheckpointError(
            self.dump.logical.path,
            'a kdump-compressed dump cannot be scrubbed in place (its pages '
            'are compressed one by one): write it with --output, or '
            'without --in-place to replace it')

    def write_copy(self, groups: list[journal.Group], stream_fd: int,
                   target: str) -> None:
        write_copy(self.dump, self.base, groups, target)


def write_copy(dump: Kdump, base: int, groups: list[journal.Group],
               target: str) -> None:
    """Write a new dump to ``target`` (atomically, owner and mode of the
    original): ``dump``'s layout and headers, its pages with the changes
    of ``groups`` (patches of the file :func:`read` wrote, whose pages
    start at ``base``) stored raw, every other page's stored bytes
    copied (pages that shared their data still share it).
    """
    logical = dump.logical
    path = logical.path
    t = dump.descriptors
    changed = _changed_pages(groups, base, len(t), path)
    new = t.copy()
    pos = dump.data_offset
    placed: dict = {}
    order = []
    offsets = np.zeros(len(t), dtype=np.int64)
    sizes = t['size'].astype(np.int64)
    flag_col = t['flags'].astype(np.int64)
    stored = zip(t['offset'].tolist(), sizes.tolist(), flag_col.tolist())
    for i, key in enumerate(stored):
        size = key[1]
        if i in changed:
            key = ('new', changed[i])
            size = sizes[i] = PAGE_SIZE
            flag_col[i] = 0
        at = placed.get(key)
        if at is None:
            at = placed[key] = pos
            order.append(key)
            pos += size
        offsets[i] = at
    new['offset'] = offsets
    new['size'] = sizes
    new['flags'] = flag_col
    st = os.fstat(logical.fd)
    with tempfiles.replacement(target) as (f, _):
        sink = _Sink(f, logical.flattened, logical.flat_header)
        for off in range(0, dump.desc_offset, _CHUNK):
            n = min(_CHUNK, dump.desc_offset - off)
            sink.write(off, logical.read(off, n, 'the headers'))
        sink.write(dump.desc_offset, new.tobytes())
        out, start = [], dump.data_offset
        written = start
        ahead = _ReadAhead(logical)
        for key in order:
            if key[0] == 'new':
                out.append(key[1])
            else:
                out.append(ahead.read(key[0], key[1], 'page data'))
            written += len(out[-1])
            if written - start >= _CHUNK:
                data = b''.join(out)
                sink.write(start, data)
                start, out = written, []
        if out:
            sink.write(start, b''.join(out))
        sink.close()
        os.fchmod(f.fileno(), st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.fchown(f.fileno(), st.st_uid, st.st_gid)
