"""Crash safety of in-place patching: the redo journal."""

import os

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import rewrite
from sparc_nova.checkpoint import tempfiles
from sparc_nova.checkpoint import write_mode
from sparc_nova.cmd import sparc
from sparc_nova import conf
from sparc_nova import exception
from tests import streamgen

SECRET = b'IN-PLACE-SECRET-0123456789abcdef'


@pytest.fixture
def image(tmp_path):
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=32, secret_pfns=(4, 6),
                                           secret=SECRET))
    return str(path)


def patches_for(path, pages=(4, 6)):
    """One group per page: zero the secret pages' payloads."""
    with checkpoint.open_checkpoint(path) as ck:
        idx = ck.layout.ram
        return [journal.Group(journal.FILL_PAGE, np.array(
            [ck.stream_base + int(idx.rec_data[idx.last[0][p]])]), fill=0)
            for p in pages]


def test_complete_journal_is_replayed(image, journal_key):
    original = open(image, 'rb').read()
    patches = patches_for(image)
    journal.write(image, patches, journal_key)
    # Crash after the journal, before any page was written.
    assert open(image, 'rb').read() == original
    with pytest.raises(exception.CheckpointError) as ei:
        checkpoint.open_checkpoint(image)
    assert 'sparc checkpoint recover' in str(ei.value)
    assert journal.recover(image, journal_key) == 'replayed'
    assert SECRET not in open(image, 'rb').read()
    assert not journal.pending(image)
    checkpoint.open_checkpoint(image).close()


def test_half_applied_journal_is_finished(image, journal_key):
    patches = patches_for(image)
    journal.write(image, patches, journal_key)
    journal.apply(image, patches[:1])       # crash after the first page
    assert open(image, 'rb').read().count(SECRET) == 1
    conf.CONF.set_override('journal_key_file', journal_key, group='sparc')
    try:
        assert sparc.main(['checkpoint', 'recover', image]) == 0
    finally:
        conf.CONF.clear_override('journal_key_file', group='sparc')
    assert SECRET not in open(image, 'rb').read()


def test_torn_journal_is_refused(image, journal_key):
    # A journal is renamed into place only once complete and fsync'd: a
    # torn one is damage (or a forgery), never replayed.
    original = open(image, 'rb').read()
    jpath = journal.write(image, patches_for(image), journal_key)
    with open(jpath, 'r+b') as f:
        f.truncate(os.path.getsize(jpath) - 10)
    with pytest.raises(journal.JournalRefused, match='MAC does not match'):
        journal.recover(image, journal_key)
    assert open(image, 'rb').read() == original
    assert os.path.exists(jpath)


def test_incomplete_journal_temporary_is_discarded(image, journal_key):
    original = open(image, 'rb').read()
    jpath = journal.write(image, patches_for(image), journal_key)
    os.rename(jpath, journal.temporary_path(image))
    assert journal.pending(image)
    assert journal.recover(image, journal_key) == 'discarded'
    assert open(image, 'rb').read() == original
    assert not journal.pending(image)


def test_journal_for_another_file_is_refused(image, journal_key):
    journal.write(image, patches_for(image), journal_key)
    with open(image, 'ab') as f:
        f.write(b'x')
    with pytest.raises(exception.CheckpointError) as ei:
        journal.recover(image, journal_key)
    assert 'another version' in str(ei.value)


def test_in_place_rewrite_leaves_no_journal(image, journal_key):
    with checkpoint.open_checkpoint(image) as ck:
        rewrite.rewrite_pages(ck, {4: bytes(4096), 6: bytes(4096)},
                              in_place=True, journal_key=journal_key)
    assert not journal.pending(image)
    assert sorted(os.listdir(os.path.dirname(image))) == ['save.img']


def test_groups_of_every_kind(image, journal_key):
    with checkpoint.open_checkpoint(image) as ck:
        idx = ck.layout.ram
        page2 = ck.stream_base + int(idx.rec_data[idx.last[0][2]])
        page4 = ck.stream_base + int(idx.rec_data[idx.last[0][4]])
        fill3 = ck.stream_base + int(idx.rec_data[idx.last[0][3]])
    content = bytes(range(256)) * 16
    groups = [journal.Group(journal.FULL_PAGE, np.array([page2]),
                            content=content),
              journal.Group(journal.FILL_PAGE, np.array([page4]), fill=0xaa),
              journal.Group(journal.FILL_BYTE, np.array([fill3]), fill=0x55)]
    journal.write(image, groups, journal_key)
    assert journal.recover(image, journal_key) == 'replayed'
    with checkpoint.open_checkpoint(image) as ck:
        assert ck.memory.read_page(2) == content
        assert ck.memory.read_page(4) == b'\xaa' * 4096
        assert ck.memory.read_page(3) == b'\x55' * 4096


def test_fill_byte_groups_alone(image, journal_key):
    """A journal of ZERO-record fill changes only (no page-sized group)."""
    with checkpoint.open_checkpoint(image) as ck:
        idx = ck.layout.ram
        fill3 = ck.stream_base + int(idx.rec_data[idx.last[0][3]])
    journal.write(image, [journal.Group(journal.FILL_BYTE, np.array([fill3]),
                                        fill=0x11)], journal_key)
    assert journal.recover(image, journal_key) == 'replayed'
    with checkpoint.open_checkpoint(image) as ck:
        assert ck.memory.read_page(3) == b'\x11' * 4096


