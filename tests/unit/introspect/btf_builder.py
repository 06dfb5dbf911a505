"""Build small BTF blobs for tests."""

import struct

from sparc_nova.introspect import btf


class BtfBuilder:
    def __init__(self):
        self.strings = bytearray(b'\0')
        self.types = []

    def s(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b'\0'
        return off

    def _add(self, name, kind, vlen, size_or_type, extra=b'',
             kind_flag=0):
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types.append(struct.pack('<III', self.s(name), info,
                                      size_or_type) + extra)
        return len(self.types)

    def int(self, name, size, signed=False, bits=None):
        enc = (btf.INT_SIGNED if signed else 0) << 24 | (bits or size * 8)
        return self._add(name, btf.KIND_INT, 0, size,
                         struct.pack('<I', enc))

    def ptr(self, target):
        return self._add('', btf.KIND_PTR, 0, target)

    def typedef(self, name, target):
        return self._add(name, btf.KIND_TYPEDEF, 0, target)

    def const(self, target):
        return self._add('', btf.KIND_CONST, 0, target)

    def array(self, elem, index, n):
        return self._add('', btf.KIND_ARRAY, 0, 0,
                         struct.pack('<III', elem, index, n))

    def struct(self, name, size, members, union=False):
        """members: (name, type, bit_offset, bitfield_size or 0)."""
        flag = int(any(m[3] for m in members))
        extra = b''.join(struct.pack(
            '<III', self.s(n), t, (bs << 24 | off) if flag else off)
            for n, t, off, bs in members)
        return self._add(name, btf.KIND_UNION if union else btf.KIND_STRUCT,
                         len(members), size, extra, flag)

    def enum(self, name, size, values, signed=False):
        extra = b''.join(struct.pack('<Ii', self.s(n), v)
                         for n, v in values)
        return self._add(name, btf.KIND_ENUM, len(values), size, extra,
                         int(signed))

    def fwd(self, name, union=False):
        return self._add(name, btf.KIND_FWD, 0, 0, kind_flag=int(union))

    def func_proto(self, ret, params):
        extra = b''.join(struct.pack('<II', self.s(n), t)
                         for n, t in params)
        return self._add('', btf.KIND_FUNC_PROTO, len(params), ret, extra)

    def func(self, name, proto):
        return self._add(name, btf.KIND_FUNC, 0, proto)

    def var(self, name, t):
        return self._add(name, btf.KIND_VAR, 0, t, struct.pack('<I', 1))

    def raw(self, data):
        self.types.append(data)
        return len(self.types)

    def blob(self):
        types = b''.join(self.types)
        hdr = struct.pack('<HBBIIIII', btf.BTF_MAGIC, 1, 0, 24, 0,
                          len(types), len(types), len(self.strings))
        return hdr + types + bytes(self.strings)


def sample():
    """A blob with one type of each kind the finder serves: a
    self-referencing struct with bit fields, an array, an anonymous
    union, a typedef, enums (one signed), a function, a variable and a
    const.
    """
    b = BtfBuilder()
    u32 = b.int('unsigned int', 4)
    ulong = b.int('long unsigned int', 8)
    i32 = b.int('int', 4, signed=True)
    node = b.fwd('node')                     # forward, completed below
    pnode = b.ptr(node)
    arr = b.array(ulong, u32, 4)
    full = b.struct('node', 56, [('next', pnode, 0, 0),
                                 ('flags', u32, 64, 3),
                                 ('mode', u32, 67, 5),
                                 ('count', i32, 96, 0),
                                 ('words', arr, 128, 0),
                                 ('', b.struct(None, 8, [('a', u32, 0, 0),
                                                         ('b', u32, 0, 0)],
                                               union=True), 384, 0)])
    b.typedef('node_t', full)
    b.enum('pid_type', 4, [('PIDTYPE_PID', 0), ('PIDTYPE_TGID', 1)])
    b.enum('', 4, [('NEG', -3)], signed=True)
    proto = b.func_proto(i32, [('n', pnode)])
    b.func('walk', proto)
    b.var('per_cpu_thing', ulong)
    b.const(full)
    return b
