"""Crash safety of in-place patching: the redo journal."""

import hashlib
import hmac
import os
import struct

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


def _page_offsets(image, pfns):
    with checkpoint.open_checkpoint(image) as ck:
        idx = ck.layout.ram
        return np.array([ck.stream_base + int(idx.rec_data[idx.last[0][p]])
                         for p in pfns])


def test_pages_group_is_replayed(image, journal_key):
    """A PAGES group: page i at offset i, asked for a batch at a time."""
    pfns = [2, 4, 6, 8]
    pages = [bytes([p]) * 100 + bytes(range(256)) * 15 + bytes(3996 - 3840)
             for p in pfns]
    joined = b''.join(pages)
    asked = []

    def source(i, n):
        asked.append((i, n))
        return joined[i * 4096:(i + n) * 4096]

    group = journal.Group(journal.PAGES, _page_offsets(image, pfns),
                          pages=source)
    jpath = journal.write(image, [group], journal_key)
    assert asked == [(0, 4)]
    data = open(jpath, 'rb').read()
    assert joined in data
    assert journal.recover(image, journal_key) == 'replayed'
    with checkpoint.open_checkpoint(image) as ck:
        assert [ck.memory.read_page(p) for p in pfns] == pages


def test_version_3_journal_is_still_replayed(image, journal_key):
    """A journal left by a crash before an upgrade (version 3: no PAGES
    groups) is replayed.
    """
    content = bytes(range(256)) * 16
    groups = [journal.Group(journal.FULL_PAGE, _page_offsets(image, [4]),
                            content=content)]
    target = journal.Identity.of(os.stat(image))
    key = journal.load_key(journal_key, create=True)
    body = journal.encode(groups, target, key)[:-journal.MAC_SIZE]
    body = body[:8] + struct.pack('<I', 3) + body[12:]
    jpath = journal.journal_path(image)
    fd = os.open(jpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(body + hmac.new(key, body, hashlib.sha256).digest())
    assert journal.recover(image, journal_key) == 'replayed'
    with checkpoint.open_checkpoint(image) as ck:
        assert ck.memory.read_page(4) == content


def test_in_place_rewrite_of_distinct_pages(tmp_path, journal_key):
    """Pages that each have their own content are journaled as one PAGES
    group, the same file as a FULL_PAGE group a content gives.
    """
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=600))
    copy = tmp_path / 'copy.img'
    copy.write_bytes(path.read_bytes())
    # 300 data pages (even frames), each its own content.
    new = {p: bytes([p % 251]) * 8 + os.urandom(4088)
           for p in range(0, 600, 2)}
    seen = []
    real = journal.write

    def spy(p, groups, *a, **kw):
        seen.append(sorted(g.kind for g in groups))
        return real(p, groups, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(journal, 'write', spy)
        with checkpoint.open_checkpoint(str(path)) as ck:
            rewrite.rewrite_pages(ck, new, in_place=True,
                                  journal_key=journal_key)
    assert seen == [[journal.PAGES]]
    with checkpoint.open_checkpoint(str(copy)) as ck:
        edits = rewrite._plan(ck, rewrite.PageReplacements.of(new))
        groups = rewrite._groups(ck, edits)
        assert {g.kind for g in groups} == {journal.FULL_PAGE}
        assert len(groups) == 300
    journal.apply(str(copy), groups)
    assert path.read_bytes() == copy.read_bytes()
    with checkpoint.open_checkpoint(str(path)) as ck:
        assert all(ck.memory.read_page(p) == v for p, v in new.items())
