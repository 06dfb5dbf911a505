"""A BTF (BPF Type Format) parser.

The guest kernel carries its own type information as BTF between the
``__start_BTF`` and ``__stop_BTF`` symbols. :class:`BtfTypes` parses a
BTF blob into raw type records and name indexes; it knows nothing of
drgn (:mod:`sparc_nova.introspect.btf_finder` serves these types to a
:class:`drgn.Program`).

The blob is untrusted guest memory: the header, every section offset,
every type id and every string offset is checked, and the number of types
is capped. Errors raise :class:`BtfError` with the byte offset.

Format reference: the kernel's ``Documentation/bpf/btf.rst``.
"""

import array
import struct

import numpy as np

from sparc_nova import exception

__all__ = ['BtfError', 'BtfType', 'BtfTypes', 'enum_value', 'CANONICAL_INT',
           'BTF_MAGIC', 'MAX_BTF_BYTES', 'MAX_TYPES', 'MAX_QUALIFIER_CHAIN',
           'INT_SIGNED', 'INT_CHAR', 'INT_BOOL',
           'KIND_INT', 'KIND_PTR', 'KIND_ARRAY', 'KIND_STRUCT', 'KIND_UNION',
           'KIND_ENUM', 'KIND_FWD', 'KIND_TYPEDEF', 'KIND_VOLATILE',
           'KIND_CONST', 'KIND_RESTRICT', 'KIND_FUNC', 'KIND_FUNC_PROTO',
           'KIND_VAR', 'KIND_DATASEC', 'KIND_FLOAT', 'KIND_DECL_TAG',
           'KIND_TYPE_TAG', 'KIND_ENUM64']

BTF_MAGIC = 0xeb9f
HEADER = struct.Struct('<HBBIIIII')

KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19
MAX_KIND = KIND_ENUM64

INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

#: Bytes of kind-specific data after the 12-byte common header:
#: (fixed, per vlen item).
_EXTRA = {
    KIND_INT: (4, 0), KIND_PTR: (0, 0), KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12), KIND_UNION: (0, 12), KIND_ENUM: (0, 8),
    KIND_FWD: (0, 0), KIND_TYPEDEF: (0, 0), KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0), KIND_RESTRICT: (0, 0), KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8), KIND_VAR: (4, 0), KIND_DATASEC: (0, 12),
    KIND_FLOAT: (0, 0), KIND_DECL_TAG: (4, 0), KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),
}

#: GCC's base type names and the names drgn uses for them.
CANONICAL_INT = {
    'short int': 'short', 'short unsigned int': 'unsigned short',
    'long int': 'long', 'long unsigned int': 'unsigned long',
    'long long int': 'long long',
    'long long unsigned int': 'unsigned long long',
    'char': 'char', 'signed char': 'signed char',
    'unsigned char': 'unsigned char', 'int': 'int',
    'unsigned int': 'unsigned int', '_Bool': '_Bool',
}

#: Limits for an untrusted blob.
MAX_BTF_BYTES = 64 * 1024 * 1024
MAX_TYPES = 1000000
MAX_QUALIFIER_CHAIN = 64


