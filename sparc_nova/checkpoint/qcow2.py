"""qcow2 disk images, read as hostile input: the header, the internal
snapshot table, a snapshot's cluster mapping and the refcounts.

An internal snapshot of a running guest (``virsh snapshot-create-as DOM
NAME``, QEMU's ``savevm``) keeps the guest's memory state (a QEMU
migration stream, the "vmstate") inside the image, in the snapshot's own
view of the disk, after the virtual disk: QEMU's
``qcow2_vm_state_offset()`` (``block/qcow2.h``) is
``l1_vm_state_index << (cluster_bits + l2_bits)``, where
``l1_vm_state_index`` is the snapshot's disk size in L1 entries, rounded
up. The vmstate therefore starts at the first entry of the L2 table of
that L1 entry and is mapped cluster by cluster like disk data (normal,
zero, unallocated or compressed clusters).

Why not qemu-img, qemu-io or libnbd: they expose a snapshot's disk, never
its vmstate (``qemu-img convert -l``, ``qemu-nbd -l`` stop at the virtual
size); ``qemu-io -c 'read -b'`` reads the vmstate of the image's active
state only (which QEMU discards once the snapshot is made) and cannot
name a snapshot; and a scrub must know which host clusters it may
overwrite (refcount 1, nothing else maps them), which none of them tells.
So the few structures needed are parsed here: every count and size is
bounded and every offset checked against the file before it is read.

Layout (QEMU ``docs/interop/qcow2.txt``, big endian): header (v2: 72
bytes; v3: 104 or more, with feature bits, refcount order and
compression type), L1 table (u64 entries, L2 table offset in bits 9-55),
L2 tables (one cluster, u64 entries: bit 62 compressed; else bits 9-55
host offset and bit 0 "reads as zeros"), refcount table (u64 entries:
refcount block offsets), refcount blocks (``1 << refcount_order``-bit
entries), snapshot table (entries of 40 bytes plus extra data, ID and
name, padded to 8).
"""

import dataclasses
import os
import struct

import numpy as np

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova import exception

__all__ = ['MAGIC', 'Image', 'Header', 'Snapshot', 'ClusterMap',
           'UNALLOCATED', 'ZERO', 'NORMAL', 'COMPRESSED', 'is_qcow2',
           'DEFLATE', 'ZSTD']

MAGIC = b'QFI\xfb'
_HEADER = struct.Struct('>4sIQIIQIIQQIIQ')      # 72 bytes (v2)
_HEADER_V3 = struct.Struct('>QQQII')            # bytes 72..103
_SNAPSHOT = struct.Struct('>QIHHIIQII')         # 40 bytes
_EXTRA = struct.Struct('>QQ')                   # vm_state_size, disk_size

#: QEMU's bounds (``block/qcow2.h``).
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
MAX_SNAPSHOTS = 65536
MAX_SNAPSHOTS_BYTES = 64 * 1024 * 1024
MAX_SNAPSHOT_EXTRA = 1024
MAX_L1_BYTES = 32 * 1024 * 1024
MAX_REFTABLE_BYTES = 8 * 1024 * 1024

#: Incompatible feature bits.
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
_INCOMPAT_NAMES = {INCOMPAT_DIRTY: 'dirty', INCOMPAT_CORRUPT: 'corrupt',
                   INCOMPAT_DATA_FILE: 'external data file',
                   INCOMPAT_COMPRESSION: 'compression type',
                   INCOMPAT_EXTL2: 'extended L2 entries'}

#: Compression types (header byte 104).
DEFLATE, ZSTD = 0, 1
COMPRESSION_NAMES = {DEFLATE: 'deflate', ZSTD: 'zstd'}

_OFFSET_MASK = 0x00fffffffffffe00
_COPIED = 1 << 63
_COMPRESSED = 1 << 62
_ZERO_FLAG = 1

#: Cluster kinds of a :class:`ClusterMap`.
UNALLOCATED, ZERO, NORMAL, COMPRESSED = 0, 1, 2, 3
KIND_NAMES = {UNALLOCATED: 'unallocated', ZERO: 'zero', NORMAL: 'normal',
              COMPRESSED: 'compressed'}


