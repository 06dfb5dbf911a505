"""The privileged entry points of sealed suspends (privsep.checkpoint:
seal_managed_save, unseal_managed_save, kill_sealed_managed_save,
sealed_pages_state, discard_sealed_pages). They run in-process; unseal
works on real sealed checkpoints (synthetic streams, sealed by the
engine from a fixed plan), the seal's planning is the engine's and is
replaced where it needs a guest kernel.
"""

import os

import pytest

from sparc_nova.checkpoint import limits
from sparc_nova.checkpoint import sealed
from sparc_nova import conf
from sparc_nova.engine import memory
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import seal
from sparc_nova import privsep
from sparc_nova.privsep import checkpoint as privsep_checkpoint
from tests.unit.engine import test_seal as engine_seal

NAME = 'instance-00000001'
KEY = engine_seal.KEY
OTHER_KEY = bytes(32)


@pytest.fixture(params=['rewrite', 'in-place'])
def save_dir(request, tmp_path):
    path = tmp_path / 'save'
    path.mkdir(mode=0o700)
    conf.CONF.set_override('managed_save_dir', str(path), group='sparc')
    conf.CONF.set_override(
        'journal_key_file',
        str(tmp_path / 'keys' / 'journal') if request.param == 'in-place'
        else '', group='sparc')
    conf.CONF.set_override('journal_dir', str(tmp_path / 'journals'),
                           group='sparc')
    privsep.scrub_pctxt.set_client_mode(False)
    yield path
    privsep.scrub_pctxt.set_client_mode(True)
    for name in ('managed_save_dir', 'journal_key_file', 'journal_dir'):
        conf.CONF.clear_override(name, group='sparc')


@pytest.fixture
def shared_save_dir(tmp_path):
    """A managed-save directory that may not hold a journal, as on
    Debian (the QEMU user's; here: anyone may write it, sticky), with a
    journal key: in place, the journal in ``[sparc] journal_dir``.
    """
    path = tmp_path / 'save'
    path.mkdir()
    os.chmod(path, 0o1777)
    overrides = {'managed_save_dir': str(path),
                 'journal_key_file': str(tmp_path / 'keys' / 'journal'),
                 'journal_dir': str(tmp_path / 'journals')}
    for name, value in overrides.items():
        conf.CONF.set_override(name, value, group='sparc')
    privsep.scrub_pctxt.set_client_mode(False)
    yield path
    privsep.scrub_pctxt.set_client_mode(True)
    for name in overrides:
        conf.CONF.clear_override(name, group='sparc')


def seal_as_the_daemon(path):
    """Seal ``path`` from the engine's fixed plan, written as the daemon
    writes a managed save (in place when a journal key is configured).
    """
    journal_key = conf.CONF.sparc.journal_key_file or None
    engine_seal.do_seal(path, in_place=bool(journal_key),
                        journal_key=journal_key,
                        journal_dir=conf.CONF.sparc.journal_dir)


def sealed_save(save_dir):
    """A sealed managed save of NAME: (path, its pages before the seal)."""
    path = engine_seal.make(save_dir, NAME + '.save')
    before = engine_seal.pages(path)
    seal_as_the_daemon(path)
    return path, before


def restored(pages, before):
    """Whether ``pages`` are ``before`` but for free memory (scrubbed,
    not sealed: frames 30 and 32, a free object in frame 6).
    """
    free = set(engine_seal.FREE_FRAMES) | {6}
    return all(a == b for i, (a, b) in enumerate(zip(pages, before))
               if i not in free)


def snapshot(save_dir):
    return {p: open(os.path.join(save_dir, p), 'rb').read()
            for p in sorted(os.listdir(save_dir))}


def test_unseal_puts_everything_back_and_deletes_the_sealed_pages(save_dir):
    path, before = sealed_save(save_dir)
    assert privsep_checkpoint.sealed_pages_state(NAME) == {
        'managed_save': True, 'sealed': True}
    result = privsep_checkpoint.unseal_managed_save(
        path=path, instance_name=NAME, key=KEY)
    assert result['frames_restored'] == 2
    assert restored(engine_seal.pages(path), before)
    assert not os.path.exists(sealed.sealed_path(path))
    assert privsep_checkpoint.sealed_pages_state(NAME) == {
        'managed_save': True, 'sealed': False}


