"""The in-place journal against a local attacker: planted journals, links
in place of the journal or its temporary, loose owners and modes, a
journal key that is not private, hostile journal bytes.

The journal is replayed by root into the file it names, so anything that
can put a file next to a checkpoint must not get its bytes written.
"""

import hashlib
import os
import struct

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import rewrite
from sparc_nova import exception
from tests import streamgen

SECRET = b'IN-PLACE-SECRET-0123456789abcdef'
PLANTED = b'\xee'


@pytest.fixture
def image(tmp_path):
    d = tmp_path / 'ck'
    d.mkdir(mode=0o700)
    path = d / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=32, secret_pfns=(4, 6),
                                           secret=SECRET))
    os.chmod(path, 0o600)
    return str(path)


def page_offset(path, pfn):
    with checkpoint.open_checkpoint(path) as ck:
        idx = ck.layout.ram
        return ck.stream_base + int(idx.rec_data[idx.last[0][pfn]])


def planted_groups(path):
    """What an attacker wants written: its byte over a guest page."""
    return [journal.Group(journal.FILL_PAGE,
                          np.array([page_offset(path, 4)]), fill=0xee)]


def sha256_journal(path, groups):
    """A journal in the format before it was authenticated (version 2,
    a plain SHA-256 trailer), for the file as it is now: right size,
    right inode. Anyone can compute it.
    """
    st = os.stat(path)
    body = struct.pack('<8sIIQQ', b'SPARCJNL', 2, len(groups), st.st_size,
                       st.st_ino)
    for g in groups:
        body += struct.pack('<BBI', g.kind, g.fill, len(g.offsets))
        body += np.asarray(g.offsets, dtype='<u8').tobytes()
    return body + hashlib.sha256(body).digest()


def wrong_key_journal(path, groups):
    """A well-formed current journal for the file as it is now, MAC'd
    with a key that is not the host's.
    """
    return journal.encode(groups, journal.Identity.of(os.stat(path)),
                          b'k' * journal.KEY_SIZE)


