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
