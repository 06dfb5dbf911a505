"""Write small BTF blobs (fuzzing seeds and tests).

Layout per the kernel's Documentation/bpf/btf.rst: a 24-byte header
(magic 0xeb9f, version 1, flags, hdr_len, type_off, type_len, str_off,
str_len), the type section, the string section.
"""

import struct


class BtfWriter:
    """Accumulates types; :meth:`blob` returns the BTF bytes."""

    def __init__(self):
        self.strings = bytearray(b'\0')
        self.types = bytearray()
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b'\0'
        return off

    def _add(self, name, kind, vlen, size_or_type, extra=b'', flag=0):
        info = (vlen & 0xffff) | (kind << 24) | (flag << 31)
        self.types += struct.pack('<III', self.s(name), info,
                                  size_or_type) + extra
        self.count += 1
        return self.count

    def int(self, name, size, signed=False):
        enc = 1 if signed else 0
        return self._add(name, 1, 0, size,
                         struct.pack('<I', (enc << 24) | (size * 8)))

    def ptr(self, target):
        return self._add('', 2, 0, target)

    def array(self, elem, index, n):
        return self._add('', 3, 0, 0, struct.pack('<III', elem, index, n))

    def struct(self, name, size, members, union=False, bitfields=False):
        """members: (name, type id, bit offset[, bit size])"""
        extra = b''
        for m in members:
            off = m[2] | ((m[3] << 24) if bitfields and len(m) > 3 else 0)
            extra += struct.pack('<III', self.s(m[0]), m[1], off)
        return self._add(name, 5 if union else 4, len(members), size, extra,
                         1 if bitfields else 0)

    def enum(self, name, values, size=4):
        extra = b''.join(struct.pack('<Ii', self.s(n), v) for n, v in values)
        return self._add(name, 6, len(values), size, extra)

    def typedef(self, name, target):
        return self._add(name, 8, 0, target)

    def fwd(self, name):
        return self._add(name, 7, 0, 0)

    def blob(self) -> bytes:
        hdr = struct.pack('<HBBIIIII', 0xeb9f, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def sample() -> bytes:
    """A blob shaped like the parts of a kernel's BTF the engine uses:
    a self-referential list, bit fields, a union, an enum, typedefs.
    """
    w = BtfWriter()
    u64 = w.int('long unsigned int', 8)
    i32 = w.int('int', 4, signed=True)
    u8 = w.int('unsigned char', 1)
    head_ptr = w.count + 2          # the pointer right after list_head
    head = w.struct('list_head', 16, [('next', head_ptr, 0),
                                      ('prev', head_ptr, 64)])
    assert w.ptr(head) == head_ptr
    comm = w.array(u8, i32, 16)
    state = w.enum('task_state', [('TASK_RUNNING', 0),
                                  ('TASK_INTERRUPTIBLE', 1)])
    pid_t = w.typedef('pid_t', i32)
    flags = w.struct('flags', 4, [('a', u64, 0, 3), ('b', u64, 3, 5)],
                     bitfields=True)
    anon = w.struct('anon', 8, [('x', u64, 0), ('y', i32, 0)], union=True)
    w.struct('task_struct', 64, [
        ('tasks', head, 0), ('pid', pid_t, 128), ('comm', comm, 160),
        ('state', state, 288), ('flags', flags, 320), ('u', anon, 384)])
    w.fwd('mm_struct')
    return w.blob()


def many_types(count: int) -> bytes:
    """A blob of ``count`` + 1 types: ``int`` and ``count`` typedefs of
    it with distinct names (every type indexed by name), for resource
    bound tests. Built in one pass: a million types take about a second.
    """
    w = BtfWriter()
    i32 = w.int('int', 4, signed=True)
    names = [b't%d' % k for k in range(count)]
    offsets = []
    off = len(w.strings)
    for name in names:
        offsets.append(off)
        off += len(name) + 1
    w.strings += b'\0'.join(names) + b'\0'
    head = struct.pack('<II', 8 << 24, i32)
    w.types += b''.join(struct.pack('<I', o) + head for o in offsets)
    w.count += count
    return w.blob()
