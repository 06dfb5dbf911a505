"""The drgn type and object finder for BTF.

drgn reads DWARF but not BTF: :func:`register` installs the types of a
parsed blob (:class:`sparc_nova.introspect.btf.BtfTypes`) in a
:class:`drgn.Program` as

* a type finder: structs and unions (members resolved lazily, bit fields
  included), enums, typedefs, base types, pointers, arrays, function
  prototypes;
* an object finder for enumerators (``prog["PIDTYPE_PID"]``), for
  per-CPU variables (BTF types them; addresses come from the symbol
  table) and for functions.

Every reference is checked again as it is followed (the blob is guest
memory); shapes drgn refuses and reference chains longer than
:data:`~sparc_nova.introspect.btf.MAX_QUALIFIER_CHAIN` raise
:class:`~sparc_nova.introspect.btf.BtfError`.
"""

from collections.abc import Callable
import struct

import drgn

from sparc_nova.introspect import btf

__all__ = ['BtfTypeFinder', 'register']


def register(types: btf.BtfTypes, prog: drgn.Program,
             symbol_address: Callable[[str], int | None] | None = None,
             name: str = 'btf') -> 'BtfTypeFinder':
    """Serve ``types`` to ``prog`` (:class:`BtfTypeFinder`, registered as
    ``name``) and return the finder.

    :param symbol_address: callable(name) -> address or None, used to
        place variables and functions (e.g. from kallsyms).
    """
    finder = BtfTypeFinder(types, prog, symbol_address)
    finder.register(name)
    return finder


