"""Raw scans (real files, qemu-img, nbdcopy, grep)."""

import subprocess

import pytest

from sparc_nova.engine.disk import scan
from sparc_nova import exception


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / 'd.raw'
    with open(path, 'wb') as f:
        f.truncate(8 << 20)
        f.seek(4096)
        f.write(b'xx CANARY-ONE-123 yy CANARY-ONE-123')
        # straddles a 1 MiB boundary and follows a long run of zeros
        f.seek((1 << 20) - 5)
        f.write(b'CANARY-TWO-456')
        f.seek(7 << 20)
        f.write(b'\0CANARY-THREE\0')
    return path


def test_counts_in_raw(raw):
    hits = scan.count(str(raw), 'raw', [b'CANARY-ONE-123',
                                        b'CANARY-TWO-456', b'ABSENT-0000'])
    assert hits == {b'CANARY-ONE-123': 2, b'CANARY-TWO-456': 1}


def test_counts_in_qcow2(raw, tmp_path):
    qcow2 = tmp_path / 'd.qcow2'
    subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', str(raw),
                    str(qcow2)], check=True)
    hits = scan.count(str(qcow2), 'qcow2', [b'CANARY-THREE',
                                            b'CANARY-TWO-456'])
    assert hits == {b'CANARY-THREE': 1, b'CANARY-TWO-456': 1}


def test_no_patterns():
    assert scan.count('/nonexistent', 'raw', []) == {}


def test_separator_in_pattern_refused(raw):
    with pytest.raises(ValueError):
        scan.count(str(raw), 'raw', [b'a\nb'])


def test_unreadable_image_is_an_error(tmp_path):
    with pytest.raises(exception.DiskError):
        scan.count(str(tmp_path / 'missing.raw'), 'raw', [b'CANARY-ONE'])


def test_unreadable_qcow2_is_an_error(tmp_path):
    bad = tmp_path / 'bad.qcow2'
    bad.write_bytes(b'QFI\xfb' + bytes(4096))
    with pytest.raises(exception.DiskError, match='nbdcopy'):
        scan.count(str(bad), 'qcow2', [b'CANARY-ONE'])


def test_zero_runs_do_not_join_or_split_matches(tmp_path):
    raw = tmp_path / 'z.raw'
    with open(raw, 'wb') as f:
        f.truncate(4 << 20)
        f.seek((1 << 20) - 7)
        f.write(b'CANARY-')             # then 3 MiB of zeros
        f.seek((4 << 20) - 6)
        f.write(b'FOUR-4')
    qcow2 = tmp_path / 'z.qcow2'
    subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', str(raw),
                    str(qcow2)], check=True)
    for path, fmt in ((raw, 'raw'), (qcow2, 'qcow2')):
        assert scan.count(str(path), fmt, [b'CANARY-FOUR-4', b'CANARY-',
                                           b'FOUR-4']) == {
            b'CANARY-': 1, b'FOUR-4': 1}


@pytest.mark.parametrize('stream', ['data', 'guest_view'])
def test_streams_fill_a_non_blocking_pipe(tmp_path, stream):
    """Under eventlet, subprocess's pipes are non-blocking: a full pipe
    makes the streamer wait for room (EAGAIN was a failed scan), and
    every byte arrives.
    """
    import os
    import threading
    import time

    image = tmp_path / 'disk.raw'
    data = os.urandom(3 << 20)
    image.write_bytes(data)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    errors = []
    if stream == 'data':
        target, args = scan._stream_data, (str(image), write_fd, errors)
    else:
        target, args = scan._stream_guest_view, (str(image), 'raw',
                                                 write_fd, errors)
    writer = threading.Thread(target=target, args=args)
    writer.start()
    time.sleep(0.3)         # the pipe is full long before this
    got = bytearray()
    while True:
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            break
        got += chunk
    writer.join()
    os.close(read_fd)
    assert errors == []
    assert bytes(got).replace(b'\n', b'') == data.replace(b'\n', b'')
    assert len(got) >= len(data)


def _qemu_io(path, *commands):
    argv = ['qemu-io', '-f', 'qcow2']
    for c in commands:
        argv += ['-c', c]
    subprocess.run(argv + [str(path)], check=True, capture_output=True)


def test_qcow2_is_read_at_the_offsets_of_its_data(
        raw, tmp_path, monkeypatch):
    """An uncompressed qcow2 is read where qemu-img map puts its data,
    never through nbdcopy; the counts are those of its guest view.
    """
    qcow2 = tmp_path / 'd.qcow2'
    subprocess.run(['qemu-img', 'convert', '-O', 'qcow2', str(raw),
                    str(qcow2)], check=True)
    runs = scan.stored_data(str(qcow2), 'qcow2', scan.qemu_img.Limits())
    assert runs and sum(n for run in runs for _, n in run) < 1 << 20

    def no_nbdcopy(*args):
        raise AssertionError('the guest view was streamed')

    monkeypatch.setattr(scan, '_stream_guest_view', no_nbdcopy)
    assert scan.count(str(qcow2), 'qcow2', [
        b'CANARY-ONE-123', b'CANARY-TWO-456', b'CANARY-THREE']) == {
        b'CANARY-ONE-123': 2, b'CANARY-TWO-456': 1, b'CANARY-THREE': 1}


