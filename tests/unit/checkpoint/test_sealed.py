"""The sealed-pages file: round trip and every refusal."""

import os
import stat
import struct

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import sealed
from sparc_nova.checkpoint import writeback
from sparc_nova import exception
from tests import streamgen

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
IDENTITY = bytes(31) + b'\x01'
RAM = 64 * 4096
SECRET = b'SEALED-SECRET-0123456789'
HEAD = 8 + 4 + 4 + 32 + 8 + 8 + 12 + 48
RECORD = 16 + 16


def records():
    page = (SECRET * 200)[:4096]
    return [sealed.FrameRun(3, 0, page * 2),
            sealed.ByteRange(9 * 4096 + 100, SECRET, bytes(len(SECRET))),
            sealed.ByteRange(10 * 4096 + 8, b'\xff' * 8,
                             b'\xfe' + b'\xff' * 7)]


def _open_pages(path, key, identity, ram):
    sealed.open_pages(path, key, identity, ram).close()


def _open_pages_deferred(path, key, identity, ram):
    with sealed.open_pages(path, key, identity, ram,
                           defer_frame_runs=True) as pages:
        pages.check_unread()


#: The ways a sealed-pages file is opened and checked: they check the
#: same.
OPENERS = pytest.mark.parametrize(
    'opener', [sealed.read, _open_pages, _open_pages_deferred],
    ids=['read', 'open_pages', 'open_pages_deferred'])


@pytest.fixture
def sealed_file(tmp_path):
    path = str(tmp_path / 'vm.save.sparc-sealed')
    stats = sealed.write(path, KEY, IDENTITY, records())
    assert stats['records'] == 3 and stats['frames'] == 2
    assert stats['byte_ranges'] == 2
    return path


def test_round_trip(sealed_file):
    st = os.stat(sealed_file)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_nlink == 1
    data = open(sealed_file, 'rb').read()
    assert SECRET not in data and KEY not in data
    assert sealed.read(sealed_file, KEY, IDENTITY, RAM) == records()
    head = sealed.peek(sealed_file)
    assert head.records == 3 and head.identity == IDENTITY
    # No temporary is left next to it.
    assert os.listdir(os.path.dirname(sealed_file)) == [
        os.path.basename(sealed_file)]


def test_records_may_come_one_at_a_time(tmp_path):
    """A generator is consumed once, record by record; the header written
    last counts what it gave.
    """
    given = []

    def generate():
        for rec in records():
            given.append(rec)
            yield rec

    path = str(tmp_path / 'vm.save.sparc-sealed')
    stats = sealed.write(path, KEY, IDENTITY, generate())
    assert stats['records'] == 3 and stats['plaintext_bytes'] == \
        2 * 4096 + 2 * len(SECRET) + 16
    assert sealed.peek(path).records == 3
    assert sealed.read(path, KEY, IDENTITY, RAM) == given == records()


def test_too_many_records_leave_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sealed, 'MAX_RECORDS', 2)
    with pytest.raises(ValueError, match='more than 2 records'):
        sealed.write(str(tmp_path / 'x'), KEY, IDENTITY, iter(records()))
    assert not os.listdir(tmp_path)