def test_seal_and_unseal_rewrite_where_the_directory_is_not_private(
        shared_save_dir):
    # Unlike a scrub, not in place through [sparc] journal_dir: an
    # in-place unseal journals every restored page with its content.
    path = engine_seal.make(shared_save_dir, NAME + '.save')
    before = engine_seal.pages(path)
    assert not privsep_checkpoint._in_place(path, limits.DEFAULT)
    engine_seal.do_seal(path)
    inode = os.stat(path).st_ino
    privsep_checkpoint.unseal_managed_save(path=path, instance_name=NAME,
                                           key=KEY)
    assert os.stat(path).st_ino != inode
    assert restored(engine_seal.pages(path), before)
    assert not os.path.exists(conf.CONF.sparc.journal_dir)
    assert os.listdir(shared_save_dir) == [NAME + '.save']


def test_engine_seals_and_unseals_in_place_with_a_journal_directory(
        shared_save_dir):
    path = engine_seal.make(shared_save_dir, NAME + '.save')
    inode = os.stat(path).st_ino
    before = engine_seal.pages(path)
    journals = conf.CONF.sparc.journal_dir
    engine_seal.do_seal(path, in_place=True,
                        journal_key=conf.CONF.sparc.journal_key_file,
                        journal_dir=journals)
    seal.unseal_checkpoint(path, KEY, in_place=True,
                           journal_key=conf.CONF.sparc.journal_key_file,
                           journal_dir=journals)
    # Patched, not replaced: the same file, and no journal left.
    assert os.stat(path).st_ino == inode
    assert restored(engine_seal.pages(path), before)
    assert os.listdir(journals) == []
    assert os.listdir(shared_save_dir) == [NAME + '.save']


def test_unseal_with_a_wrong_key_changes_nothing(save_dir):
    path, _ = sealed_save(save_dir)
    files = snapshot(save_dir)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='the key does not open it'):
        privsep_checkpoint.unseal_managed_save(
            path=path, instance_name=NAME, key=OTHER_KEY)
    assert snapshot(save_dir) == files


def test_unseal_of_tampered_sealed_pages_changes_nothing(save_dir):
    path, _ = sealed_save(save_dir)
    spath = sealed.sealed_path(path)
    data = bytearray(open(spath, 'rb').read())
    data[-1] ^= 1
    with open(spath, 'wb') as f:
        f.write(data)
    files = snapshot(save_dir)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='fails its authentication tag'):
        privsep_checkpoint.unseal_managed_save(
            path=path, instance_name=NAME, key=KEY)
    assert snapshot(save_dir) == files


@pytest.mark.parametrize('key', [b'short', 'x' * 32, None])
def test_key_must_be_32_bytes(save_dir, key):
    path, _ = sealed_save(save_dir)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='sealing key is not 32 bytes'):
        privsep_checkpoint.unseal_managed_save(
            path=path, instance_name=NAME, key=key)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='sealing key is not 32 bytes'):
        privsep_checkpoint.seal_managed_save(
            path=path, instance_name=NAME, key=key, selectors=['vault'],
            exclude_paths=[], follow_ipc=True, scrub_free_memory=True)


def test_unseal_refuses_another_instances_file(save_dir):
    path, _ = sealed_save(save_dir)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='not the managed-save file of instance'):
        privsep_checkpoint.unseal_managed_save(
            path=path, instance_name='instance-00000002', key=KEY)


def test_seal_hands_the_key_and_policy_to_the_engine(save_dir, monkeypatch):
    path = engine_seal.make(save_dir, NAME + '.save')
    calls = []

    def seal_checkpoint(p, selectors, key, **options):
        calls.append((p, selectors, key, options))
        rep = report_mod.ScrubReport(checkpoint=p)
        rep.seal = {'file': sealed.sealed_path(p), 'frames': 2}
        return rep
    monkeypatch.setattr(seal, 'seal_checkpoint', seal_checkpoint)
    result = privsep_checkpoint.seal_managed_save(
        path=path, instance_name=NAME, key=KEY, selectors=('vault',),
        exclude_paths=('scope:instance', '/root/**'), follow_ipc=False,
        scrub_free_memory=True)
    assert 'sealed' in result['summary']
    (p, selectors, key, options), = calls
    assert (p, selectors, key) == (path, ['vault'], KEY)
    assert options['exclude_paths'] == ['scope:instance', '/root/**']
    assert options['follow_ipc'] is False
    assert options['in_place'] == bool(conf.CONF.sparc.journal_key_file)