def test_a_pattern_across_clusters_stored_apart(tmp_path):
    """Two clusters next to each other in the guest, stored the other way
    round in the file: a pattern across them is found.
    """
    qcow2 = tmp_path / 'd.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(qcow2),
                    '1M'], check=True)
    second = tmp_path / 'second'
    second.write_bytes(b'ACROSS-' + b'\x01' * (65536 - 7))
    first = tmp_path / 'first'
    first.write_bytes(b'\x02' * (65536 - 9) + b'CANARY-TW')
    _qemu_io(qcow2, 'write -s %s 65536 64k' % second,
             'write -s %s 0 64k' % first)
    runs = scan.stored_data(str(qcow2), 'qcow2', scan.qemu_img.Limits())
    assert len(runs) == 1 and len(runs[0]) == 2
    assert runs[0][0][0] > runs[0][1][0]
    assert scan.count(str(qcow2), 'qcow2', [b'CANARY-TWACROSS-']) == {
        b'CANARY-TWACROSS-': 1}


@pytest.mark.parametrize('make', [
    ['qemu-img', 'convert', '-c', '-O', 'qcow2'],
    ['qemu-img', 'convert', '-O', 'qcow2', '-o', 'data_file={data}'],
])
def test_qcow2_not_stored_as_it_is_is_streamed(raw, tmp_path, make):
    """Compressed clusters, or data in another file: the guest view is
    streamed instead.
    """
    qcow2 = tmp_path / 'd.qcow2'
    argv = [a.format(data=tmp_path / 'd.data') for a in make]
    subprocess.run(argv + [str(raw), str(qcow2)], check=True)
    assert scan.stored_data(str(qcow2), 'qcow2',
                            scan.qemu_img.Limits()) is None
    assert scan.count(str(qcow2), 'qcow2', [b'CANARY-ONE-123']) == {
        b'CANARY-ONE-123': 2}


def _shard_bytes(path, shards):
    """Each shard's runs as the pipeline sees them (run, newline)."""
    data = path.read_bytes()
    return [b''.join(b''.join(data[o:o + n] for o, n in run) + b'\n'
                     for run in shard) for shard in shards]


def test_split_runs_cuts_after_a_separator_and_loses_nothing(tmp_path):
    path = tmp_path / 's.raw'
    body = bytearray(b'x' * (3 << 20))
    body[900000] = 0                   # before 1/3: not a cut
    body[1100000] = 0                  # the first separator past 1/3
    body[2200000] = ord('\n')          # and the first past 2/3
    path.write_bytes(bytes(body))
    runs = [[(0, 1 << 20), (1 << 20, 2 << 20)]]
    shards = scan.split_runs(str(path), runs, 3)
    assert len(shards) == 3
    # Cut just after each separator; together, the run's bytes in order.
    assert shards[0] == [[(0, 1 << 20), (1 << 20, 1100001 - (1 << 20))]]
    assert shards[1] == [[(1100001, 2200001 - 1100001)]]
    assert shards[2] == [[(2200001, (3 << 20) - 2200001)]]
    assert b''.join(s[:-1] for s in _shard_bytes(path, shards)) == body


def test_split_runs_without_a_separator_keeps_runs_whole(tmp_path):
    # The guest can write data with neither byte: the shard then ends
    # where the run does (never inside a possible match).
    path = tmp_path / 'n.raw'
    path.write_bytes(b'y' * (4 << 20))
    runs = [[(0, 3 << 20)], [(3 << 20, 1 << 20)]]
    assert scan.split_runs(str(path), runs, 2) == [[[(0, 3 << 20)]],
                                                   [[(3 << 20, 1 << 20)]]]
    assert scan.split_runs(str(path), runs[:1], 2) == [runs[:1]]
    assert scan.split_runs(str(path), runs, 1) == [runs]


def test_sharded_scan_counts_like_one_pipeline(tmp_path, monkeypatch):
    # Matches on both sides of every possible cut, and across a cut
    # point that has no separator nearby.
    path = tmp_path / 'm.raw'
    unit = b'CANARY-A\0CANARY-B' + b'z' * 4000 + b'CANARY-C\n'
    data = unit * 1024
    path.write_bytes(data)
    patterns = [b'CANARY-A', b'CANARY-B', b'CANARY-C', b'zCANARY-C']
    one = scan.count(str(path), 'raw', patterns)
    assert one == {b'CANARY-A': 1024, b'CANARY-B': 1024, b'zCANARY-C': 1024}
    monkeypatch.setattr(scan, '_SHARD_MIN_BYTES', 1)
    monkeypatch.setattr(scan, 'SCAN_PROCESSES', 7)
    monkeypatch.setattr(scan.os, 'cpu_count', lambda: 7)
    pipelines = []
    real = scan._grep

    def counted(*args):
        pipelines.append(args)
        return real(*args)
    monkeypatch.setattr(scan, '_grep', counted)
    assert scan.count(str(path), 'raw', patterns) == one
    assert len(pipelines) == 7


def test_a_failing_shard_fails_the_scan(tmp_path, monkeypatch):
    path = tmp_path / 'f.raw'
    path.write_bytes(b'CANARY-A\0' * 100000)
    monkeypatch.setattr(scan, '_SHARD_MIN_BYTES', 1)
    monkeypatch.setattr(scan.os, 'cpu_count', lambda: 2)
    calls = []
    real = scan._stream_data

    def second_fails(path, fd, errors, runs=None):
        calls.append(runs)
        if len(calls) == 2:
            import os
            os.close(fd)
            errors.append(OSError('read error'))
            return
        real(path, fd, errors, runs)
    monkeypatch.setattr(scan, '_stream_data', second_fails)
    with pytest.raises(exception.DiskError, match='read error'):
        scan.count(str(path), 'raw', [b'CANARY-A'])
    assert len(calls) == 2
