"""Fuzz targets for guest introspection parsers: vmcoreinfo text and BTF.

Every input either parses or raises a documented clear error
(:class:`sparc_nova.exception.SparcError`). Building drgn types from a
hostile BTF must not fail in drgn either: the parser validates first.
"""

import drgn

from sparc_nova import exception
from sparc_nova.introspect import btf
from sparc_nova.introspect import btf_finder
from sparc_nova.introspect import vmcoreinfo

MAX_TYPES = 20000
MAX_MEMBERS = 2000


def parse_vmcoreinfo(data: bytes) -> None:
    try:
        vmcoreinfo.parse(data, 0x1000)
    except exception.SparcError:
        pass


def _walk(t, budget, depth=0):
    """Force lazy member types, bounded in count and depth (a hostile
    BTF may nest a struct in itself by value).
    """
    if budget[0] <= 0 or depth > 32:
        return
    budget[0] -= 1
    if t.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION,
                  drgn.TypeKind.CLASS) and t.is_complete():
        for m in t.members:
            budget[0] -= 1
            if budget[0] <= 0:
                return
            mt = m.type
            m.bit_offset
            if mt.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION):
                _walk(mt, budget, depth + 1)


def parse_btf(data: bytes) -> None:
    try:
        types = btf.BtfTypes(data, max_types=MAX_TYPES)
        prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                          drgn.PlatformFlags.IS_64_BIT |
                                          drgn.PlatformFlags.IS_LITTLE_ENDIAN))
        finder = btf_finder.register(types, prog)
        budget = [MAX_MEMBERS]
        for tid in range(1, min(len(types) + 1, 200)):
            t = finder.drgn_type(tid)
            _walk(t, budget)
        for name in ('task_struct', 'list_head'):
            try:
                prog.type('struct ' + name)
            except LookupError:
                pass
    except exception.SparcError:
        pass


TARGETS = {'vmcoreinfo': parse_vmcoreinfo, 'btf': parse_btf}
