"""Write-back started while a file is written."""

import os

from sparc_nova.checkpoint import writeback


def test_started_one_stretch_at_a_time(tmp_path, monkeypatch):
    calls = []

    def record(fd, offset, nbytes, flags):
        calls.append((offset, nbytes, flags))
        return 0
    monkeypatch.setattr(writeback, '_SYNC_FILE_RANGE', record)
    wb = writeback.Writeback(7, start=100, step=1000)
    wb.advance(600)
    wb.advance(1100)
    wb.advance(1500)
    wb.advance(2200)
    assert calls == [(100, 1000, 2), (1100, 1100, 2)]


def test_a_failing_call_turns_it_off(monkeypatch):
    calls = []

    def fail(fd, offset, nbytes, flags):
        calls.append(offset)
        return -1
    monkeypatch.setattr(writeback, '_SYNC_FILE_RANGE', fail)
    wb = writeback.Writeback(7, step=10)
    wb.advance(20)
    wb.advance(40)
    assert calls == [0]


def test_on_a_real_file(tmp_path):
    path = tmp_path / 'f'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        wb = writeback.Writeback(fd, step=4096)
        for _ in range(4):
            os.write(fd, b'x' * 4096)
            wb.advance_to_position()
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b'x' * 16384
    assert writeback._SYNC_FILE_RANGE is not None
