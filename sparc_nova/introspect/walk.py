"""Bounded walks of kernel linked lists.

Guest memory is untrusted: every walk has a length limit and remembers the
nodes it visited, so a cycle that does not pass through the list head, a
pointer into unmapped memory or an absurdly long list ends in a
:class:`CorruptStructure` error that says which list and where.
"""

import drgn
from drgn.helpers.linux import mm as mm_helpers

from sparc_nova import exception


class CorruptStructure(exception.SparcError):
    """A kernel data structure in guest memory is inconsistent."""


def vmas(mm: drgn.Object, what: str):
    """drgn's ``for_each_vma(mm)``, the VMAs of an address space.

    Bounded by the caller (a count and a read budget); a maple tree node
    of a type no kernel writes, which drgn refuses with
    NotImplementedError, raises :class:`CorruptStructure` naming
    ``what``.
    """
    it = mm_helpers.for_each_vma(mm)
    while True:
        try:
            vma = next(it)
        except StopIteration:
            return
        except NotImplementedError as e:
            raise CorruptStructure('%s: the VMA tree is corrupt (%s)'
                                   % (what, e))
        yield vma


def list_nodes(prog: drgn.Program, head: int, limit: int, what: str):
    """Addresses of the ``struct list_head`` nodes of the list whose head
    is at ``head`` (the head itself excluded), in ``next`` order.

    :raises CorruptStructure: a cycle, more than ``limit`` nodes, a NULL
        or unreadable pointer, or a node whose ``prev`` does not point
        back.
    """
    seen = {head}
    prev = head
    try:
        node = prog.read_u64(head)
    except drgn.FaultError as e:
        raise CorruptStructure('%s: list head 0x%x is unreadable (%s)'
                               % (what, head, e))
    count = 0
    while node != head:
        if node == 0:
            raise CorruptStructure('%s: NULL next pointer after node 0x%x'
                                   % (what, prev))
        if node in seen:
            raise CorruptStructure('%s: cycle: node 0x%x is reached twice '
                                   'without returning to the head 0x%x'
                                   % (what, node, head))
        count += 1
        if count > limit:
            raise CorruptStructure('%s: more than %d entries'
                                   % (what, limit))
        seen.add(node)
        try:
            back = prog.read_u64(node + 8)
            nxt = prog.read_u64(node)
        except drgn.FaultError as e:
            raise CorruptStructure('%s: node 0x%x (after 0x%x) is '
                                   'unreadable (%s)' % (what, node, prev, e))
        if back != prev:
            raise CorruptStructure('%s: node 0x%x has prev 0x%x, expected '
                                   '0x%x' % (what, node, back, prev))
        yield node
        prev = node
        node = nxt


def list_entries(prog: drgn.Program, head: int, type_name: str,
                 member: str, limit: int, what: str):
    """``type_name *`` objects linked through ``member`` on the list at
    ``head`` (see :func:`list_nodes`).
    """
    ptype = prog.type(type_name + ' *')
    offset = drgn.offsetof(prog.type(type_name), member)
    for node in list_nodes(prog, head, limit, what):
        yield drgn.Object(prog, ptype, value=node - offset)