class BtfError(exception.SparcError):
    """The BTF blob is malformed."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        self.reason = message
        super().__init__('BTF: %s%s' % (
            message, '' if offset is None else ' (at byte %d)' % offset))


class BtfType:
    """One parsed BTF type record (raw; drgn types are built lazily)."""

    __slots__ = ('id', 'kind', 'name', 'vlen', 'kind_flag', 'size_or_type',
                 'extra', 'items')

    def __init__(self, tid, kind, name, vlen, kind_flag, size_or_type,
                 extra, items):
        self.id = tid
        self.kind = kind
        self.name = name
        self.vlen = vlen
        self.kind_flag = kind_flag
        self.size_or_type = size_or_type
        self.extra = extra
        self.items = items


class _Types:
    """The types of a blob by id, as a read-only sequence (id 0 is void,
    None): the common header fields are numpy columns; a
    :class:`BtfType` is made the first time its id is looked up.
    """

    def __init__(self, owner: 'BtfTypes', starts: np.ndarray):
        self._owner = owner
        self.starts = starts
        u8 = np.frombuffer(owner.data, dtype=np.uint8)
        head = u8[starts[:, None] + np.arange(12)].view('<u4')
        name_off, info, self.size_or_type = head[:, 0], head[:, 1], \
            head[:, 2]
        self.kind = (info >> 24) & 0x1f
        self.vlen = info & 0xffff
        self.kind_flag = info >> 31
        self.names = owner._names(name_off.astype(np.int64))
        self._made = {}

    def __len__(self) -> int:
        return len(self.starts) + 1

    def __getitem__(self, tid: int) -> BtfType | None:
        if not 0 <= tid <= len(self.starts):
            raise IndexError(tid)
        if tid == 0:
            return None
        t = self._made.get(tid)
        if t is None:
            i = tid - 1
            kind = int(self.kind[i])
            fixed, per = _EXTRA[kind]
            body = int(self.starts[i]) + 12
            vlen = int(self.vlen[i])
            # Members, parameters and enumerators are decoded on first
            # use (most of the ~100k types of a kernel are never looked
            # at).
            items = (body + fixed, body + fixed + per * vlen) if per \
                else None
            t = BtfType(tid, kind, self.names[i], vlen,
                        int(self.kind_flag[i]), int(self.size_or_type[i]),
                        self._owner.data[body:body + fixed], items)
            self._made[tid] = t
        return t


class BtfTypes:
    """The types of one BTF blob.

    :param data: the raw BTF (header, type section, string section).
    :raises BtfError: the blob is malformed.
    """

    def __init__(self, data: bytes, max_types: int = MAX_TYPES):
        if len(data) > MAX_BTF_BYTES:
            raise BtfError('%d bytes is more than the %d bytes allowed'
                           % (len(data), MAX_BTF_BYTES))
        self.data = bytes(data)
        self._parse_header()
        self._parse_types(max_types)
        self._index()

    # -- parsing -----------------------------------------------------------

    def _parse_header(self):
        d = self.data
        if len(d) < HEADER.size:
            raise BtfError('blob of %d bytes is shorter than the header'
                           % len(d), 0)
        (magic, version, _flags, hdr_len, type_off, type_len, str_off,
         str_len) = HEADER.unpack_from(d)
        if magic != BTF_MAGIC:
            raise BtfError('bad magic 0x%04x (expected 0x%04x)'
                           % (magic, BTF_MAGIC), 0)
        if version != 1:
            raise BtfError('unsupported version %d' % version, 2)
        if hdr_len < HEADER.size or hdr_len > len(d):
            raise BtfError('header length %d out of range' % hdr_len, 4)
        ts = hdr_len + type_off
        ss = hdr_len + str_off
        if type_len % 4 or ts + type_len > len(d) or ss + str_len > len(d):
            raise BtfError('type or string section (%d+%d, %d+%d) outside '
                           'the %d-byte blob' % (ts, type_len, ss, str_len,
                                                 len(d)), 8)
        if str_len == 0 or d[ss + str_len - 1] != 0:
            raise BtfError('string section is not NUL-terminated', ss)
        self._types_start = ts
        self._types_end = ts + type_len
        self._str_start = ss
        self._str_len = str_len

    def string(self, off: int) -> str:
        """The NUL-terminated string at ``off`` in the string section."""
        if off >= self._str_len:
            raise BtfError('string offset %d outside the %d-byte string '
                           'section' % (off, self._str_len))
        start = self._str_start + off
        end = self.data.index(b'\0', start)
        return self.data[start:end].decode('ascii', 'replace')

    def _parse_types(self, max_types):
        """Walk the type section (one short step per type) and decode
        the common headers and names in numpy; :class:`BtfType` objects
        are made on first use (:class:`_Types`).
        """
        d = self.data
        pos = self._types_start
        end = self._types_end
        info_at = struct.Struct('<I').unpack_from
        starts = array.array('q')
        tid = 1
        while pos < end:
            if tid > max_types:
                raise BtfError('more than %d types' % max_types, pos)
            if pos + 12 > end:
                raise BtfError('truncated type %d' % tid, pos)
            info = info_at(d, pos + 4)[0]
            kind = (info >> 24) & 0x1f
            if kind < 1 or kind > MAX_KIND:
                raise BtfError('type %d has unknown kind %d' % (tid, kind),
                               pos)
            fixed, per = _EXTRA[kind]
            nxt = pos + 12 + fixed + per * (info & 0xffff)
            if nxt > end:
                raise BtfError('type %d (kind %d, %d items) runs past the '
                               'type section' % (tid, kind, info & 0xffff),
                               pos)
            starts.append(pos)
            pos = nxt
            tid += 1
        self.types = _Types(self, np.frombuffer(starts, dtype=np.int64))

    def _names(self, name_offs: np.ndarray,
               empty_at_0: bool = True) -> list[str]:
        """The strings at ``name_offs`` (checked; '' for offset 0 when
        ``empty_at_0``, as for type names).
        """
        bad = np.nonzero(name_offs >= self._str_len)[0]
        if len(bad):
            self.string(int(name_offs[bad[0]]))     # raises
        sec = np.frombuffer(self.data, dtype=np.uint8, count=self._str_len,
                            offset=self._str_start)
        nul = np.flatnonzero(sec == 0)
        ends = nul[np.searchsorted(nul, name_offs)]
        d, ss = self.data, self._str_start
        return [d[ss + a:ss + b].decode('ascii', 'replace')
                if a or not empty_at_0 else ''
                for a, b in zip(name_offs.tolist(), ends.tolist())]

    def items(self, t: BtfType) -> list[tuple]:
        """The members / enumerators / parameters / variables of ``t``,
        checked (type ids in range, string offsets valid).
        """
        if not isinstance(t.items, tuple):
            return t.items or []
        start, end = t.items
        fmt = {KIND_ENUM: '<Ii', KIND_FUNC_PROTO: '<II'}.get(t.kind, '<III')
        items = list(struct.iter_unpack(fmt, self.data[start:end]))
        for item in items:
            if t.kind in (KIND_STRUCT, KIND_UNION, KIND_FUNC_PROTO):
                self.string(item[0])
                self.check_ref(item[1], t, 'member')
            elif t.kind == KIND_DATASEC:
                self.check_ref(item[0], t, 'variable')
            else:
                self.string(item[0])
        t.items = items
        return items

    def check_ref(self, ref: int, t: BtfType, what: str) -> None:
        """Raise :class:`BtfError` unless ``ref`` (a type id that ``t``
        refers to as its ``what``) names a type of this blob.
        """
        if ref >= len(self.types):
            raise BtfError('type %d (%s) refers to %s type %d but there '
                           'are only %d types' % (t.id, t.name or '<anon>',
                                                  what, ref,
                                                  len(self.types) - 1))

    def target(self, t: BtfType) -> int:
        """The type id ``t`` refers to (pointer target, typedef, qualifier,
        variable or function type), checked with :meth:`check_ref`.
        """
        self.check_ref(t.size_or_type, t, 'target')
        return t.size_or_type

    def _index(self):
        """Name indexes: per drgn kind, enumerators, variables, functions
        (the first type of a name wins, a complete struct or union over a
        forward declaration).
        """
        cols = self.types
        kind, flag, names, target = cols.kind, cols.kind_flag, cols.names, \
            cols.size_or_type
        named = np.array([bool(n) for n in names], dtype=bool)

        def last_first(sel):
            """Named type ids of ``sel``, last first (so that in a dict
            built from them the first type of a name wins).
            """
            return (np.nonzero(sel & named)[0] + 1).tolist()[::-1]

        self.by_kind = {}
        fwd = kind == KIND_FWD
        for key, full, fwd_flag in (('struct', KIND_STRUCT, 0),
                                    ('union', KIND_UNION, 1)):
            # The first complete definition of a name, else its first
            # forward declaration.
            table = {names[i - 1]: i
                     for i in last_first(fwd & (flag == fwd_flag))}
            table.update({names[i - 1]: i for i in last_first(kind == full)})
            self.by_kind[key] = table
        enums = (kind == KIND_ENUM) | (kind == KIND_ENUM64)
        self.by_kind['enum'] = {names[i - 1]: i for i in last_first(enums)}
        self.by_kind['typedef'] = {names[i - 1]: i for i in
                                   last_first(kind == KIND_TYPEDEF)}
        self.by_kind['base'] = {
            CANONICAL_INT.get(names[i - 1], names[i - 1]): i
            for i in last_first((kind == KIND_INT) | (kind == KIND_FLOAT))}
        self.variables = {names[i - 1]: int(target[i - 1])
                          for i in last_first(kind == KIND_VAR)}
        self.functions = {names[i - 1]: int(target[i - 1])
                          for i in last_first(kind == KIND_FUNC)}
        self.enumerators = self._enumerators(np.nonzero(enums)[0] + 1)

    def _enumerators(self, tids: np.ndarray) -> dict:
        """Enumerator name -> (enum type id, item index) for the enum
        types ``tids`` (the first of a name wins), decoded in numpy.
        """
        cols = self.types
        counts = cols.vlen[tids - 1].astype(np.int64)
        per = np.where(cols.kind[tids - 1] == KIND_ENUM64, 12, 8)
        owner = np.repeat(np.arange(len(tids)), counts)
        index = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts,
                                                  counts)
        pos = cols.starts[tids - 1][owner] + 12 + index * per[owner]
        u8 = np.frombuffer(self.data, dtype=np.uint8)
        name_offs = u8[pos[:, None] + np.arange(4)].view('<u4')[:, 0]
        names = self._names(name_offs.astype(np.int64), empty_at_0=False)
        keys = zip(tids[owner].tolist(), index.tolist())
        return dict(zip(names[::-1], list(keys)[::-1]))

    def __len__(self) -> int:
        return len(self.types) - 1

    def find(self, kind: str, name: str) -> int | None:
        """The type id of a named ``struct``/``union``/``enum``/
        ``typedef``/``base`` type, or None.
        """
        return self.by_kind[kind].get(name)

    def member_offsets(self, struct_name: str) -> dict[str, int]:
        """Byte offsets of a struct's direct, named, non-bitfield members
        (a cheap check that does not need drgn).
        """
        tid = self.find('struct', struct_name)
        if tid is None:
            raise KeyError(struct_name)
        t = self.types[tid]
        out = {}
        for name_off, _, off in self.items(t):
            bits = off & 0xffffff if t.kind_flag else off
            if bits % 8 == 0:
                out[self.string(name_off)] = bits // 8
        return out


def enum_value(t: BtfType, item: tuple) -> int:
    """The value of enumerator ``item`` (an entry of
    :meth:`BtfTypes.items`) of the enum type ``t``, signed when ``t``'s
    kind flag says so (32 bits for ``ENUM``, 64 for ``ENUM64``).
    """
    if t.kind == KIND_ENUM64:
        v = item[1] | (item[2] << 32)
        if t.kind_flag and v >> 63:
            v -= 1 << 64
        return v
    v = item[1]
    if not t.kind_flag and v < 0:
        v += 1 << 32
    return v
