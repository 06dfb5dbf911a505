"""The file helpers every writer uses: exclusive creation and atomic
replacement."""

import os

import pytest

from sparc_nova.checkpoint import tempfiles


def test_create_exclusive_never_writes_through_a_link_or_a_file(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'keep')
    link = tmp_path / 'link'
    link.symlink_to(victim)
    for planted in (link, victim):
        with pytest.raises(FileExistsError):
            tempfiles.create_exclusive(str(planted))
    assert victim.read_bytes() == b'keep'
    old = os.umask(0)
    try:
        fd = tempfiles.create_exclusive(str(tmp_path / 'new'))
    finally:
        os.umask(old)
    os.close(fd)
    assert os.stat(tmp_path / 'new').st_mode & 0o777 == 0o600


def test_replacement_renames_what_was_written(tmp_path):
    target = tmp_path / 'image'
    target.write_bytes(b'old')
    with tempfiles.replacement(str(target)) as (f, path):
        assert os.path.dirname(path) == str(tmp_path)
        assert os.path.basename(path).startswith(
            tempfiles.temp_prefix(str(target)))
        assert os.stat(path).st_mode & 0o777 == 0o600
        f.write(b'new')
        assert target.read_bytes() == b'old'
    assert target.read_bytes() == b'new'
    assert os.listdir(tmp_path) == ['image']


def test_replacement_written_by_name(tmp_path):
    # A program (qemu-img) writes the temporary by its path.
    target = tmp_path / 'image'
    with tempfiles.replacement(str(target)) as (_, path):
        with open(path, 'wb') as out:
            out.write(b'converted')
    assert target.read_bytes() == b'converted'


def test_failed_replacement_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / 'image'
    target.write_bytes(b'old')
    with pytest.raises(RuntimeError):
        with tempfiles.replacement(str(target)) as (f, path):
            f.write(b'half')
            raise RuntimeError('verification failed')
    assert target.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['image']


def test_fsync_parent(tmp_path):
    tempfiles.fsync_parent(str(tmp_path / 'not-yet-there'))
    with pytest.raises(OSError):
        tempfiles.fsync_parent(str(tmp_path / 'missing' / 'x'))
