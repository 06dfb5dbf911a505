"""The drgn finder for BTF types (:mod:`sparc_nova.introspect.btf_finder`)."""

import os

import drgn
import pytest

from sparc_nova.introspect import btf
from sparc_nova.introspect import btf_finder
from tests.unit.introspect import btf_builder


def _prog():
    return drgn.Program(drgn.Platform(
        drgn.Architecture.X86_64,
        drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))


def test_types_and_objects():
    types = btf.BtfTypes(btf_builder.sample().blob())
    prog = _prog()
    btf_finder.register(types, prog,
                        {'walk': 0x1000, 'per_cpu_thing': 0x20}.get)
    node = prog.type('struct node')
    assert node.size == 56
    assert [m.name for m in node.members] == ['next', 'flags', 'mode',
                                              'count', 'words', None]
    assert node.member('flags').bit_field_size == 3
    assert node.member('mode').bit_offset == 67
    assert node.member('next').type.type.size == 56     # self-reference
    assert node.member('words').type.length == 4
    assert node.member('a').offset == 48                # anonymous union
    assert prog.type('node_t').type.tag == 'node'
    assert prog.type('unsigned long').size == 8
    assert prog['PIDTYPE_TGID'].value_() == 1
    assert prog['NEG'].value_() == -3
    assert prog['walk'].address_ == 0x1000
    assert prog['per_cpu_thing'].address_ == 0x20
    assert prog['walk'].type_.parameters[0].name == 'n'


def test_bitfield_reads():
    types = btf.BtfTypes(btf_builder.sample().blob())
    prog = _prog()
    data = bytearray(56)
    data[8] = 0b10111_101          # mode=0b10111, flags=0b101
    prog.add_memory_segment(0x5000, 56, lambda a, c, o, p: bytes(
        data[o:o + c]))
    btf_finder.register(types, prog)
    obj = drgn.Object(prog, 'struct node', address=0x5000)
    assert obj.flags.value_() == 5 and obj.mode.value_() == 0b10111


def test_bad_references():
    b = btf_builder.BtfBuilder()
    b.ptr(99)
    types = btf.BtfTypes(b.blob())
    prog = _prog()
    finder = btf_finder.register(types, prog)
    with pytest.raises(btf.BtfError, match='refers to'):
        finder.drgn_type(1)


def test_typedef_loop_is_an_error_not_a_hang():
    b = btf_builder.BtfBuilder()
    b.typedef('a', 2)
    b.typedef('b', 1)
    types = btf.BtfTypes(b.blob())
    prog = _prog()
    btf_finder.register(types, prog)
    with pytest.raises(btf.BtfError, match='chain'):
        prog.type('a')


@pytest.mark.skipif(not os.path.exists('/sys/kernel/btf/vmlinux'),
                    reason='the host kernel has no BTF')
def test_host_kernel_btf():
    with open('/sys/kernel/btf/vmlinux', 'rb') as f:
        types = btf.BtfTypes(f.read())
    prog = _prog()
    btf_finder.register(types, prog)
    ts = prog.type('struct task_struct')
    assert ts.has_member('pid') and ts.has_member('comm')
    assert prog.type('struct list_head').size == 16
    assert prog['PIDTYPE_PID'].value_() == 0
