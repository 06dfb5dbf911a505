"""Finding and finishing or removing what killed runs left in a directory
(``sparc checkpoint recover --sweep``, the Nova driver at start).
"""

import os

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import sweep
from sparc_nova.cmd import sparc
from sparc_nova import conf
from tests import streamgen

SECRET = b'SWEEP-SECRET-0123456789abcdef012'
DEAD = 999999999


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / 'w'
    d.mkdir(mode=0o700)
    return d


def make_image(d, name='a.save'):
    path = d / name
    path.write_bytes(streamgen.simple_save(ram_pages=16, secret_pfns=(4,),
                                           secret=SECRET))
    os.chmod(path, 0o600)
    return str(path)


def zero_page_4(path):
    with checkpoint.open_checkpoint(path) as ck:
        idx = ck.layout.ram
        off = ck.stream_base + int(idx.rec_data[idx.last[0][4]])
    return [journal.Group(journal.FILL_PAGE, np.array([off]), fill=0)]


def leftovers(d):
    """One of each kind of temporary, of a dead writer and of us."""
    names = {}
    for pid, tag in ((DEAD, 'dead'), (os.getpid(), 'live')):
        names[tag] = ['.sparc-stream-%d-x1' % pid, '.a.save.sparc-%d-x2' % pid,
                      '.disk.qcow2.sparc-%d-x3' % pid,
                      '.sparc-scrub-%d-x4' % pid]
        for n in names[tag]:
            if 'scrub' in n:
                (d / n).mkdir()
                (d / n / 'raw-copy').write_bytes(SECRET)
            else:
                (d / n).write_bytes(SECRET)
    return names


def test_sweep_removes_dead_writers_leftovers_only(workdir, journal_key):
    names = leftovers(workdir)
    (workdir / 'unrelated.sparc-1-file').write_bytes(b'x')
    rep = sweep.sweep(str(workdir), journal_key)
    assert sorted(os.path.basename(p) for p in rep.removed) == \
        sorted(names['dead'])
    assert sorted(os.listdir(workdir)) == sorted(
        names['live'] + ['unrelated.sparc-1-file'])
    assert rep.replayed == [] and rep.refused == []


def test_sweep_finishes_journals_and_discards_temporaries(workdir,
                                                          journal_key):
    a = make_image(workdir, 'a.save')
    b = make_image(workdir, 'b.save')
    journal.write(a, zero_page_4(a), journal_key)
    os.rename(journal.write(b, zero_page_4(b), journal_key),
              journal.temporary_path(b))
    b_before = open(b, 'rb').read()
    orphan = workdir / '.gone.save.sparc-journal'
    orphan.write_bytes(b'whatever')
    rep = sweep.sweep(str(workdir), journal_key)
    assert rep.replayed == [a]
    assert sorted(rep.removed) == sorted([journal.temporary_path(b),
                                          str(orphan)])
    assert SECRET not in open(a, 'rb').read()
    assert open(b, 'rb').read() == b_before
    assert sorted(os.listdir(workdir)) == ['a.save', 'b.save']


def test_sweep_refuses_a_planted_journal_and_goes_on(workdir, journal_key):
    a = make_image(workdir, 'a.save')
    journal.load_key(journal_key, create=True)
    planted = journal.encode(zero_page_4(a),
                             journal.Identity.of(os.stat(a)), b'k' * 32)
    with open(journal.journal_path(a), 'wb') as f:
        f.write(planted)
    os.chmod(journal.journal_path(a), 0o600)
    names = leftovers(workdir)
    before = open(a, 'rb').read()
    rep = sweep.sweep(str(workdir), journal_key)
    assert rep.replayed == []
    [message] = rep.refused
    assert 'MAC does not match' in message
    assert open(a, 'rb').read() == before
    assert len(rep.removed) == len(names['dead'])


def test_recover_sweep_command(workdir, journal_key, capsys):
    a = make_image(workdir, 'a.save')
    journal.write(a, zero_page_4(a), journal_key)
    leftovers(workdir)
    conf.CONF.set_override('journal_key_file', journal_key, group='sparc')
    try:
        assert sparc.main(['checkpoint', 'recover', '--sweep',
                           str(workdir)]) == 0
    finally:
        conf.CONF.clear_override('journal_key_file', group='sparc')
    out = capsys.readouterr().out
    assert '1 journal replayed, 4 leftovers removed, 0 refused' in out
    assert SECRET not in open(a, 'rb').read()


def test_recover_needs_a_file_or_a_directory():
    with pytest.raises(SystemExit):
        sparc.main(['checkpoint', 'recover'])


def test_sweep_finishes_the_journals_of_its_files_in_the_journal_dir(
        tmp_path, journal_key):
    # The directory of the files may not hold journals (others may
    # write it): theirs are kept in the journal directory.
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o777)
    journals = str(tmp_path / 'journals')
    journal.make_directory(journals, 'test')
    image = make_image(shared)
    journal.write(image, zero_page_4(image), journal_key, directory=journals)
    gone = make_image(shared, 'gone.save')
    journal.write(gone, zero_page_4(gone), journal_key, directory=journals)
    os.unlink(gone)
    # A journal of a file of the same name in another directory stays.
    (tmp_path / 'other').mkdir(mode=0o700)
    elsewhere = make_image(tmp_path / 'other')
    kept = journal.write(elsewhere, zero_page_4(elsewhere), journal_key,
                         directory=journals)
    rep = sweep.sweep(str(shared), journal_key, journals)
    assert rep.replayed == [image]
    assert rep.removed == [journal.journal_path(gone, journals)]
    assert rep.refused == []
    assert SECRET not in open(image, 'rb').read()
    assert os.listdir(journals) == [os.path.basename(kept)]
    # Without the journal directory, the sweep does not look there.
    assert sweep.sweep(str(tmp_path / 'other'), journal_key).replayed == []
    assert sweep.sweep(str(tmp_path / 'other'), journal_key,
                       journals).replayed == [elsewhere]