def plant(path, data, mode=0o600):
    jpath = journal.journal_path(path)
    fd = os.open(jpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(jpath, mode)
    return jpath


@pytest.mark.parametrize('forge', [sha256_journal, wrong_key_journal])
def test_planted_journal_is_refused(image, journal_key, forge):
    journal.load_key(journal_key, create=True)
    original = open(image, 'rb').read()
    jpath = plant(image, forge(image, planted_groups(image)))
    with pytest.raises(journal.JournalRefused) as ei:
        journal.recover(image, journal_key)
    assert jpath in str(ei.value)
    assert open(image, 'rb').read() == original
    # Left for the operator; the checkpoint stays closed until then.
    assert os.path.exists(jpath)
    with pytest.raises(exception.CheckpointError):
        checkpoint.open_checkpoint(image)


def test_planted_journal_refused_by_the_command(image, journal_key, capsys):
    from sparc_nova.cmd import sparc
    from sparc_nova import conf
    journal.load_key(journal_key, create=True)
    original = open(image, 'rb').read()
    plant(image, wrong_key_journal(image, planted_groups(image)))
    conf.CONF.set_override('journal_key_file', journal_key, group='sparc')
    try:
        assert sparc.main(['checkpoint', 'recover', image]) == 2
    finally:
        conf.CONF.clear_override('journal_key_file', group='sparc')
    assert 'MAC does not match' in capsys.readouterr().err
    assert open(image, 'rb').read() == original


def genuine(image, journal_key):
    return journal.encode(planted_groups(image),
                          journal.Identity.of(os.stat(image)),
                          journal.load_key(journal_key, create=True))


@pytest.mark.parametrize('mode', [0o644, 0o640, 0o606, 0o660])
def test_journal_readable_or_writable_by_others_is_refused(
        image, journal_key, mode):
    original = open(image, 'rb').read()
    plant(image, genuine(image, journal_key), mode)
    with pytest.raises(journal.JournalRefused, match='mode'):
        journal.recover(image, journal_key)
    assert open(image, 'rb').read() == original


@pytest.mark.skipif(os.geteuid() != 0, reason='chown needs root')
def test_journal_of_another_owner_is_refused(image, journal_key):
    original = open(image, 'rb').read()
    jpath = plant(image, genuine(image, journal_key))
    os.chown(jpath, 65534, 65534)
    with pytest.raises(journal.JournalRefused, match='owner 65534'):
        journal.recover(image, journal_key)
    assert open(image, 'rb').read() == original


def test_hard_linked_journal_is_refused(image, journal_key, tmp_path):
    original = open(image, 'rb').read()
    jpath = plant(image, genuine(image, journal_key))
    os.link(jpath, tmp_path / 'elsewhere')
    with pytest.raises(journal.JournalRefused, match='2 links'):
        journal.recover(image, journal_key)
    assert open(image, 'rb').read() == original


def test_genuine_journal_is_replayed(image, journal_key):
    plant(image, genuine(image, journal_key))
    assert journal.recover(image, journal_key) == 'replayed'
    with checkpoint.open_checkpoint(image) as ck:
        assert ck.memory.read_page(4) == PLANTED * 4096


def test_symlink_in_place_of_the_journal_is_not_followed(
        image, journal_key, tmp_path):
    original = open(image, 'rb').read()
    elsewhere = tmp_path / 'elsewhere.jnl'
    elsewhere.write_bytes(genuine(image, journal_key))
    os.chmod(elsewhere, 0o600)
    os.symlink(elsewhere, journal.journal_path(image))
    with pytest.raises(journal.JournalRefused, match='symbolic link'):
        journal.recover(image, journal_key)
    assert open(image, 'rb').read() == original


def test_symlink_in_place_of_the_journal_temporary_is_not_followed(
        image, journal_key, tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    original = open(image, 'rb').read()
    with checkpoint.open_checkpoint(image) as ck:
        # Planted while the scrub runs, before it writes its journal.
        os.symlink(victim, journal.temporary_path(image))
        with pytest.raises(exception.CheckpointError) as ei:
            rewrite.rewrite_pages(ck, {4: bytes(4096), 6: bytes(4096)},
                                  in_place=True, journal_key=journal_key)
    assert 'already exists' in str(ei.value)
    assert victim.read_bytes() == b'precious'
    assert open(image, 'rb').read() == original
    # recover removes the link itself, never what it points at.
    assert journal.recover(image, journal_key) == 'discarded'
    assert not os.path.lexists(journal.temporary_path(image))
    assert victim.read_bytes() == b'precious'


def test_in_place_refused_in_a_directory_others_may_write(
        image, journal_key):
    original = open(image, 'rb').read()
    os.chmod(os.path.dirname(image), 0o1777)
    try:
        with checkpoint.open_checkpoint(image) as ck:
            with pytest.raises(exception.CheckpointError,
                               match='writable by no one else'):
                rewrite.rewrite_pages(ck, {4: bytes(4096)}, in_place=True,
                                      journal_key=journal_key)
    finally:
        os.chmod(os.path.dirname(image), 0o700)
    assert open(image, 'rb').read() == original
    assert sorted(os.listdir(os.path.dirname(image))) == ['save.img']


# -- the key --------------------------------------------------------------


def test_key_is_made_once_private(journal_key):
    key = journal.load_key(journal_key, create=True)
    st = os.stat(journal_key)
    assert len(key) == journal.KEY_SIZE and st.st_size == journal.KEY_SIZE
    assert st.st_mode & 0o777 == 0o600
    assert journal.load_key(journal_key) == key
    assert os.listdir(os.path.dirname(journal_key)) == ['journal.key']


def test_missing_key_directory_is_made_private(tmp_path):
    key_file = tmp_path / 'var' / 'lib' / 'sparc' / 'journal.key'
    journal.load_key(str(key_file), create=True)
    assert os.stat(key_file.parent).st_mode & 0o777 == 0o700


def test_missing_key_is_not_made_for_recovery(journal_key):
    with pytest.raises(exception.CheckpointError, match='no journal key'):
        journal.load_key(journal_key)
    assert not os.path.exists(journal_key)


@pytest.mark.parametrize('setup, message', [
    (lambda k: os.chmod(k, 0o644), 'mode 644'),
    (lambda k: os.chmod(os.path.dirname(k), 0o770), 'writable by no one'),
    (lambda k: (os.rename(k, k + '.real'), os.symlink(k + '.real', k)),
     'cannot read the journal key'),
    (lambda k: open(k, 'ab').write(b'x'), '33 bytes'),
])
def test_key_that_is_not_private_is_refused(journal_key, setup, message):
    journal.load_key(journal_key, create=True)
    setup(journal_key)
    with pytest.raises(exception.CheckpointError, match=message):
        journal.load_key(journal_key)


# -- hostile journal bytes (what a key holder's bug could write) -----------


def body_of(groups, target):
    return journal.encode(groups, target, b'k' * 32)[:-journal.MAC_SIZE]


TARGET = journal.Identity(1 << 20, 7, 9)


@pytest.mark.parametrize('groups, message', [
    # 2**63 and above turn negative as int64: an index from the end.
    ([journal.Group(journal.FILL_BYTE, np.array([2 ** 63], dtype=np.uint64),
                    fill=1)], 'beyond the end'),
    ([journal.Group(journal.FILL_PAGE, np.array([(1 << 20) - 4095]))],
     'beyond the end'),
    ([journal.Group(journal.FILL_BYTE, np.array([1 << 20]))],
     'beyond the end'),
])
def test_patches_outside_the_file_are_refused(groups, message):
    with pytest.raises(journal.JournalRefused, match=message):
        journal.decode_body(body_of(groups, TARGET), TARGET, 'j')


@pytest.mark.parametrize('mangle, message', [
    (lambda b: b[:10], 'truncated header'),
    (lambda b: b[:-1], 'truncated'),
    (lambda b: b + b'\0', 'after the last group'),
    (lambda b: b[:8] + struct.pack('<I', 2) + b[12:], 'not a version 3'),
    (lambda b: b[:12] + struct.pack('<I', 2 ** 32 - 1) + b[16:],
     'truncated'),
    (lambda b: b[:40] + b'\x09' + b[41:], 'unknown kind 9'),
])
def test_malformed_journal_bodies_are_refused(mangle, message):
    groups = [journal.Group(journal.FILL_PAGE, np.array([0, 8192]), fill=0)]
    with pytest.raises(journal.JournalRefused, match=message):
        journal.decode_body(mangle(body_of(groups, TARGET)), TARGET, 'j')


def test_oversized_journal_is_refused_before_its_mac():
    data = b'\0' * (journal.max_journal_bytes(TARGET.size) + 1)
    with pytest.raises(journal.JournalRefused, match='more than'):
        journal.decode(data, TARGET, b'k' * 32, 'j')


def test_journal_in_a_directory_others_may_write_is_refused(image,
                                                            journal_key):
    original = open(image, 'rb').read()
    plant(image, genuine(image, journal_key))
    os.chmod(os.path.dirname(image), 0o1777)
    try:
        with pytest.raises(exception.CheckpointError,
                           match='writable by no one else'):
            journal.recover(image, journal_key)
        os.unlink(journal.journal_path(image))
        # Nothing to recover is not an error, wherever the file is.
        assert journal.recover(image, journal_key) is None
    finally:
        os.chmod(os.path.dirname(image), 0o700)
    assert open(image, 'rb').read() == original


def _pages_body():
    data = bytes(range(256)) * 32
    groups = [journal.Group(journal.PAGES, np.array([0, 8192]),
                            pages=lambda i, n: data[i * 4096:(i + n) * 4096])]
    return body_of(groups, TARGET)


@pytest.mark.parametrize('mangle, message', [
    # A version 3 journal has no PAGES group.
    (lambda b: b[:8] + struct.pack('<I', 3) + b[12:], 'unknown kind 4'),
    # Two pages announced, the offsets cut: truncated.
    (lambda b: b[:-9], 'truncated'),
    # The count grown past the pages the body holds.
    (lambda b: b[:42] + struct.pack('<I', 3) + b[46:], 'truncated'),
])
def test_malformed_pages_groups_are_refused(mangle, message):
    with pytest.raises(journal.JournalRefused, match=message):
        journal.decode_body(mangle(_pages_body()), TARGET, 'j')


def test_pages_group_round_trip():
    groups = journal.decode_body(_pages_body(), TARGET, 'j')
    assert [g.kind for g in groups] == [journal.PAGES]
    assert groups[0].offsets.tolist() == [0, 8192]
    assert bytes(groups[0].pages(0, 2)) == bytes(range(256)) * 32


def test_pages_group_beyond_the_end_is_refused():
    data = bytes(8192)
    groups = [journal.Group(journal.PAGES, np.array([0, (1 << 20) - 4095]),
                            pages=lambda i, n: data[i * 4096:(i + n) * 4096])]
    with pytest.raises(journal.JournalRefused, match='beyond the end'):
        journal.decode_body(body_of(groups, TARGET), TARGET, 'j')


def test_pages_of_the_wrong_size_are_not_written():
    groups = [journal.Group(journal.PAGES, np.array([0, 8192]),
                            pages=lambda i, n: bytes(4096))]
    with pytest.raises(ValueError, match='not 8192'):
        body_of(groups, TARGET)
