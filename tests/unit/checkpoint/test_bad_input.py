"""Hostile or broken checkpoints give clear errors naming the file and the
offset, and nothing is written."""

import struct

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import limits
from sparc_nova.cmd import sparc
from sparc_nova import exception
from tests import streamgen


def stream_offset(data):
    return data.index(b'QEVM')


def check_error(tmp_path, data, cls, *words, **kw):
    path = tmp_path / 'bad.img'
    path.write_bytes(data)
    with pytest.raises(cls) as ei:
        checkpoint.open_checkpoint(str(path), **kw)
    msg = str(ei.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    # The CLI says the same and writes nothing.
    out = tmp_path / 'ram.raw'
    assert sparc.main(['checkpoint', 'extract-ram', str(path),
                       str(out)]) == 2
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.img']
    return ei.value


def test_truncated_header(tmp_path):
    e = check_error(tmp_path, streamgen.simple_save()[:50],
                    exception.CheckpointFormatError, 'shorter than')
    assert e.offset == 50


@pytest.mark.parametrize('cut', [200, 5000, -3000])
def test_truncated_stream(tmp_path, cut):
    data = streamgen.simple_save(ram_pages=16)
    data = data[:stream_offset(data) + cut] if cut > 0 else data[:cut]
    e = check_error(tmp_path, data, exception.CheckpointFormatError)
    assert e.offset is not None
    assert 'at offset' in str(e)


def test_wrong_magic(tmp_path):
    data = b'LibvirtQemudXXXX' + streamgen.simple_save()[16:]
    check_error(tmp_path, data, exception.CheckpointFormatError,
                'not a libvirt save image', 'at offset 0')


def test_partial_save(tmp_path):
    data = b'LibvirtQemudPart' + streamgen.simple_save()[16:]
    check_error(tmp_path, data, exception.CheckpointFormatError,
                'incomplete save image')


def test_future_header_version(tmp_path):
    data = bytearray(streamgen.simple_save())
    data[16:20] = struct.pack('<I', 3)
    check_error(tmp_path, bytes(data), exception.UnsupportedCheckpoint,
                'version 3')


def test_unknown_compression(tmp_path):
    data = bytearray(streamgen.simple_save())
    data[28:32] = struct.pack('<I', 9)
    check_error(tmp_path, bytes(data), exception.UnsupportedCheckpoint,
                'unknown compression format 9')


def test_xml_length_past_end(tmp_path):
    data = bytearray(streamgen.simple_save())
    data[20:24] = struct.pack('<I', len(data) * 2)
    check_error(tmp_path, bytes(data[:len(data)]),
                exception.CheckpointFormatError, 'ends inside the domain XML')


def _first_record(data):
    # The first RAM page record after the START section's EOS.
    s = stream_offset(data)
    return data.index(b'\x03', s + 40)


def test_corrupted_record_flags(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    end = data.index(b'\x03\x00\x00\x00\x02', stream_offset(data))
    rec = end + 5
    data[rec + 7] = 0x0a      # PAGE|ZERO: not a valid combination
    e = check_error(tmp_path, bytes(data), exception.CheckpointFormatError,
                    'corrupt RAM record flags', 'ZERO|PAGE')
    assert e.offset == rec


def test_xbzrle_record_refused(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    rec = data.index(b'\x03\x00\x00\x00\x02', stream_offset(data)) + 5
    data[rec + 7] = 0x48
    check_error(tmp_path, bytes(data), exception.UnsupportedCheckpoint,
                'XBZRLE')


def test_page_beyond_block(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    rec = data.index(b'\x03\x00\x00\x00\x02', stream_offset(data)) + 5
    data[rec:rec + 8] = struct.pack('>Q', (1000 << 12) | 0x08)
    check_error(tmp_path, bytes(data), exception.CheckpointFormatError,
                'beyond RAM block')


def test_block_length_past_total(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    s = stream_offset(data)
    pos = data.index(b'\x06pc.ram', s) + 7
    data[pos:pos + 8] = struct.pack('>Q', 1 << 40)
    check_error(tmp_path, bytes(data), exception.CheckpointFormatError,
                'does not fit the announced total')


def test_huge_ram_claim_refused_before_allocation(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    s = stream_offset(data)
    pos = data.index(b'\x03ram', s) + 12
    data[pos:pos + 8] = struct.pack('>Q', (1 << 50) | 0x04)
    check_error(tmp_path, bytes(data), exception.LimitExceeded,
                'more than the limit')


def test_ram_claim_the_stream_cannot_back_refused(tmp_path):
    """1 TiB is within the limit, but a small stream cannot hold a record
    for each of its pages: refused before per-page tables are sized by
    the claim.
    """
    b = streamgen.StreamBuilder({'pc.ram': (1 << 40) - (1 << 20)})
    data = streamgen.libvirt_header(1 << 30) + b.build(
        [[('pc.ram', p, streamgen.page_of(p)) for p in range(8)]])
    check_error(tmp_path, data, exception.LimitExceeded,
                'can hold at most')


def test_unknown_section_type(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    pos = data.index(b'\x04\x00\x00\x00\x03', stream_offset(data))
    data[pos] = 0x42
    check_error(tmp_path, bytes(data), exception.CheckpointFormatError,
                'unknown section type 0x42')


def test_cycle_of_bogus_sections_is_bounded(tmp_path):
    # A stream that repeats the same empty RAM PART section over and over
    # and never reaches EOF: the section budget stops it.
    b = streamgen.StreamBuilder({'pc.ram': 4096})
    stream = bytearray(b.build([[('pc.ram', 0, 0)]]))
    cut = stream.index(b'\x04\x00\x00\x00\x03')
    part = b'\x02' + struct.pack('>I', 2) + struct.pack('>Q', 0x10) + \
        b'\x7e' + struct.pack('>I', 2)
    data = streamgen.libvirt_header(4) + bytes(stream[:cut]) + part * 5000
    lim = limits.Limits(max_sections=1000)
    check_error(tmp_path, data, exception.LimitExceeded,
                'more than 1000 sections', limits=lim)
    # Without the budget, the end of the file stops it.
    check_error(tmp_path, data, exception.CheckpointFormatError,
                'without an EOF marker')


def test_footer_names_other_section(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    pos = data.index(b'\x7e\x00\x00\x00\x03', stream_offset(data))
    data[pos + 4] = 9
    check_error(tmp_path, bytes(data), exception.CheckpointFormatError,
                'footer of section 3 names section 9')


def test_vmdesc_length_past_end(tmp_path):
    data = bytearray(streamgen.simple_save(ram_pages=8))
    pos = data.rindex(b'\x06\x00\x00')
    data[pos + 1:pos + 5] = struct.pack('>I', 1 << 20)
    check_error(tmp_path, bytes(data), exception.CheckpointFormatError,
                'vmdesc claims')


def test_vmdesc_field_past_end(tmp_path):
    data = streamgen.simple_save(ram_pages=8)
    data = data.replace(b'"size": 12', b'"size": 99999999')
    pos = data.rindex(b'\x06\x00\x00')
    desc_len = len(data) - pos - 5
    data = data[:pos + 1] + struct.pack('>I', desc_len) + data[pos + 5:]
    check_error(tmp_path, data, exception.CheckpointFormatError,
                'past the end of the stream')


def test_not_a_checkpoint(tmp_path):
    check_error(tmp_path, b'PK\x03\x04' + bytes(200),
                exception.CheckpointFormatError, 'not a libvirt save image',
                'ELF memory dump')


def test_missing_file(tmp_path):
    with pytest.raises(exception.CheckpointError) as ei:
        checkpoint.open_checkpoint(str(tmp_path / 'nope'))
    assert 'cannot open' in str(ei.value)
