"""Raw scans (real files, qemu-img, nbdcopy, grep)."""

import os
import subprocess
import sys

import pytest

import sparc_nova
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

    monkeypatch.setattr(scan, '_scan_guest_view', no_nbdcopy)
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


def test_matcher_counts_each_pattern_left_to_right():
    matcher = scan.Matcher([b'CANARY-A', b'zCANARY-A', b'aa'])
    with matcher.stream() as stream:
        stream.scan(b'zCANARY-A CANARY-A aaaa aaa')
    # A pattern inside another's occurrence counts too; one pattern's
    # occurrences do not overlap (aaaa: 2, aaa: 1).
    assert matcher.counts() == {b'CANARY-A': 2, b'zCANARY-A': 1, b'aa': 3}


def test_matches_span_the_pieces_of_a_stream_not_two_streams():
    matcher = scan.Matcher([b'CANARY-ONE'])
    with matcher.stream() as stream:
        stream.scan(b'xx CANARY')
        stream.scan(b'-ONE yy CAN')
    with matcher.stream() as stream:
        stream.scan(b'ARY-ONE')         # a new run: no match with "CAN"
    assert matcher.counts() == {b'CANARY-ONE': 1}


@pytest.mark.parametrize('bad', [b'', b'a\0b', b'a\rb', b'a\nb'])
def test_matcher_refuses_separators(bad):
    with pytest.raises(ValueError):
        scan.Matcher([b'good', bad])


def test_ranges_of_one_run_are_matched_as_one_string(tmp_path):
    # Two ranges of the file that follow each other in the guest view
    # (a run): a pattern across them is found; across two runs, not.
    path = tmp_path / 'r.raw'
    path.write_bytes(b'CANARY-' + b'x' * 100 + b'FIVE-5')
    runs = [[(0, 7), (107, 6)]]
    matcher = scan.Matcher([b'CANARY-FIVE-5'])
    scan._scan_runs(str(path), runs, matcher)
    assert matcher.counts() == {b'CANARY-FIVE-5': 1}
    matcher = scan.Matcher([b'CANARY-FIVE-5'])
    scan._scan_runs(str(path), [[(0, 7)], [(107, 6)]], matcher)
    assert matcher.counts() == {}


def test_pieces_larger_than_a_read(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, '_PIECE_BYTES', 4096)
    path = tmp_path / 'p.raw'
    data = bytearray(os.urandom(1 << 20).replace(b'C', b'D'))
    for offset in (4090, 8191, 500000):
        data[offset:offset + 10] = b'CANARY-SIX'
    path.write_bytes(bytes(data))
    assert scan.count(str(path), 'raw', [b'CANARY-SIX']) == {
        b'CANARY-SIX': 3}


def test_guest_view_skips_zero_pieces_without_joining_matches(
        tmp_path, monkeypatch):
    monkeypatch.setattr(scan, '_PIECE_BYTES', 4096)
    monkeypatch.setattr(scan, '_ZEROS', bytes(4096))
    path = tmp_path / 'g.raw'
    with open(path, 'wb') as f:
        f.write(b'\1' * 4089 + b'CANARY-')
        f.write(bytes(8192))
        f.write(b'SEVEN' + b'\1' * 4091)
        f.write(b'CANARY-SEVEN')
    matcher = scan.Matcher([b'CANARY-SEVEN', b'CANARY-'])
    scan._scan_guest_view(str(path), 'raw', matcher)
    assert matcher.counts() == {b'CANARY-SEVEN': 1, b'CANARY-': 2}


def test_nbdcopy_failure_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, '_reader', lambda path, fmt: [
        'sh', '-c', 'printf CANARY; echo broken >&2; exit 3'])
    with pytest.raises(exception.DiskError, match='nbdcopy exited 3: '
                                                  'broken'):
        scan._scan_guest_view(str(tmp_path / 'x'), 'qcow2',
                              scan.Matcher([b'CANARY']))


def test_data_cut_short_is_an_error_naming_the_file(tmp_path):
    # qemu-img map's ranges (or a file truncated under the scan) can
    # point past the end: the scan fails, naming the image.
    path = tmp_path / 't.qcow2'
    path.write_bytes(b'x' * 4096)
    matcher = scan.Matcher([b'CANARY'])
    with pytest.raises(OSError, match='ends before its data does'):
        scan._scan_runs(str(path), [[(0, 4096), (4096, 4096)]], matcher)


def test_stored_ranges_past_the_end_fail_the_count(tmp_path, monkeypatch):
    path = tmp_path / 't.qcow2'
    path.write_bytes(b'x' * 4096)
    monkeypatch.setattr(scan, 'stored_data',
                        lambda *args: [[(0, 8192)]])
    with pytest.raises(exception.DiskError) as e:
        scan.count(str(path), 'qcow2', [b'CANARY'])
    assert str(path) in str(e.value)
    assert 'ends before its data does' in str(e.value)


#: Streams opened and fed a match while the memory of freed objects is
#: handed out again (run in a child: before the fix it died of SIGSEGV).
_STREAMS_AFTER_FREES = """
import gc
from sparc_nova.engine.disk import scan
matcher = scan.Matcher([b'CANARY-ONE'])
for _ in range(50):
    with matcher.stream() as stream:
        junk = [object().__str__ for _ in range(1000)]
        gc.collect()
        stream.scan(b'xx CANARY-ONE yy')
        del junk
print(matcher.counts()[b'CANARY-ONE'])
"""


def test_streams_survive_the_handlers_callers_letting_go():
    """The Hyperscan binding's Stream keeps a borrowed reference to its
    match handler: a handler that only the call held was freed at once,
    and the first match called freed memory (a crash, or another
    object's code).
    """
    root = os.path.dirname(os.path.dirname(sparc_nova.__file__))
    proc = subprocess.run([sys.executable, '-c', _STREAMS_AFTER_FREES],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ['50']
