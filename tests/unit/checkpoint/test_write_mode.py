import os

import pytest

from sparc_nova.checkpoint import write_mode
from sparc_nova import exception


@pytest.fixture
def private(tmp_path):
    d = tmp_path / 'private'
    d.mkdir(mode=0o700)
    return d


def test_default_is_a_rewrite_over_the_checkpoint(private):
    path = str(private / 'a.save')
    mode = write_mode.choose(path, 0)
    assert (mode.source, mode.target, mode.in_place, mode.compression,
            mode.journal_key) == (path, path, False, 0, None)
    assert mode.replaces_source


def test_output_is_a_rewrite_to_another_file(private):
    path, out = str(private / 'a.save'), str(private / 'b.save')
    mode = write_mode.choose(path, 2, output=out)
    assert (mode.target, mode.in_place, mode.compression) == (out, False, 2)
    assert not mode.replaces_source


def test_output_naming_the_checkpoint_replaces_it(private):
    path = str(private / 'a.save')
    mode = write_mode.choose(path, 0, output=os.path.join(
        str(private), '.', 'a.save'), in_place=True, journal_key='k')
    assert mode.in_place and mode.target == path


def test_in_place_asked_for(private):
    path = str(private / 'a.save')
    mode = write_mode.choose(path, 0, in_place=True, journal_key='k')
    assert mode.in_place and mode.journal_key == 'k'


@pytest.mark.parametrize('kwargs, message', [
    (dict(compression=0, in_place=True, output='/elsewhere',
          journal_key='k'), 'exclude each other'),
    (dict(compression=1, in_place=True, journal_key='k'),
     'needs a raw image; this one is gzip-compressed'),
    (dict(compression=0, in_place=True), 'needs a journal key'),
])
def test_impossible_requests_are_refused(private, kwargs, message):
    path = str(private / 'a.save')
    compression = kwargs.pop('compression')
    with pytest.raises(exception.CheckpointError, match=message) as e:
        write_mode.choose(path, compression, **kwargs)
    assert e.value.path == path


def test_in_place_if_possible(private, tmp_path):
    path = str(private / 'a.save')
    assert write_mode.choose(path, 0, in_place_if_possible=True,
                             journal_key='k').in_place
    # Compressed, no key, or an output: replaced by a rewrite instead.
    for compression, key, out in ((3, 'k', None), (0, None, None),
                                  (0, 'k', str(private / 'b'))):
        mode = write_mode.choose(path, compression, output=out,
                                 in_place_if_possible=True, journal_key=key)
        assert not mode.in_place and mode.journal_key is None
    # A directory others may write cannot hold a journal.
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o777)
    mode = write_mode.choose(str(shared / 'a.save'), 0,
                             in_place_if_possible=True, journal_key='k')
    assert not mode.in_place


def test_check_request_refuses_before_any_file_is_read(tmp_path):
    missing = str(tmp_path / 'missing.save')
    with pytest.raises(exception.CheckpointError, match='exclude each'):
        write_mode.check_request(missing, output=str(tmp_path / 'o'),
                                 in_place=True)
    assert write_mode.check_request(missing, output=missing,
                                    in_place=True) is None


def test_journal_directory_where_the_directory_is_not_private(private,
                                                              tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o777)
    path = str(shared / 'a.save')
    journals = tmp_path / 'state' / 'journals'
    mode = write_mode.choose(path, 0, in_place_if_possible=True,
                             journal_key='k', journal_dir=str(journals))
    assert (mode.in_place, mode.journal_key, mode.journal_dir) == \
        (True, 'k', str(journals))
    # Made for it, private.
    assert os.stat(journals).st_mode & 0o777 == 0o700
    # A private directory of its own keeps the journal next to the file.
    mode = write_mode.choose(str(private / 'a.save'), 0,
                             in_place_if_possible=True, journal_key='k',
                             journal_dir=str(journals))
    assert mode.in_place and mode.journal_dir is None
    # Only for in_place_if_possible, a raw image and no output.
    for compression, out in ((3, None), (0, str(private / 'b'))):
        mode = write_mode.choose(path, compression, output=out,
                                 in_place_if_possible=True, journal_key='k',
                                 journal_dir=str(journals))
        assert not mode.in_place and mode.journal_dir is None


def test_journal_directory_others_may_write_is_not_used(tmp_path, caplog):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o777)
    open_journals = tmp_path / 'journals'
    open_journals.mkdir()
    os.chmod(open_journals, 0o775)
    mode = write_mode.choose(str(shared / 'a.save'), 0,
                             in_place_if_possible=True, journal_key='k',
                             journal_dir=str(open_journals))
    assert not mode.in_place and mode.journal_dir is None
    assert 'writable by no one else' in caplog.text
