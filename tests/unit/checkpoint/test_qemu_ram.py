"""The RAM record encoding a rewrite uses (:mod:`.qemu_ram`)."""

import numpy as np

from sparc_nova.checkpoint import qemu_ram


def header(page: int, flags: int) -> bytes:
    return ((page << 12) | flags).to_bytes(8, 'big')


def decode(record: bytes) -> tuple[int, int]:
    value = int.from_bytes(record[:8], 'big')
    return value >> 12, value & qemu_ram.RAM_FLAG_MASK


def test_zero_records_keep_page_and_continue_bit():
    flags = qemu_ram.RAM_PAGE | qemu_ram.RAM_CONTINUE
    heads = np.frombuffer(header(7, flags) + header(9, flags),
                          dtype=np.uint8).reshape(2, 8)
    rows = qemu_ram.zero_records(heads, np.array([0, 0xaa]))
    assert rows.shape == (2, qemu_ram.ZERO_RECORD)
    assert decode(rows[0].tobytes()) == (
        7, qemu_ram.RAM_ZERO | qemu_ram.RAM_CONTINUE)
    assert decode(rows[1].tobytes())[0] == 9
    assert rows[:, 8].tolist() == [0, 0xaa]
    assert qemu_ram.zero_records(heads[:0], np.zeros(0)).shape == (0, 9)


def test_zero_record_keeps_the_block_name():
    name = b'\x06pc.ram'
    rec = qemu_ram.zero_record(header(3, qemu_ram.RAM_PAGE), name, 0x11)
    assert decode(rec) == (3, qemu_ram.RAM_ZERO)
    assert rec[8:-1] == name and rec[-1] == 0x11


def test_page_record_grows_a_zero_record():
    data = bytes(range(256)) * 16
    rec = qemu_ram.page_record(
        header(5, qemu_ram.RAM_ZERO | qemu_ram.RAM_CONTINUE), b'', data)
    assert decode(rec) == (5, qemu_ram.RAM_PAGE | qemu_ram.RAM_CONTINUE)
    assert rec[8:] == data and len(rec) == qemu_ram.PAGE_RECORD


def test_flag_names():
    assert qemu_ram.flag_names(qemu_ram.RAM_PAGE | qemu_ram.RAM_CONTINUE) \
        == 'PAGE|CONTINUE'
    assert qemu_ram.flag_names(0x800) == '0x800'
    assert qemu_ram.flag_names(0) == '0'
