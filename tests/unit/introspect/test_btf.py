import os
import struct

import drgn
import pytest

from sparc_nova.introspect import btf
from tests.unit.introspect import btf_builder


def _prog():
    return drgn.Program(drgn.Platform(
        drgn.Architecture.X86_64,
        drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))


def _sample():
    b = btf_builder.BtfBuilder()
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


def test_types_and_objects():
    types = btf.BtfTypes(_sample().blob())
    prog = _prog()
    types.register(prog, {'walk': 0x1000, 'per_cpu_thing': 0x20}.get)
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
    types = btf.BtfTypes(_sample().blob())
    prog = _prog()
    data = bytearray(56)
    data[8] = 0b10111_101          # mode=0b10111, flags=0b101
    prog.add_memory_segment(0x5000, 56, lambda a, c, o, p: bytes(
        data[o:o + c]))
    types.register(prog)
    obj = drgn.Object(prog, 'struct node', address=0x5000)
    assert obj.flags.value_() == 5 and obj.mode.value_() == 0b10111


@pytest.mark.parametrize('mangle, text', [
    (lambda d: b'\x00\x00' + d[2:], 'magic'),
    (lambda d: d[:8] + struct.pack('<I', 1 << 30) + d[12:], 'outside'),
    (lambda d: d[:30], 'outside'),
    (lambda d: d[:-1] + b'x', 'NUL'),
    (lambda d: d[:2] + b'\x07' + d[3:], 'version'),
])
def test_malformed(mangle, text):
    with pytest.raises(btf.BtfError, match=text):
        btf.BtfTypes(mangle(_sample().blob()))


def test_bad_references():
    b = btf_builder.BtfBuilder()
    b.ptr(99)
    types = btf.BtfTypes(b.blob())
    prog = _prog()
    types.register(prog)
    with pytest.raises(btf.BtfError, match='refers to'):
        types.drgn_type(1)


def test_unknown_kind_and_bad_string():
    b = btf_builder.BtfBuilder()
    b.raw(struct.pack('<III', 0, 31 << 24, 0))
    with pytest.raises(btf.BtfError, match='unknown kind'):
        btf.BtfTypes(b.blob())
    b = btf_builder.BtfBuilder()
    b.raw(struct.pack('<III', 10000, btf.KIND_INT << 24, 4) + b'\0' * 4)
    with pytest.raises(btf.BtfError, match='string offset'):
        btf.BtfTypes(b.blob())


def test_typedef_loop_is_an_error_not_a_hang():
    b = btf_builder.BtfBuilder()
    b.typedef('a', 2)
    b.typedef('b', 1)
    types = btf.BtfTypes(b.blob())
    prog = _prog()
    types.register(prog)
    with pytest.raises(btf.BtfError, match='chain'):
        prog.type('a')


@pytest.mark.skipif(not os.path.exists('/sys/kernel/btf/vmlinux'),
                    reason='the host kernel has no BTF')
def test_host_kernel_btf():
    with open('/sys/kernel/btf/vmlinux', 'rb') as f:
        types = btf.BtfTypes(f.read())
    prog = _prog()
    types.register(prog)
    ts = prog.type('struct task_struct')
    assert ts.has_member('pid') and ts.has_member('comm')
    assert prog.type('struct list_head').size == 16
    assert prog['PIDTYPE_PID'].value_() == 0