def test_each_seal_has_its_own_data_key(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    sealed.write(a, KEY, IDENTITY, records())
    sealed.write(b, KEY, IDENTITY, records())
    assert open(a, 'rb').read()[HEAD:] != open(b, 'rb').read()[HEAD:]


def test_never_over_an_existing_file(sealed_file):
    before = open(sealed_file, 'rb').read()
    with pytest.raises(exception.CheckpointError, match='already there'):
        sealed.write(sealed_file, KEY, IDENTITY, records())
    assert open(sealed_file, 'rb').read() == before


def test_never_through_a_link(tmp_path):
    target = tmp_path / 'elsewhere'
    link = tmp_path / 'vm.save.sparc-sealed'
    os.symlink(target, link)
    with pytest.raises(exception.CheckpointError, match='already there'):
        sealed.write(str(link), KEY, IDENTITY, records())
    assert not target.exists()


@OPENERS
def test_wrong_key(sealed_file, opener):
    with pytest.raises(sealed.SealedFileError, match='does not open it'):
        opener(sealed_file, OTHER_KEY, IDENTITY, RAM)


@OPENERS
def test_other_checkpoint(sealed_file, opener):
    with pytest.raises(sealed.SealedFileError, match='another checkpoint'):
        opener(sealed_file, KEY, bytes(32), RAM)


def _flipped(path, pos):
    data = bytearray(open(path, 'rb').read())
    data[pos] ^= 0x10
    open(path, 'wb').write(bytes(data))


def _positions(size):
    """Every byte of the header and of each record header and tag, and
    bytes all through the ciphertexts.
    """
    out = set(range(HEAD))
    pos = HEAD
    for rec in records():
        length = 2 * len(rec.original) if isinstance(
            rec, sealed.ByteRange) else len(rec.pages)
        end = pos + 16 + length + 16
        out |= set(range(pos, pos + 24)) | set(range(end - 24, end))
        out |= set(range(pos, end, 97))
        pos = end
    assert pos == size
    return sorted(out)


@OPENERS
def test_every_flipped_bit_is_refused(sealed_file, opener):
    # One bit in the header, record headers, ciphertexts and tags.
    original = open(sealed_file, 'rb').read()
    for pos in _positions(len(original)):
        _flipped(sealed_file, pos)
        with pytest.raises(sealed.SealedFileError) as e:
            opener(sealed_file, KEY, IDENTITY, RAM)
        assert sealed_file in str(e.value)
        open(sealed_file, 'wb').write(original)


@OPENERS
def test_flipped_record_names_the_record(sealed_file, opener):
    # The first record's ciphertext, past its 16-byte header.
    _flipped(sealed_file, HEAD + 16 + 5)
    with pytest.raises(sealed.SealedFileError,
                       match='record 0 .*authentication tag'):
        opener(sealed_file, KEY, IDENTITY, RAM)


@OPENERS
def test_every_truncation_is_refused(sealed_file, opener):
    original = open(sealed_file, 'rb').read()
    sizes = list(range(0, HEAD + 40)) + [len(original) - 1,
                                         len(original) - 17]
    for size in sizes:
        open(sealed_file, 'wb').write(original[:size])
        with pytest.raises(sealed.SealedFileError):
            opener(sealed_file, KEY, IDENTITY, RAM)


@OPENERS
def test_appended_bytes_are_refused(sealed_file, opener):
    with open(sealed_file, 'ab') as f:
        f.write(b'\0' * 32)
    with pytest.raises(sealed.SealedFileError, match='after the last'):
        opener(sealed_file, KEY, IDENTITY, RAM)


def test_record_count_over_the_bound(sealed_file):
    data = bytearray(open(sealed_file, 'rb').read())
    struct.pack_into('<Q', data, 48, sealed.MAX_RECORDS + 1)
    open(sealed_file, 'wb').write(bytes(data))
    with pytest.raises(sealed.SealedFileError, match='more than the'):
        sealed.read(sealed_file, KEY, IDENTITY, RAM)
    with pytest.raises(sealed.SealedFileError, match='more than the'):
        sealed.peek(sealed_file)


def test_larger_than_the_checkpoint_can_seal(sealed_file):
    with pytest.raises(sealed.SealedFileError, match='more than a '):
        sealed.read(sealed_file, KEY, IDENTITY, 1024)


@pytest.mark.parametrize('mode', [0o640, 0o604, 0o660])
def test_accessible_file_is_refused(sealed_file, mode):
    os.chmod(sealed_file, mode)
    with pytest.raises(sealed.SealedFileError, match='mode'):
        sealed.read(sealed_file, KEY, IDENTITY, RAM)


def test_linked_file_is_refused(sealed_file, tmp_path):
    os.link(sealed_file, tmp_path / 'second')
    with pytest.raises(sealed.SealedFileError, match='links'):
        sealed.read(sealed_file, KEY, IDENTITY, RAM)


def test_symlink_is_refused(sealed_file, tmp_path):
    link = str(tmp_path / 'link')
    os.symlink(sealed_file, link)
    with pytest.raises(sealed.SealedFileError, match='cannot open'):
        sealed.read(link, KEY, IDENTITY, RAM)


def test_missing_file(tmp_path):
    with pytest.raises(sealed.SealedFileError, match='no sealed-pages'):
        sealed.read(str(tmp_path / 'none'), KEY, IDENTITY, RAM)
    assert sealed.peek(str(tmp_path / 'none')) is None


@pytest.mark.parametrize('key', [b'', bytes(16), bytes(31), bytes(33)])
def test_key_size(sealed_file, tmp_path, key):
    with pytest.raises(ValueError):
        sealed.write(str(tmp_path / 'x'), key, IDENTITY, records())
    with pytest.raises(ValueError):
        sealed.read(sealed_file, key, IDENTITY, RAM)


@pytest.mark.parametrize('rec', [
    sealed.FrameRun(1, 0, b''),
    sealed.FrameRun(1, 0, bytes(4095)),
    sealed.FrameRun(1, 0, bytes(4096 * (sealed.MAX_RUN_FRAMES + 1))),
    sealed.ByteRange(4090, bytes(8), bytes(8)),
    sealed.ByteRange(0, bytes(4), bytes(3)),
    sealed.ByteRange(0, b'', b''),
])
def test_bad_records_are_not_written(tmp_path, rec):
    with pytest.raises(ValueError):
        sealed.write(str(tmp_path / 'x'), KEY, IDENTITY, [rec])
    assert not os.listdir(tmp_path)


def _key_file(tmp_path, data=KEY, mode=0o600):
    path = tmp_path / 'seal.key'
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


def test_key_file(tmp_path):
    assert sealed.load_key_file(_key_file(tmp_path)) == KEY
    assert sealed.load_key_file(_key_file(tmp_path, mode=0o400)) == KEY


@pytest.mark.parametrize('data,mode', [(bytes(31), 0o600),
                                       (bytes(33), 0o600),
                                       (KEY, 0o640), (KEY, 0o604),
                                       (KEY, 0o620)])
def test_key_file_refused(tmp_path, data, mode):
    path = _key_file(tmp_path, data, mode)
    with pytest.raises(exception.CheckpointError, match='sealing key') as e:
        sealed.load_key_file(path)
    assert KEY.hex() not in str(e.value)


def test_key_file_symlink_refused(tmp_path):
    path = _key_file(tmp_path)
    os.symlink(path, tmp_path / 'link')
    with pytest.raises(exception.CheckpointError, match='cannot open'):
        sealed.load_key_file(str(tmp_path / 'link'))


def test_identity(tmp_path):
    a = tmp_path / 'a.save'
    a.write_bytes(streamgen.simple_save(ram_pages=64))
    b = tmp_path / 'b.save'
    b.write_bytes(streamgen.simple_save(ram_pages=64, secret_pfns=(10,),
                                        secret=SECRET))
    c = tmp_path / 'c.save'
    c.write_bytes(streamgen.simple_save(ram_pages=128))
    with checkpoint.open_checkpoint(str(a)) as ck:
        ia = sealed.identity_of(ck)
    with checkpoint.open_checkpoint(str(b)) as ck:
        ib = sealed.identity_of(ck)
    with checkpoint.open_checkpoint(str(c)) as ck:
        ic = sealed.identity_of(ck)
    # RAM contents are not part of it (a seal changes them); the layout
    # and the header are.
    assert ia == ib != ic and len(ia) == 32


def test_sealed_pages_decrypt_each_page_when_asked(tmp_path):
    """Pages come out of an opened file in any order, each as sealed, and
    each page's fill is known from the start.
    """
    data = (SECRET * 200)[:4096]
    # Not uniform, though its first and last words are the same.
    lookalike = b'\x07' * 8 + b'\x08' + b'\x07' * 4087
    runs = [sealed.FrameRun(3, 0, data + bytes(4096) + b'\xab' * 4096),
            sealed.ByteRange(9 * 4096 + 100, SECRET, bytes(len(SECRET))),
            sealed.FrameRun(20, 0, lookalike + data[::-1])]
    expected = [data, bytes(4096), b'\xab' * 4096, lookalike, data[::-1]]
    path = str(tmp_path / 'vm.save.sparc-sealed')
    sealed.write(path, KEY, IDENTITY, runs)
    with sealed.open_pages(path, KEY, IDENTITY, RAM) as pages:
        assert len(pages) == 5
        assert pages.fills.tolist() == [-1, 0, 0xab, -1, -1]
        assert pages.run_first_pfn.tolist() == [3, 20]
        assert pages.run_frames.tolist() == [3, 2]
        assert pages.byte_ranges == [runs[1]]
        for i in (4, 0, 3, 2, 1, 0, 4):
            assert bytes(pages[i]) == expected[i]
        with pytest.raises(IndexError):
            pages[5]


def test_a_page_changed_after_opening_is_refused(sealed_file):
    """Every record's tag is checked when the file is opened and again
    when its pages are decrypted: a file altered in between does not
    give altered pages.
    """
    with sealed.open_pages(sealed_file, KEY, IDENTITY, RAM) as pages:
        _flipped(sealed_file, HEAD + 16 + 5)
        with pytest.raises(sealed.SealedFileError,
                           match='record 0 .*authentication tag'):
            pages[1]


def test_deferred_frame_runs_are_checked_when_read(sealed_file):
    """Opened with defer_frame_runs, a frame run's tag is first checked
    when one of its pages is asked for, or by check_unread; the header
    and the byte ranges are checked at once, and the fills are unknown.
    """
    _flipped(sealed_file, HEAD + 16 + 5)
    with sealed.open_pages(sealed_file, KEY, IDENTITY, RAM,
                           defer_frame_runs=True) as pages:
        assert pages.fills.tolist() == [-1, -1]
        assert [r.paddr for r in pages.byte_ranges] == [
            9 * 4096 + 100, 10 * 4096 + 8]
        for check in (lambda: pages.pages(0, 2), pages.check_unread):
            with pytest.raises(sealed.SealedFileError,
                               match='record 0 .*authentication tag'):
                check()
    # The byte ranges are decrypted when the file is opened.
    original = open(sealed_file, 'rb').read()
    _flipped(sealed_file, len(original) - 20)
    with pytest.raises(sealed.SealedFileError,
                       match='record 2 .*authentication tag'):
        sealed.open_pages(sealed_file, KEY, IDENTITY, RAM,
                          defer_frame_runs=True)


def test_check_unread_checks_only_the_runs_not_read(tmp_path):
    path = str(tmp_path / 'vm.save.sparc-sealed')
    sealed.write(path, KEY, IDENTITY,
                 [sealed.FrameRun(3, 0, b'\1' * 4096),
                  sealed.FrameRun(9, 0, b'\2' * 8192)])
    with sealed.open_pages(path, KEY, IDENTITY, RAM,
                           defer_frame_runs=True) as pages:
        assert bytes(pages[2]) == b'\2' * 4096
        assert pages.check_unread() == 1
        assert pages.check_unread() == 0
        assert bytes(pages.pages(0, 3)) == b'\1' * 4096 + b'\2' * 8192
    with sealed.open_pages(path, KEY, IDENTITY, RAM) as pages:
        assert pages.fills.tolist() == [1, 2, 2]
        assert pages.check_unread() == 0


def test_run_holds_tells_the_sealed_pages_by_their_tag(sealed_file):
    page = (SECRET * 200)[:4096]
    for defer in (False, True):
        with sealed.open_pages(sealed_file, KEY, IDENTITY, RAM,
                               defer_frame_runs=defer) as pages:
            assert pages.run_holds(0, page * 2)
            assert pages.run_holds(0, bytearray(page * 2))
            changed = bytearray(page * 2)
            changed[4100] ^= 0x80
            assert not pages.run_holds(0, changed)
            assert not pages.run_holds(0, page)
            assert not pages.run_holds(0, page * 3)
            with pytest.raises(IndexError):
                pages.run_holds(1, page * 2)
            # The pages still come out as sealed afterwards.
            assert bytes(pages.pages(0, 2)) == page * 2
            assert pages.run_holds(0, page * 2)


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    """The records are written in a thread of their own: an error there
    (a full disk) fails the write, and no file, temporary or not, is
    left.
    """
    def full(self, end):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(writeback.Writeback, 'advance', full)
    path = str(tmp_path / 'vm.save.sparc-sealed')
    runs = [sealed.FrameRun(i * 4, 0, (SECRET * 400)[:8192])
            for i in range(8)]
    with pytest.raises(exception.CheckpointError,
                       match='cannot write: No space left'):
        sealed.write(path, KEY, IDENTITY, runs)
    assert os.listdir(tmp_path) == []


def test_a_failed_record_source_leaves_no_file(tmp_path):
    def records():
        yield sealed.FrameRun(3, 0, (SECRET * 200)[:4096])
        raise RuntimeError('the rewrite failed')

    path = str(tmp_path / 'vm.save.sparc-sealed')
    with pytest.raises(RuntimeError, match='the rewrite failed'):
        sealed.write(path, KEY, IDENTITY, records())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('defer', [False, True])
def test_byte_ranges_of_every_size_open(tmp_path, defer):
    """Byte ranges up to a whole page (8192 bytes of plaintext) decrypt
    whether the frame runs are deferred or not.
    """
    path = str(tmp_path / 'vm.save.sparc-sealed')
    ranges = [sealed.ByteRange(n * 4096 + (4096 - size), bytes([n]) * size,
                               bytes(size))
              for n, size in enumerate((1, 100, 1000, 2048, 4095, 4096),
                                       start=1)]
    sealed.write(path, KEY, IDENTITY,
                 [sealed.FrameRun(20, 0, (SECRET * 200)[:4096])] + ranges)
    with sealed.open_pages(path, KEY, IDENTITY, RAM,
                           defer_frame_runs=defer) as pages:
        assert pages.byte_ranges == ranges
        assert pages.check_unread() == (1 if defer else 0)
