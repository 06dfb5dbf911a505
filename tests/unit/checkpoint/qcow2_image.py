"""Synthetic qcow2 v3 images with internal snapshots holding a vmstate,
for the qcow2 checkpoint tests (checked by ``qemu-img check`` where it
is installed).

Layout: the header, refcount table and block, the active L1 table, the
snapshot table, one disk data cluster shared by every L1 (through one
shared L2 table) and, per snapshot, its L1 table, its vmstate L2 table
and data clusters. A vmstate cluster that is all zeros is stored as a
zero or an unallocated cluster (alternately); ``compress`` lists the
clusters stored deflate-compressed (packed by the byte, as QEMU does).
"""

import collections
import struct
import subprocess
import zlib

CLUSTER_BITS = 12
CS = 1 << CLUSTER_BITS
L2E = CS // 8
DISK_SIZE = 1 << 20
DISK_BYTES = b'DISK' * (CS // 4)
COPIED = 1 << 63


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -12)
    return c.compress(data) + c.flush()


def zstd(data: bytes) -> bytes:
    """One zstd frame declaring its size, as QEMU writes it."""
    return subprocess.run(['zstd', '-q', '-c', '--stream-size=%d'
                           % len(data)], input=data, capture_output=True,
                          check=True).stdout


class Builder:
    def __init__(self, codec=deflate):
        self.codec = codec
        self.clusters = {}
        self.refs = collections.Counter()
        self.next = 0
        self.cpos = None

    def alloc(self, data: bytes = b'', refs: int = 1) -> int:
        i = self.next
        self.next += 1
        self.clusters[i] = bytearray(data.ljust(CS, b'\0'))
        self.refs[i] += refs
        return i * CS

    def put(self, offset: int, data: bytes) -> None:
        c, o = divmod(offset, CS)
        self.clusters[c][o:o + len(data)] = data

    def compressed(self, data: bytes) -> int:
        """An L2 entry for ``data`` compressed, packed after the last."""
        z = self.codec(data)
        if self.cpos is None or self.cpos % CS + len(z) > CS:
            self.cpos = self.alloc(refs=0)
        off = self.cpos
        self.put(off, z)
        self.refs[off // CS] += 1
        self.cpos += len(z)
        sectors = (off % 512 + len(z) + 511) // 512
        shift = 62 - (CLUSTER_BITS - 8)
        return (1 << 62) | ((sectors - 1) << shift) | off


def vmstate_l1_index() -> int:
    return -(-DISK_SIZE // (CS * L2E))


def _share(b: Builder, l1: int, l2: int) -> None:
    """Make L1 table ``l1`` map the vmstate L2 table ``l2`` too (with
    every refcount that adds).
    """
    b.put(l1 + 8 * vmstate_l1_index(), struct.pack('>Q', l2))
    b.refs[l2 // CS] += 1
    for i in range(L2E):
        e = struct.unpack_from('>Q', b.clusters[l2 // CS], 8 * i)[0]
        if e & (1 << 62):
            b.refs[(e & ((1 << (70 - CLUSTER_BITS)) - 1)) // CS] += 1
        elif e & ~1:
            b.refs[e // CS] += 1


def build(vmstates: dict, compress=(), share_active: str | None = None,
          bump_refcount: tuple = (), share: tuple = (),
          codec=deflate) -> bytes:
    """An image with one internal snapshot per ``vmstates`` item
    (name -> vmstate bytes).

    :param compress: (snapshot, cluster) pairs stored compressed.
    :param share_active: a snapshot whose vmstate the active L1 still
        maps (as QEMU leaves it after savevm).
    :param bump_refcount: (snapshot, cluster) pairs whose data cluster's
        refcount is one too high (shared with something unknown).
    :param share: ``(a, b)``: snapshot ``a``'s L1 maps snapshot ``b``'s
        vmstate L2 table at its own vmstate (they share it).
    :param codec: :func:`deflate` or :func:`zstd` (the header's
        compression type follows).
    """
    b = Builder(codec)
    hdr = b.alloc()
    rt = b.alloc()
    rb = b.alloc()
    n_l1 = vmstate_l1_index() + 1
    active_l1 = b.alloc()
    table = b.alloc()
    disk_l2 = b.alloc(refs=0)
    disk_data = b.alloc(DISK_BYTES, refs=0)
    b.put(disk_l2, struct.pack('>Q', disk_data))
    l1s = [active_l1]
    by_name = {}
    entries = []
    vm_l2 = {}
    for name, vm in vmstates.items():
        l1 = b.alloc()
        l1s.append(l1)
        by_name[name] = l1
        l2 = b.alloc()
        vm_l2[name] = l2
        b.put(l1 + 8 * vmstate_l1_index(), struct.pack('>Q', l2))
        for i in range(-(-len(vm) // CS)):
            chunk = vm[i * CS:(i + 1) * CS].ljust(CS, b'\0')
            if (name, i) in compress:
                entry = b.compressed(chunk)
            elif not any(chunk):
                entry = 1 if i % 2 else 0
            else:
                entry = b.alloc(chunk)
                if (name, i) in bump_refcount:
                    b.refs[entry // CS] += 1
            b.put(l2 + 8 * i, struct.pack('>Q', entry))
        extra = struct.pack('>QQ', len(vm), DISK_SIZE)
        sid = str(len(entries) + 1).encode()
        e = struct.pack('>QIHHIIQII', l1, n_l1, len(sid), len(name),
                        1700000000 + len(entries), 0, 0, len(vm) & 0xffffffff,
                        len(extra)) + extra + sid + name.encode()
        entries.append(e + b'\0' * (-len(e) % 8))
    for l1 in l1s:
        b.put(l1, struct.pack('>Q', disk_l2))
        b.refs[disk_l2 // CS] += 1
        b.refs[disk_data // CS] += 1
    if share_active:
        _share(b, active_l1, vm_l2[share_active])
    if share:
        a, src = share
        old = vm_l2[a]
        b.refs[old // CS] -= 1
        for i in range(L2E):
            e = struct.unpack_from('>Q', b.clusters[old // CS], 8 * i)[0]
            if e & ~1 and not e & (1 << 62):
                b.refs[e // CS] -= 1
        _share(b, by_name[a], vm_l2[src])
    snap_bytes = b''.join(entries)
    assert len(snap_bytes) <= CS
    b.put(table, snap_bytes)
    b.put(rt, struct.pack('>Q', rb))
    for c, n in b.refs.items():
        b.put(rb + 2 * c, struct.pack('>H', n))
    header = struct.pack('>4sIQIIQIIQQIIQ', b'QFI\xfb', 3, 0, 0,
                         CLUSTER_BITS, DISK_SIZE, 0, n_l1, active_l1, rt, 1,
                         len(vmstates), table if vmstates else 0)
    if codec is zstd:
        # Incompatible feature "compression type", header of 112 bytes.
        header += struct.pack('>QQQII', 1 << 3, 0, 0, 4, 112)
        header += bytes([1]) + bytes(7)
    else:
        header += struct.pack('>QQQII', 0, 0, 0, 4, 104)
    b.put(hdr, header)
    return b''.join(bytes(b.clusters[i]) for i in range(b.next))
