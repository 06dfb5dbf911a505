"""Records of managed saves not scrubbed yet, and the privileged entry
points on them (run in this process, on a directory of the test).
"""

import os

import pytest

from sparc_nova import conf
from sparc_nova import privsep
from sparc_nova.privsep import checkpoint
from sparc_nova.privsep import save_markers


@pytest.fixture
def save_dir(tmp_path):
    d = tmp_path / 'save'
    d.mkdir(mode=0o700)
    conf.CONF.set_override('managed_save_dir', str(d), group='sparc')
    conf.CONF.set_override('journal_dir', str(tmp_path / 'journals'),
                           group='sparc')
    yield d
    conf.CONF.clear_override('managed_save_dir', group='sparc')
    conf.CONF.clear_override('journal_dir', group='sparc')


@pytest.fixture(autouse=True)
def in_process():
    privsep.scrub_pctxt.set_client_mode(False)
    yield
    privsep.scrub_pctxt.set_client_mode(True)


def call(entry, *args):
    """An entry point, run in this process (not in the daemon)."""
    return entry(*args)


def test_write_pending_remove(save_dir):
    assert save_markers.pending() == []
    path = save_markers.write('instance-0000002a')
    assert path == str(save_dir / 'instance-0000002a.save.sparc-pending')
    assert os.stat(path).st_mode & 0o777 == 0o600
    save_markers.write('instance-00000001')
    (save_dir / 'instance-00000003.save').write_bytes(b'x')
    assert save_markers.pending() == ['instance-00000001',
                                      'instance-0000002a']
    assert save_markers.remove('instance-0000002a') is True
    assert save_markers.remove('instance-0000002a') is False
    assert save_markers.pending() == ['instance-00000001']


def test_write_refuses_a_symlink(save_dir, tmp_path):
    target = tmp_path / 'elsewhere'
    os.symlink(target, save_dir / 'instance-1.save.sparc-pending')
    with pytest.raises(Exception) as e:
        save_markers.write('instance-1')
    assert 'cannot record the managed save as unscrubbed' in str(e.value)
    assert not target.exists()


def test_pending_without_the_directory(save_dir):
    save_dir.rmdir()
    assert save_markers.pending() == []


def test_entry_points(save_dir):
    call(checkpoint.begin_managed_save, 'instance-1')
    assert call(checkpoint.pending_managed_saves) == ['instance-1']
    save = save_dir / 'instance-1.save'
    save.write_bytes(b'memory')
    save.chmod(0o600)
    assert call(checkpoint.discard_managed_save, 'instance-1') is True
    assert not save.exists()
    assert call(checkpoint.pending_managed_saves) == []
    call(checkpoint.begin_managed_save, 'instance-2')
    assert call(checkpoint.end_managed_save, 'instance-2') is True
    assert call(checkpoint.discard_managed_save, 'instance-2') is False


@pytest.mark.parametrize('name', ['../etc/passwd', '', 'a/b', 7])
def test_entry_points_refuse_other_names(save_dir, name):
    for entry in (checkpoint.begin_managed_save,
                  checkpoint.end_managed_save,
                  checkpoint.discard_managed_save):
        with pytest.raises(checkpoint.PrivilegedScrubError):
            call(entry, name)


def test_discard_refuses_a_hard_link(save_dir, tmp_path):
    other = tmp_path / 'other'
    other.write_bytes(b'x')
    other.chmod(0o600)
    os.link(other, save_dir / 'instance-1.save')
    save_markers.write('instance-1')
    with pytest.raises(checkpoint.PrivilegedScrubError):
        call(checkpoint.discard_managed_save, 'instance-1')
    assert other.exists()
    assert save_markers.pending() == ['instance-1']


def test_a_journal_left_after_the_sweep_is_an_unfinished_scrub(save_dir):
    # A scrub interrupted under a release whose journal the sweep refused:
    # the save is half scrubbed, so it is discarded like a recorded one.
    save = save_dir / 'instance-7.save'
    save.write_bytes(b'memory')
    save.chmod(0o600)
    journal = save_dir / '.instance-7.save.sparc-journal'
    journal.write_bytes(b'SPARCJNL\x02\x00\x00\x00')
    (save_dir / '.instance-7.save.sparc-journal.tmp').write_bytes(b'')
    # Not instance saves: left out.
    (save_dir / '.x y.save.sparc-journal').write_bytes(b'')
    (save_dir / '.instance-8.save.sparc-journal.tmp').write_bytes(b'')
    call(checkpoint.begin_managed_save, 'instance-1')
    assert save_markers.journaled() == ['instance-7', 'x y']
    assert call(checkpoint.pending_managed_saves) == ['instance-1',
                                                      'instance-7']
    assert call(checkpoint.discard_managed_save, 'instance-7') is True
    assert sorted(os.listdir(save_dir)) == [
        '.instance-8.save.sparc-journal.tmp', '.x y.save.sparc-journal',
        'instance-1.save.sparc-pending']
    assert call(checkpoint.pending_managed_saves) == ['instance-1']


def test_a_journal_in_the_journal_directory_is_an_unfinished_scrub(
        save_dir, tmp_path):
    from sparc_nova.checkpoint import journal
    journals = tmp_path / 'journals'
    journals.mkdir(mode=0o700)
    save = save_dir / 'instance-7.save'
    save.write_bytes(b'memory')
    jpath = journal.journal_path(str(save), str(journals))
    with open(jpath, 'wb') as f:
        f.write(b'SPARCJNL\x02\x00\x00\x00')
    with open(journal.temporary_path(str(save), str(journals)), 'wb'):
        pass
    # Named like a journal of instance-9's save, but of another path.
    other = journal.journal_path('/elsewhere/instance-9.save', str(journals))
    with open(other, 'wb'):
        pass
    assert save_markers.journaled() == ['instance-7']
    assert call(checkpoint.pending_managed_saves) == ['instance-7']
    assert call(checkpoint.discard_managed_save, 'instance-7') is True
    assert os.listdir(journals) == [os.path.basename(other)]
    assert os.listdir(save_dir) == []
    assert call(checkpoint.pending_managed_saves) == []
