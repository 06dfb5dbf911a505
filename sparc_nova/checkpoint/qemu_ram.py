"""The RAM section of a QEMU migration stream: its records, read and
written.

The ``ram`` section's payload (START, then PART and END sections) is a
list of records, each starting with ``be64 offset | flags``
(:data:`RAM_FLAGS`; QEMU ``migration/ram.c``)::

    MEM_SIZE   be64 total | 0x04, then per block: u8 len, idstr, be64 length
    PAGE       be64 offset | 0x08 [| 0x20], [u8 len, block idstr], 4096 bytes
    ZERO       be64 offset | 0x02 [| 0x20], [u8 len, block idstr], u8 fill
    EOS        be64 0x10 (end of this section's records)

CONTINUE (0x20) means "the same block as the previous record" (no block
name follows). :class:`RamSectionParser` reads them into a
:class:`~.ram_index.RamIndex`; :func:`zero_records`, :func:`zero_record`
and :func:`page_record` write the records a rewrite replaces them with.
"""

import numpy as np
from numpy.lib import stride_tricks

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import ram_index
from sparc_nova import exception

__all__ = ['RamSectionParser', 'zero_records', 'zero_record', 'page_record',
           'page_headers', 'flag_names', 'RAM_FLAGS', 'RAM_FLAG_MASK',
           'RAM_ZERO',
           'RAM_MEM_SIZE', 'RAM_PAGE', 'RAM_EOS', 'RAM_CONTINUE',
           'RAM_XBZRLE', 'RAM_HOOK', 'RAM_COMPRESS_PAGE',
           'RAM_MULTIFD_FLUSH', 'PAGE_SIZE', 'PAGE_RECORD', 'ZERO_RECORD']

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


def flag_names(flags: int) -> str:
    """``flags`` (a record header's low bits) as ``PAGE|CONTINUE``;
    unknown bits in hex.
    """
    names = [n for bit, n in sorted(RAM_FLAGS.items()) if flags & bit]
    unknown = flags & ~sum(RAM_FLAGS)
    if unknown:
        names.append('0x%x' % unknown)
    return '|'.join(names) or '0'


def _zero_headers(page_headers: np.ndarray) -> np.ndarray:
    """PAGE record headers (uint8 rows of 8) turned into ZERO record
    headers: same page offset, same CONTINUE bit.
    """
    old = np.ascontiguousarray(page_headers, dtype=np.uint8) \
        .view('>u8')[:, 0]
    new = (old & np.uint64(~RAM_PAGE & 0xffffffffffffffff)) | \
        np.uint64(RAM_ZERO)
    return new.astype('>u8').view(np.uint8).reshape(len(old), 8)


def zero_records(page_headers: np.ndarray, fills: np.ndarray) -> np.ndarray:
    """The 9-byte ZERO records replacing CONTINUE PAGE records (no block
    name) whose 8-byte headers are the rows of ``page_headers`` (uint8,
    shape (n, 8)): same page offset and CONTINUE bit, fill byte
    ``fills[i]`` (0..255). Returns a new (n, 9) uint8 array.
    """
    rows = np.empty((len(page_headers), ZERO_RECORD), dtype=np.uint8)
    if len(page_headers):
        rows[:, :8] = _zero_headers(page_headers)
        rows[:, 8] = fills
    return rows


def zero_record(page_header: bytes, block_name: bytes, fill: int) -> bytes:
    """The ZERO record replacing a PAGE record whose 8-byte header is
    ``page_header`` and whose block name field (empty with CONTINUE) is
    ``block_name``: same page offset and CONTINUE bit, fill byte ``fill``
    (0..255).
    """
    head = _zero_headers(np.frombuffer(page_header, dtype=np.uint8)
                         .reshape(1, 8))
    return head.tobytes() + block_name + bytes([fill])


def page_headers(zero_headers: np.ndarray) -> np.ndarray:
    """ZERO record headers (uint8 rows of 8) turned into PAGE record
    headers: same page offset, same CONTINUE bit, the other flags
    dropped (:func:`page_record`, for many records at once).
    """
    old = np.ascontiguousarray(zero_headers, dtype=np.uint8) \
        .view('>u8')[:, 0]
    keep = np.uint64((~RAM_FLAG_MASK | RAM_CONTINUE) & 0xffffffffffffffff)
    new = (old & keep) | np.uint64(RAM_PAGE)
    return new.astype('>u8').view(np.uint8).reshape(len(old), 8)


def page_record(zero_header: bytes, block_name: bytes, data: bytes) -> bytes:
    """The PAGE record replacing a ZERO record whose 8-byte header is
    ``zero_header`` and whose block name field (empty with CONTINUE) is
    ``block_name``: same page offset and CONTINUE bit, ``data`` (4096
    bytes) as its payload.
    """
    old = int.from_bytes(zero_header, 'big')
    flags = (old & (~RAM_FLAG_MASK | RAM_CONTINUE)) | RAM_PAGE
    return flags.to_bytes(8, 'big') + block_name + data


class RamSectionParser:
    """Reads the records of the RAM section into a record index.

    :param reader: the stream (:class:`~.qemu_stream.StreamReader`).
    :param progress: callable(done, total) in stream bytes, or None.
    """

    def __init__(self, reader, limits: limits_mod.Limits,
                 progress=None):
        self.r = reader
        self.limits = limits
        self.progress = progress
        self.blocks = []
        self.blocks_by_name = {}
        self.builder = None
        self.current_block = None
        self._mem_size_pos = 0

    @property
    def announced(self) -> bool:
        """Whether a MEM_SIZE record announced the RAM blocks."""
        return self.builder is not None

    def index(self) -> ram_index.RamIndex:
        """The record index of every record read (call once, after the
        last section; needs :attr:`announced`).
        """
        return self.builder.finish(self.blocks)

    def _mem_size(self, pos: int, total: int) -> int:
        """Read the MEM_SIZE record's block list (``total`` bytes of RAM
        announced) and size the record index by it.
        """
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
        self.check_claim()
        pages = sum(b.pages for b in self.blocks)
        self.builder = ram_index.RamIndexBuilder(
            self.limits.max_page_copies * pages + 65536)
        return pos

    def check_claim(self) -> None:
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

    def records(self, pos: int, first: bool) -> int:
        """Read the RAM records of one START (``first``), PART or END
        section from ``pos`` to its EOS record; return the position after
        it. Every record is added to the index.

        :raises sparc_nova.exception.CheckpointFormatError: a malformed
            record (offset of its header).
        :raises sparc_nova.exception.UnsupportedCheckpoint: compressed,
            XBZRLE, multifd or RDMA records.
        :raises sparc_nova.exception.LimitExceeded: more records or RAM
            than the limits allow.
        """
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
                fills = None
                if kind == ram_index.KIND_ZERO:
                    fills = r.u8arr[start + 8 + np.arange(m, dtype=np.int64)
                                    * stride]
                if not self.builder.add_run(block.index, first, m, start,
                                            stride, kind, fills):
                    raise self._too_many(start)
                done += m
            if m < n:
                break
            chunk = min(chunk * 8, _MAX_RUN_CHUNK)
            if self.progress:
                self.progress(pos + done * stride, r.size)
        return pos + done * stride