def test_stale_temporaries_removed(image):
    d = os.path.dirname(image)
    dead = os.path.join(d, '.save.img.sparc-999999999-abc')
    alive = os.path.join(d, '.save.img.sparc-%d-abc' % os.getpid())
    for p in (dead, alive):
        open(p, 'w').close()
    assert tempfiles.remove_stale_temporaries(image) == [dead]
    assert os.path.exists(alive)


def test_in_place_rewrite_writes_only_the_file_it_parsed(image, journal_key):
    """The name now leads to another file (swapped while the scrub
    planned): the in-place patch refuses it and writes nothing.
    """
    other = image + '.other'
    with open(image, 'rb') as f:
        original = f.read()
    with checkpoint.open_checkpoint(image) as ck:
        os.rename(image, other)
        with open(image, 'wb') as f:
            f.write(original)
        with pytest.raises(exception.CheckpointError,
                           match='no longer the file that was parsed'):
            rewrite.rewrite_pages(ck, {4: bytes(4096)}, in_place=True,
                                  journal_key=journal_key)
    with open(image, 'rb') as f:
        assert f.read() == original
    with open(other, 'rb') as f:
        assert f.read() == original
    assert not journal.pending(image)


@pytest.fixture
def journals(tmp_path):
    """A journal directory (``[sparc] journal_dir``), made private."""
    d = str(tmp_path / 'journals')
    journal.make_directory(d, 'test')
    return d


def test_journal_directory_names_a_journal_after_the_path(tmp_path):
    one = journal.journal_path('/srv/a/x.save', str(tmp_path))
    other = journal.journal_path('/srv/b/x.save', str(tmp_path))
    assert one != other
    for p in (one, other):
        assert os.path.dirname(p) == str(tmp_path)
        assert os.path.basename(p).startswith('x.save.')
        assert p.endswith(journal.SUFFIX)
    assert journal.temporary_path('/srv/a/x.save', str(tmp_path)) == \
        one + '.tmp'
    # Without a journal directory: next to the file, as before.
    assert journal.journal_path('/srv/a/x.save') == \
        '/srv/a/.x.save' + journal.SUFFIX


def test_journal_in_the_journal_directory_is_replayed(image, journal_key,
                                                      journals):
    original = open(image, 'rb').read()
    patches = patches_for(image)
    jpath = journal.write(image, patches, journal_key, directory=journals)
    assert os.path.dirname(jpath) == journals
    assert not os.path.lexists(journal.journal_path(image))
    assert journal.pending(image, journals) and not journal.pending(image)
    # Crash after the journal, before any page was written.
    assert open(image, 'rb').read() == original
    assert journal.recover(image, journal_key) is None
    assert journal.recover(image, journal_key, journals) == 'replayed'
    assert SECRET not in open(image, 'rb').read()
    assert os.listdir(journals) == []


def test_journal_directory_journal_of_another_file_is_refused(
        tmp_path, journal_key, journals):
    # Two images of one name in two directories: a journal of one,
    # renamed to the other's name, names the other inode in its MAC.
    paths = []
    for d in ('one', 'two'):
        (tmp_path / d).mkdir()
        p = tmp_path / d / 'save.img'
        p.write_bytes(streamgen.simple_save(ram_pages=32, secret_pfns=(4, 6),
                                            secret=SECRET))
        paths.append(str(p))
    jpath = journal.write(paths[0], patches_for(paths[0]), journal_key,
                          directory=journals)
    os.rename(jpath, journal.journal_path(paths[1], journals))
    with pytest.raises(exception.CheckpointError, match='another version'):
        journal.recover(paths[1], journal_key, journals)
    assert open(paths[1], 'rb').read().count(SECRET) == 2


def test_journal_directory_must_be_private(image, journal_key, tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(exception.CheckpointError,
                       match='writable by no one else'):
        journal.make_directory(str(shared), image)
    with pytest.raises(exception.CheckpointError,
                       match='writable by no one else'):
        journal.write(image, patches_for(image), journal_key,
                      directory=str(shared))
    assert os.listdir(shared) == []


def test_in_place_rewrite_with_a_journal_directory(tmp_path, journal_key,
                                                   journals):
    # The file's own directory may not hold a journal (the QEMU user's
    # managed-save directory): the patch goes through the journal
    # directory, in place, and leaves nothing behind.
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o777)
    path = shared / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=32, secret_pfns=(4, 6),
                                           secret=SECRET))
    inode = os.stat(path).st_ino
    mode = write_mode.choose(str(path), 0, in_place_if_possible=True,
                             journal_key=journal_key, journal_dir=journals)
    with checkpoint.open_checkpoint(str(path)) as ck:
        result = rewrite.rewrite_pages(
            ck, {4: bytes(4096), 6: bytes(4096)}, mode=mode)
    assert result.in_place
    assert os.stat(path).st_ino == inode
    assert SECRET not in path.read_bytes()
    assert os.listdir(journals) == []
    assert sorted(os.listdir(shared)) == ['save.img']


def test_recover_command_looks_in_the_journal_directory(image, journal_key,
                                                        journals):
    journal.write(image, patches_for(image), journal_key, directory=journals)
    conf.CONF.set_override('journal_key_file', journal_key, group='sparc')
    conf.CONF.set_override('journal_dir', journals, group='sparc')
    try:
        assert sparc.main(['checkpoint', 'recover', image]) == 0
    finally:
        conf.CONF.clear_override('journal_key_file', group='sparc')
        conf.CONF.clear_override('journal_dir', group='sparc')
    assert SECRET not in open(image, 'rb').read()
    assert os.listdir(journals) == []
