"""The BTF parser (:mod:`sparc_nova.introspect.btf`): no drgn needed."""

import struct
import subprocess
import sys

import pytest

from sparc_nova.introspect import btf
from tests.unit.introspect import btf_builder


def test_indexes_and_records():
    types = btf.BtfTypes(btf_builder.sample().blob())
    node = types.find('struct', 'node')
    assert types.types[node].kind == btf.KIND_STRUCT
    assert types.find('union', 'node') is None
    assert types.find('base', 'unsigned long') is not None
    # Byte-aligned members only: 'mode' starts at bit 67.
    assert types.member_offsets('node') == {'next': 0, 'flags': 8,
                                            'count': 12, 'words': 16,
                                            '': 48}
    tid, i = types.enumerators['NEG']
    t = types.types[tid]
    assert btf.enum_value(t, types.items(t)[i]) == -3
    tid, i = types.enumerators['PIDTYPE_TGID']
    t = types.types[tid]
    assert btf.enum_value(t, types.items(t)[i]) == 1
    assert set(types.variables) == {'per_cpu_thing'}
    assert set(types.functions) == {'walk'}


def test_parser_does_not_import_drgn():
    code = ('import sys; import sparc_nova.introspect.btf; '
            'sys.exit("drgn" in sys.modules)')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0


@pytest.mark.parametrize('mangle, text', [
    (lambda d: b'\x00\x00' + d[2:], 'magic'),
    (lambda d: d[:8] + struct.pack('<I', 1 << 30) + d[12:], 'outside'),
    (lambda d: d[:30], 'outside'),
    (lambda d: d[:-1] + b'x', 'NUL'),
    (lambda d: d[:2] + b'\x07' + d[3:], 'version'),
])
def test_malformed(mangle, text):
    with pytest.raises(btf.BtfError, match=text):
        btf.BtfTypes(mangle(btf_builder.sample().blob()))


def test_unknown_kind_and_bad_string():
    b = btf_builder.BtfBuilder()
    b.raw(struct.pack('<III', 0, 31 << 24, 0))
    with pytest.raises(btf.BtfError, match='unknown kind'):
        btf.BtfTypes(b.blob())
    b = btf_builder.BtfBuilder()
    b.raw(struct.pack('<III', 10000, btf.KIND_INT << 24, 4) + b'\0' * 4)
    with pytest.raises(btf.BtfError, match='string offset'):
        btf.BtfTypes(b.blob())