def test_seal_refuses_when_sealed_pages_are_there(save_dir):
    path, _ = sealed_save(save_dir)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='sealed pages are already there'):
        privsep_checkpoint.seal_managed_save(
            path=path, instance_name=NAME, key=KEY, selectors=['vault'],
            exclude_paths=[], follow_ipc=True, scrub_free_memory=True)


def test_a_seal_failing_after_its_sealed_pages_is_undone(save_dir,
                                                         monkeypatch):
    path = engine_seal.make(save_dir, NAME + '.save')
    before = engine_seal.pages(path)

    def seal_then_fail(p, selectors, key, **options):
        seal_as_the_daemon(p)   # sealed pages written, image rewritten
        raise seal.SealError(p, 'the read back failed')
    monkeypatch.setattr(seal, 'seal_checkpoint', seal_then_fail)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='the managed save was unsealed again'):
        privsep_checkpoint.seal_managed_save(
            path=path, instance_name=NAME, key=KEY, selectors=['vault'],
            exclude_paths=[], follow_ipc=True, scrub_free_memory=True)
    assert not os.path.exists(sealed.sealed_path(path))
    # Free memory stays scrubbed; the rest is as libvirt wrote it.
    assert restored(engine_seal.pages(path), before)
    assert engine_seal.pages(path) != before


def test_a_failed_seal_that_cannot_be_undone_deletes_everything(
        save_dir, monkeypatch):
    path = engine_seal.make(save_dir, NAME + '.save')

    def seal_then_fail(p, selectors, key, **options):
        seal_as_the_daemon(p)
        with open(sealed.sealed_path(p), 'r+b') as f:
            f.seek(-1, os.SEEK_END)
            f.write(b'\xff')
        raise seal.SealError(p, 'the read back failed')
    monkeypatch.setattr(seal, 'seal_checkpoint', seal_then_fail)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='so the managed save was deleted'):
        privsep_checkpoint.seal_managed_save(
            path=path, instance_name=NAME, key=KEY, selectors=['vault'],
            exclude_paths=[], follow_ipc=True, scrub_free_memory=True)
    assert [p for p in os.listdir(save_dir)
            if not p.startswith('.')] == []


def test_kill_fallback_scrubs_and_deletes_the_sealed_pages(save_dir,
                                                           monkeypatch):
    path, _ = sealed_save(save_dir)
    calls = []

    def scrub_checkpoint(p, selectors, **options):
        calls.append((p, selectors, options['follow_ipc']))
        return report_mod.ScrubReport(checkpoint=p)
    monkeypatch.setattr(memory, 'scrub_checkpoint', scrub_checkpoint)
    result = privsep_checkpoint.kill_sealed_managed_save(
        path=path, instance_name=NAME, selectors=['vault'],
        exclude_paths=[], follow_ipc=False, scrub_free_memory=True)
    assert 'scrubbed' in result['summary']
    assert calls == [(path, ['vault'], False)]
    assert privsep_checkpoint.sealed_pages_state(NAME) == {
        'managed_save': True, 'sealed': False}


def test_sealed_pages_are_discarded_only_without_their_save(save_dir):
    path, _ = sealed_save(save_dir)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='its managed save is still there'):
        privsep_checkpoint.discard_sealed_pages(NAME)
    assert os.path.exists(sealed.sealed_path(path))
    os.unlink(path)
    assert privsep_checkpoint.discard_sealed_pages(NAME) is True
    assert privsep_checkpoint.discard_sealed_pages(NAME) is False
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='is not an instance name'):
        privsep_checkpoint.discard_sealed_pages('../etc/passwd')


def test_discarding_an_interrupted_save_deletes_its_sealed_pages(save_dir):
    path, _ = sealed_save(save_dir)
    assert privsep_checkpoint.discard_managed_save(NAME) is True
    assert privsep_checkpoint.sealed_pages_state(NAME) == {
        'managed_save': False, 'sealed': False}