def is_qcow2(head: bytes) -> bool:
    return head[:4] == MAGIC


@dataclasses.dataclass(frozen=True)
class Header:
    """The parsed qcow2 header (sizes in bytes)."""

    version: int
    cluster_bits: int
    size: int
    l1_size: int
    l1_table_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    nb_snapshots: int
    snapshots_offset: int
    incompatible: int
    refcount_order: int
    header_length: int
    compression_type: int
    backing_file: bool

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def l2_entries(self) -> int:
        """Entries of an L2 table (one cluster of u64)."""
        return self.cluster_size // 8

    @property
    def compression(self) -> str:
        return COMPRESSION_NAMES[self.compression_type]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One entry of the snapshot table.

    :ivar vm_state_size: bytes of vmstate (0: a disk-only snapshot).
    :ivar disk_size: the virtual disk size when the snapshot was made.
    :ivar date: seconds since the Epoch; ``vm_clock_ns``: the guest's
        clock.
    """

    index: int
    id: str
    name: str
    l1_table_offset: int
    l1_size: int
    date: int
    vm_clock_ns: int
    vm_state_size: int
    disk_size: int

    def as_dict(self) -> dict:
        return {'id': self.id, 'name': self.name,
                'vm_state_size': self.vm_state_size,
                'disk_size': self.disk_size, 'date': self.date,
                'vm_clock_ns': self.vm_clock_ns}


@dataclasses.dataclass
class ClusterMap:
    """Where each guest cluster of a byte range of a snapshot's view
    lies (arrays indexed by the cluster's number in the range).

    :ivar kind: :data:`UNALLOCATED`, :data:`ZERO`, :data:`NORMAL` or
        :data:`COMPRESSED`.
    :ivar host: host offset of the data (compressed: of its first byte).
    :ivar csize: bytes of compressed data as the entry describes them
        (to the end of its last 512-byte sector); 0 otherwise.
    :ivar l2_tables: host offsets of the L2 tables read.
    """

    kind: np.ndarray
    host: np.ndarray
    csize: np.ndarray
    l2_tables: list[int]

    def __len__(self) -> int:
        return len(self.kind)


class Image:
    """An open qcow2 image: its header and snapshot table, parsed and
    checked on construction; cluster maps and refcounts on request.

    :param fd: a descriptor open for reading (not closed here).
    :param path: the image, for error messages.
    :raises CheckpointFormatError: a malformed image (the message names
        the file and what is wrong).
    :raises UnsupportedCheckpoint: a feature not handled here (encryption,
        an external data file, extended L2 entries, a corrupt or dirty
        image, an unknown incompatible feature).
    """

    def __init__(self, fd: int, path: str,
                 limits: limits_mod.Limits = limits_mod.DEFAULT):
        self.fd = fd
        self.path = path
        self.limits = limits
        self.file_size = os.fstat(fd).st_size
        self.header = self._read_header()
        #: (offset, bytes) of the snapshot table.
        self.snapshot_table = (0, 0)
        self.snapshots = self._read_snapshots()

    # -- reads ----------------------------------------------------------------

    def error(self, msg: str, offset: int | None = None):
        return exception.CheckpointFormatError(self.path, msg, offset)

    def read(self, offset: int, n: int, what: str) -> bytes:
        """``n`` bytes at ``offset``, all inside the file."""
        if offset < 0 or n < 0 or offset + n > self.file_size:
            raise self.error('%s (%d bytes at offset %d) lies past the end '
                             'of the file (%d bytes)'
                             % (what, n, offset, self.file_size))
        data = os.pread(self.fd, n, offset)
        if len(data) != n:
            raise self.error('short read of %s' % what, offset)
        return data

    def _table(self, offset: int, entries: int, what: str) -> np.ndarray:
        """``entries`` big-endian u64 at ``offset`` (cluster aligned)."""
        if offset % self.header.cluster_size:
            raise self.error('%s at offset %d is not cluster aligned'
                             % (what, offset))
        raw = self.read(offset, entries * 8, what)
        return np.frombuffer(raw, dtype='>u8').astype(np.uint64)

    # -- header ---------------------------------------------------------------

    def _read_header(self) -> Header:
        if self.file_size < _HEADER.size:
            raise self.error('file is %d bytes, shorter than a qcow2 header'
                             % self.file_size, 0)
        f = _HEADER.unpack(self.read(0, _HEADER.size, 'the header'))
        (magic, version, backing_off, backing_len, cluster_bits, size,
         crypt, l1_size, l1_off, rt_off, rt_clusters, nb_snap,
         snap_off) = f
        if magic != MAGIC:
            raise self.error('not a qcow2 image (magic %r)' % magic, 0)
        if version not in (2, 3):
            raise exception.UnsupportedCheckpoint(
                self.path, 'qcow2 version %d is not supported (2 and 3 '
                           'only)' % version, 4)
        if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
            raise self.error('cluster_bits %d out of range (%d..%d)'
                             % (cluster_bits, MIN_CLUSTER_BITS,
                                MAX_CLUSTER_BITS), 20)
        if crypt:
            raise exception.UnsupportedCheckpoint(
                self.path, 'encrypted qcow2 image (method %d): not '
                           'supported' % crypt, 32)
        incompat, refcount_order, hdr_len, ctype = 0, 4, _HEADER.size, DEFLATE
        if version == 3:
            incompat, _, _, refcount_order, hdr_len = _HEADER_V3.unpack(
                self.read(_HEADER.size, _HEADER_V3.size, 'the v3 header'))
            if hdr_len < 104 or hdr_len > (1 << cluster_bits):
                raise self.error('header length %d out of range' % hdr_len,
                                 100)
            if hdr_len > 104:
                ctype = self.read(104, 1, 'the compression type')[0]
        self._check_features(incompat, ctype)
        if refcount_order > 6:
            raise self.error('refcount order %d out of range (0..6)'
                             % refcount_order, 96)
        if l1_size * 8 > MAX_L1_BYTES:
            raise exception.LimitExceeded(
                self.path, 'active L1 table of %d entries' % l1_size, 36)
        if rt_clusters << cluster_bits > MAX_REFTABLE_BYTES:
            raise exception.LimitExceeded(
                self.path, 'refcount table of %d clusters' % rt_clusters, 56)
        if nb_snap > MAX_SNAPSHOTS:
            raise exception.LimitExceeded(
                self.path, '%d snapshots, more than QEMU allows (%d)'
                % (nb_snap, MAX_SNAPSHOTS), 60)
        return Header(version=version, cluster_bits=cluster_bits, size=size,
                      l1_size=l1_size, l1_table_offset=l1_off,
                      refcount_table_offset=rt_off,
                      refcount_table_clusters=rt_clusters,
                      nb_snapshots=nb_snap, snapshots_offset=snap_off,
                      incompatible=incompat, refcount_order=refcount_order,
                      header_length=hdr_len, compression_type=ctype,
                      backing_file=bool(backing_off and backing_len))

    def _check_features(self, incompat: int, ctype: int) -> None:
        known = sum(_INCOMPAT_NAMES)
        if incompat & ~known:
            raise exception.UnsupportedCheckpoint(
                self.path, 'unknown incompatible qcow2 features 0x%x'
                % (incompat & ~known), 72)
        refused = incompat & (INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE |
                              INCOMPAT_EXTL2)
        if refused:
            raise exception.UnsupportedCheckpoint(
                self.path, 'qcow2 feature not supported: %s' % ', '.join(
                    n for b, n in _INCOMPAT_NAMES.items() if refused & b),
                72)
        if ctype not in COMPRESSION_NAMES or (
                ctype != DEFLATE and not incompat & INCOMPAT_COMPRESSION):
            raise self.error('compression type %d is not valid' % ctype, 104)

    @property
    def dirty(self) -> bool:
        """Whether the image was not closed cleanly (its refcounts may be
        out of date: QEMU's lazy refcounts).
        """
        return bool(self.header.incompatible & INCOMPAT_DIRTY)

    # -- snapshot table -------------------------------------------------------

    def _read_snapshots(self) -> list[Snapshot]:
        h = self.header
        if not h.nb_snapshots:
            return []
        off = h.snapshots_offset
        if off % h.cluster_size or off < h.cluster_size:
            raise self.error('snapshot table offset %d is not a cluster '
                             'after the header' % off, 64)
        end = min(self.file_size, off + MAX_SNAPSHOTS_BYTES)
        out, ids, names = [], {}, {}
        pos = off
        for i in range(h.nb_snapshots):
            sn, pos = self._snapshot_entry(i, pos, end)
            if sn.id in ids or sn.name in names:
                other = ids.get(sn.id, names.get(sn.name))
                raise self.error('snapshots %d and %d have the same ID or '
                                 'name: the table is ambiguous'
                                 % (other, i), pos)
            ids[sn.id], names[sn.name] = i, i
            out.append(sn)
        self.snapshot_table = (off, min(pos, self.file_size) - off)
        self._check_l1_placement(out)
        return out

    def _snapshot_entry(self, i: int, pos: int, end: int
                        ) -> tuple[Snapshot, int]:
        h = self.header
        if pos + _SNAPSHOT.size > end:
            raise self.error('snapshot %d lies past the end of the snapshot '
                             'table or file' % i, pos)
        (l1_off, l1_size, id_len, name_len, sec, _nsec, clock, vm32,
         extra_len) = _SNAPSHOT.unpack(self.read(pos, _SNAPSHOT.size,
                                                 'snapshot %d' % i))
        if extra_len > MAX_SNAPSHOT_EXTRA:
            raise self.error('snapshot %d has %d bytes of extra data (at '
                             'most %d)' % (i, extra_len, MAX_SNAPSHOT_EXTRA),
                             pos + 36)
        # Entries are padded to 8 bytes; the last one's padding may be
        # missing from the file.
        total = _SNAPSHOT.size + extra_len + id_len + name_len
        if pos + total > end:
            raise self.error('snapshot %d (%d bytes) lies past the end of '
                             'the snapshot table or file' % (i, total), pos)
        raw = self.read(pos, total, 'snapshot %d' % i)
        extra = raw[_SNAPSHOT.size:_SNAPSHOT.size + extra_len]
        vm_size, disk_size = vm32, h.size
        if h.version == 3 and extra_len < _EXTRA.size:
            raise self.error('snapshot %d: a version 3 entry needs 16 bytes '
                             'of extra data, it has %d' % (i, extra_len),
                             pos + 36)
        if extra_len >= 8:
            vm_size = struct.unpack_from('>Q', extra)[0]
        if extra_len >= _EXTRA.size:
            disk_size = _EXTRA.unpack_from(extra)[1]
        p = _SNAPSHOT.size + extra_len
        try:
            sid = raw[p:p + id_len].decode('utf-8')
            name = raw[p + id_len:p + id_len + name_len].decode('utf-8')
        except UnicodeDecodeError:
            raise self.error('snapshot %d: ID or name is not UTF-8' % i, pos)
        if l1_size * 8 > MAX_L1_BYTES:
            raise exception.LimitExceeded(
                self.path, 'snapshot %d: L1 table of %d entries'
                % (i, l1_size), pos + 8)
        return Snapshot(i, sid, name, l1_off, l1_size, sec, clock, vm_size,
                        disk_size), pos + total + (-total % 8)

    def _check_l1_placement(self, snaps: list[Snapshot]) -> None:
        """Each snapshot's L1 table lies in the file, cluster aligned,
        outside the header and the snapshot table, and overlaps no other
        snapshot's (entries sharing one table would alias each other).
        """
        cs = self.header.cluster_size
        toff, tlen = self.snapshot_table
        spans = []
        for sn in snaps:
            start, n = sn.l1_table_offset, sn.l1_size * 8
            if not n:
                continue
            if start % cs or start < cs or start + n > self.file_size:
                raise self.error('snapshot %r: L1 table (%d bytes at %d) is '
                                 'not aligned or lies outside the file'
                                 % (sn.name, n, start))
            if start < toff + tlen and toff < start + n:
                raise self.error('snapshot %r: L1 table overlaps the '
                                 'snapshot table' % sn.name, start)
            spans.append((start, start + n, sn.name))
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                raise self.error('the L1 tables of snapshots %r and %r '
                                 'overlap' % (an, bn), b0)

    def find_snapshot(self, name: str) -> Snapshot:
        """The snapshot named ``name`` (or, failing that, with that ID).

        :raises CheckpointError: no such snapshot (the message lists the
            snapshots that hold a vmstate).
        """
        for sn in self.snapshots:
            if sn.name == name:
                return sn
        for sn in self.snapshots:
            if sn.id == name:
                return sn
        with_state = [s.name for s in self.snapshots if s.vm_state_size]
        raise exception.CheckpointError(
            self.path, 'no internal snapshot %r (snapshots with memory: '
                       '%s)' % (name, ', '.join(with_state) or 'none'))

    # -- mapping --------------------------------------------------------------

    def vmstate_offset(self, sn: Snapshot) -> int:
        """Where ``sn``'s vmstate starts in its view of the disk: its
        disk size rounded up to what one L1 entry maps.
        """
        span = self.header.cluster_size * self.header.l2_entries
        return -(-sn.disk_size // span) * span

    def active(self) -> Snapshot:
        """The image's active state as a :class:`Snapshot` (no vmstate;
        index -1), to map it like one.
        """
        h = self.header
        return Snapshot(-1, '', '(active state)', h.l1_table_offset,
                        h.l1_size, 0, 0, 0, h.size)

    def cluster_map(self, sn: Snapshot, start: int, length: int,
                    short_l1: bool = False) -> ClusterMap:
        """The clusters of ``sn``'s view from ``start`` (a multiple of
        what one L1 entry maps) for ``length`` bytes; every L2 table and
        data range checked against the file.

        :param short_l1: clusters past the end of ``sn``'s L1 table are
            unallocated (else that is an error).
        """
        h = self.header
        cs, l2e = h.cluster_size, h.l2_entries
        n = -(-length // cs)
        first_l1 = start // (cs * l2e)
        last_l1 = first_l1 + (-(-n // l2e)) - 1 if n else first_l1 - 1
        if short_l1:
            last_l1 = min(last_l1, sn.l1_size - 1)
        elif n and last_l1 >= sn.l1_size:
            raise self.error(
                'snapshot %r: its vmstate (%d bytes at %d of its view) '
                'needs L1 entries up to %d, its L1 table has %d'
                % (sn.name, length, start, last_l1, sn.l1_size))
        # Only the entries that map the range are read.
        l1 = np.zeros(0, np.uint64)
        if last_l1 >= first_l1:
            what = 'the L1 table of snapshot %r' % sn.name
            if sn.l1_table_offset % cs:
                raise self.error('%s at offset %d is not cluster aligned'
                                 % (what, sn.l1_table_offset))
            l1 = np.frombuffer(self.read(
                sn.l1_table_offset + 8 * first_l1,
                8 * (last_l1 - first_l1 + 1), what), dtype='>u8')
        kind = np.zeros(n, dtype=np.uint8)
        host = np.zeros(n, dtype=np.int64)
        csize = np.zeros(n, dtype=np.int64)
        tables, seen = [], {}
        for j in range(first_l1, last_l1 + 1):
            l2_off = int(l1[j - first_l1]) & _OFFSET_MASK
            if not l2_off:
                continue
            if l2_off in seen:
                raise self.error('snapshot %r: L1 entries %d and %d point to '
                                 'the same L2 table (a loop)'
                                 % (sn.name, seen[l2_off], j), l2_off)
            if l2_off < cs:
                raise self.error('snapshot %r: L1 entry %d points into the '
                                 'header' % (sn.name, j), l2_off)
            seen[l2_off] = j
            tables.append(l2_off)
            l2 = self._table(l2_off, l2e, 'the L2 table of L1 entry %d' % j)
            a = (j - first_l1) * l2e
            b = min(n, a + l2e)
            self._decode_l2(l2[:b - a], kind[a:b], host[a:b], csize[a:b],
                            l2_off)
        return ClusterMap(kind, host, csize, tables)

    def _decode_l2(self, l2, kind, host, csize, l2_off: int) -> None:
        h = self.header
        cs = h.cluster_size
        comp = (l2 & np.uint64(_COMPRESSED)) != 0
        off = (l2 & np.uint64(_OFFSET_MASK)).astype(np.int64)
        zero = ~comp & ((l2 & np.uint64(_ZERO_FLAG)) != 0) & (h.version == 3)
        normal = ~comp & ~zero & (off != 0)
        kind[zero] = ZERO
        kind[normal] = NORMAL
        host[normal] = off[normal]
        bad = normal & ((off % cs != 0) | (off + cs > self.file_size) |
                        (off < cs))
        if bad.any():
            i = int(np.argmax(bad))
            raise self.error('L2 entry %d: data cluster at %d is not aligned '
                             'or lies outside the file (%d bytes)'
                             % (i, int(off[i]), self.file_size),
                             l2_off + 8 * i)
        if comp.any():
            shift = 62 - (h.cluster_bits - 8)
            cmask = np.uint64((1 << shift) - 1)
            smask = np.uint64((1 << (h.cluster_bits - 8)) - 1)
            coff = (l2 & cmask).astype(np.int64)
            sectors = ((l2 >> np.uint64(shift)) & smask).astype(np.int64) + 1
            size = sectors * 512 - (coff & 511)
            kind[comp] = COMPRESSED
            host[comp] = coff[comp]
            csize[comp] = size[comp]
            # The last sector may run past the end of the file (QEMU
            # allocates compressed data by the byte).
            badc = comp & ((coff < cs) | (coff >= self.file_size) |
                           (coff + size > self.file_size + 511))
            if badc.any():
                i = int(np.argmax(badc))
                raise self.error('L2 entry %d: compressed cluster (%d bytes '
                                 'at %d) lies outside the file'
                                 % (i, int(size[i]), int(coff[i])),
                                 l2_off + 8 * i)

    # -- refcounts ------------------------------------------------------------

    def refcounts(self, clusters) -> dict[int, int]:
        """The refcount of each host cluster number in ``clusters``
        (refcount table and blocks read with bounds).
        """
        h = self.header
        cs = h.cluster_size
        bits = 1 << h.refcount_order
        per_block = cs * 8 // bits
        rt_entries = h.refcount_table_clusters * cs // 8
        rt = self._table(h.refcount_table_offset, rt_entries,
                         'the refcount table')
        blocks, out = {}, {}
        for c in sorted(set(int(x) for x in clusters)):
            i, k = divmod(c, per_block)
            if i >= rt_entries:
                out[c] = 0
                continue
            if i not in blocks:
                off = int(rt[i]) & ~511
                blocks[i] = self.read(off, cs, 'refcount block %d' % i) \
                    if off else None
                if off and (off % cs or off < cs):
                    raise self.error('refcount block %d at %d is not '
                                     'aligned' % (i, off))
            out[c] = _refcount_entry(blocks[i], k, bits)
        return out

    def metadata_clusters(self) -> set[int]:
        """Host cluster numbers of the metadata this module reads: the
        header, the active and every snapshot's L1 table, the snapshot
        table, the refcount table and its blocks.
        """
        h = self.header
        cs = h.cluster_size
        out = {0}

        def span(offset, length):
            if length > 0:
                out.update(range(offset // cs, (offset + length - 1) // cs
                                 + 1))
        span(h.l1_table_offset, h.l1_size * 8)
        for sn in self.snapshots:
            span(sn.l1_table_offset, sn.l1_size * 8)
        if self.snapshots:
            span(*self.snapshot_table)
        rt_bytes = h.refcount_table_clusters * cs
        span(h.refcount_table_offset, rt_bytes)
        rt = self._table(h.refcount_table_offset, rt_bytes // 8,
                         'the refcount table')
        for e in rt.tolist():
            if e & ~511:
                span(e & ~511, cs)
        return out


def _refcount_entry(block: bytes | None, k: int, bits: int) -> int:
    """Entry ``k`` of a refcount block of ``bits``-bit entries (QEMU
    packs sub-byte entries from the least significant bit).
    """
    if block is None:
        return 0
    if bits < 8:
        per = 8 // bits
        return (block[k // per] >> (bits * (k % per))) & ((1 << bits) - 1)
    n = bits // 8
    return int.from_bytes(block[k * n:(k + 1) * n], 'big')