class BtfTypeFinder:
    """The types of one parsed BTF blob as drgn types of one program.

    :param types: the parsed blob.
    :param prog: the program the drgn types are made for.
    :param symbol_address: callable(name) -> address or None, used to
        place variables and functions (e.g. from kallsyms).
    """

    def __init__(self, types: btf.BtfTypes, prog: drgn.Program,
                 symbol_address: Callable[[str], int | None] | None = None):
        self.btf = types
        self._prog = prog
        self._drgn = {}
        self._symbol_address = symbol_address or (lambda n: None)

    def register(self, name: str = 'btf') -> None:
        """Install this finder in the program: as its first type finder
        and as its last object finder (enumerators, per-CPU variables,
        functions).
        """
        self._prog.register_type_finder(name, self._find_type,
                                        enable_index=0)
        self._prog.register_object_finder(name, self._find_object,
                                          enable_index=-1)

    def drgn_type(self, tid: int) -> drgn.Type:
        """The drgn type for BTF type id ``tid`` (made once, then cached).

        :raises BtfError: the type is malformed or drgn cannot represent
            it.
        """
        t = self._drgn.get(tid)
        if t is None:
            try:
                t = self._build(tid, 0)
            except (ValueError, OverflowError, TypeError) as e:
                # drgn refuses shapes no compiler emits (an integer of
                # 4 billion bits...): that is malformed BTF, say so.
                raise btf.BtfError('type %d cannot be represented: %s'
                                   % (tid, e))
            self._drgn[tid] = t
        return t

    def _find_type(self, prog, kinds, name, filename):
        for kind in kinds:
            key = {drgn.TypeKind.STRUCT: 'struct',
                   drgn.TypeKind.UNION: 'union',
                   drgn.TypeKind.ENUM: 'enum',
                   drgn.TypeKind.TYPEDEF: 'typedef',
                   drgn.TypeKind.INT: 'base',
                   drgn.TypeKind.BOOL: 'base',
                   drgn.TypeKind.FLOAT: 'base'}.get(kind)
            if key is None:
                continue
            tid = self.btf.by_kind[key].get(name)
            if tid is not None:
                t = self.drgn_type(tid)
                if t.kind == kind:
                    return t
        return None

    def _find_object(self, prog, name, flags, filename):
        if flags & drgn.FindObjectFlags.CONSTANT:
            hit = self.btf.enumerators.get(name)
            if hit is not None:
                tid, i = hit
                t = self.btf.types[tid]
                return drgn.Object(prog, self.drgn_type(tid),
                                   btf.enum_value(t, self.btf.items(t)[i]))
        for flag, table in ((drgn.FindObjectFlags.VARIABLE,
                             self.btf.variables),
                            (drgn.FindObjectFlags.FUNCTION,
                             self.btf.functions)):
            tid = table.get(name) if flags & flag else None
            if tid is not None:
                addr = self._symbol_address(name)
                if addr is not None:
                    return drgn.Object(prog, self.drgn_type(tid),
                                       address=addr)
        return None

    def _build(self, tid: int, depth: int) -> drgn.Type:
        prog = self._prog
        if tid == 0:
            return prog.void_type()
        if depth > btf.MAX_QUALIFIER_CHAIN:
            raise btf.BtfError('type %d: reference chain longer than %d'
                               % (tid, btf.MAX_QUALIFIER_CHAIN))
        types = self.btf
        if tid >= len(types.types):
            raise btf.BtfError('type %d does not exist (there are %d)'
                               % (tid, len(types.types) - 1))
        t = types.types[tid]
        k = t.kind
        if k == btf.KIND_INT:
            (enc,) = struct.unpack('<I', t.extra)
            flags = (enc >> 24) & 0xf
            if t.size_or_type not in (1, 2, 4, 8, 16):
                raise btf.BtfError('integer type %d (%s) is %d bytes'
                                   % (tid, t.name, t.size_or_type))
            name = btf.CANONICAL_INT.get(t.name, t.name)
            if flags & btf.INT_BOOL:
                return prog.bool_type(name, t.size_or_type)
            return prog.int_type(name, t.size_or_type,
                                 bool(flags & btf.INT_SIGNED))
        if k == btf.KIND_FLOAT:
            if t.size_or_type not in (2, 4, 8, 10, 12, 16):
                raise btf.BtfError('float type %d (%s) is %d bytes'
                                   % (tid, t.name, t.size_or_type))
            return prog.float_type(t.name, t.size_or_type)
        if k == btf.KIND_PTR:
            return prog.pointer_type(self._ref(types.target(t), depth))
        if k == btf.KIND_ARRAY:
            elem, _, nelems = struct.unpack('<III', t.extra)
            types.check_ref(elem, t, 'element')
            if elem == 0:
                raise btf.BtfError('array type %d has void elements' % tid)
            return prog.array_type(self._ref(elem, depth), nelems)
        if k in (btf.KIND_STRUCT, btf.KIND_UNION):
            return self._compound(t)
        if k == btf.KIND_FWD:
            # A forward declaration stands for the full definition of the
            # same name when the blob has one (as DWARF consumers do).
            full = types.by_kind['union' if t.kind_flag else 'struct'].get(
                t.name)
            if full is not None and types.types[full].kind != btf.KIND_FWD:
                return self._ref(full, depth)
            tag = t.name or None
            return (prog.union_type(tag) if t.kind_flag
                    else prog.struct_type(tag))
        if k in (btf.KIND_ENUM, btf.KIND_ENUM64):
            size = t.size_or_type
            if size not in (1, 2, 4, 8):
                raise btf.BtfError('enum type %d (%s) is %d bytes'
                                   % (tid, t.name, size))
            signed = bool(t.kind_flag)
            base = {1: 'char', 2: 'short', 4: 'int'}.get(size, 'long')
            compat = prog.int_type(base if signed else 'unsigned ' + base,
                                   size, signed)
            enumerators = [drgn.TypeEnumerator(types.string(item[0]),
                                               btf.enum_value(t, item))
                           for item in types.items(t)]
            return prog.enum_type(t.name or None, compat, enumerators)
        if k == btf.KIND_TYPEDEF:
            return prog.typedef_type(t.name, self._ref(types.target(t),
                                                       depth))
        if k in (btf.KIND_VOLATILE, btf.KIND_CONST, btf.KIND_RESTRICT):
            q = {btf.KIND_VOLATILE: drgn.Qualifiers.VOLATILE,
                 btf.KIND_CONST: drgn.Qualifiers.CONST,
                 btf.KIND_RESTRICT: drgn.Qualifiers.RESTRICT}[k]
            inner = self._ref(types.target(t), depth)
            return inner.qualified(inner.qualifiers | q)
        if k in (btf.KIND_TYPE_TAG, btf.KIND_DECL_TAG, btf.KIND_VAR,
                 btf.KIND_FUNC):
            return self._ref(types.target(t), depth)
        if k == btf.KIND_FUNC_PROTO:
            params = []
            variadic = False
            items = types.items(t)
            for i, (name_off, ptype) in enumerate(items):
                if ptype == 0 and i == len(items) - 1:
                    variadic = True
                    continue
                params.append(drgn.TypeParameter(
                    self._lazy(ptype), types.string(name_off) or None))
            return prog.function_type(self._ref(types.target(t), depth),
                                      params, variadic)
        if k == btf.KIND_DATASEC:
            return prog.void_type()
        raise btf.BtfError('type %d has unsupported kind %d' % (tid, k))

    def _ref(self, tid, depth):
        if tid in self._drgn:
            return self._drgn[tid]
        t = self._build(tid, depth + 1)
        self._drgn[tid] = t
        return t

    def _lazy(self, tid):
        return lambda: self.drgn_type(tid)

    def _compound(self, t):
        prog = self._prog
        members = []
        for name_off, mtype, off in self.btf.items(t):
            if t.kind_flag:
                bit_size = off >> 24
                bit_off = off & 0xffffff
            else:
                bit_size = 0
                bit_off = off
            if bit_size > 64:
                raise btf.BtfError('type %d (%s): bit field of %d bits'
                                   % (t.id, t.name, bit_size))
            if bit_off > t.size_or_type * 8:
                raise btf.BtfError('type %d (%s): member at bit %d is outside '
                                   'its %d bytes' % (t.id, t.name, bit_off,
                                                     t.size_or_type))
            name = self.btf.string(name_off) or None
            members.append(drgn.TypeMember(
                self._member_thunk(mtype, bit_size), name, bit_off))
        ctor = prog.struct_type if t.kind == btf.KIND_STRUCT else \
            prog.union_type
        return ctor(t.name or None, t.size_or_type, members)

    def _member_thunk(self, mtype, bit_size):
        if bit_size:
            def thunk():
                mt = self.drgn_type(mtype)
                try:
                    return drgn.Object(self._prog, mt,
                                       bit_field_size=bit_size)
                except (ValueError, OverflowError, TypeError) as e:
                    raise btf.BtfError('bit field of %d bits of type %d: %s'
                                       % (bit_size, mtype, e))
            return thunk
        return lambda: self.drgn_type(mtype)
