"""The privileged scrub that follows a managed save while libvirt writes
it (privsep.checkpoint.follow_managed_save / finish_managed_save,
privsep.save_follower). The entry points run in-process; the memory
engine's scrub is replaced by one that, like the real one, reads the
file it is handed until libvirt marks it complete.
"""

import os
import threading
import time

import pytest

from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import stream_follow
from sparc_nova import conf
from sparc_nova.engine import errors
from sparc_nova.engine import memory
from sparc_nova.engine import report as report_mod
from sparc_nova import exception
from sparc_nova import privsep
from sparc_nova.privsep import checkpoint as privsep_checkpoint
from sparc_nova.privsep import save_follower

NAME = 'instance-00000001'


@pytest.fixture
def save_dir(tmp_path):
    path = tmp_path / 'save'
    path.mkdir(mode=0o755)
    conf.CONF.set_override('managed_save_dir', str(path), group='sparc')
    conf.CONF.set_override('journal_key_file', str(tmp_path / 'key'),
                           group='sparc')
    privsep.scrub_pctxt.set_client_mode(False)
    yield path
    privsep.scrub_pctxt.set_client_mode(True)
    conf.CONF.clear_override('managed_save_dir', group='sparc')
    conf.CONF.clear_override('journal_key_file', group='sparc')


@pytest.fixture
def engine(monkeypatch):
    """scrub_checkpoint replaced: records its calls, waits until the
    image is complete, then fails with ``state['error']`` (or, as the
    stream parser does, when libvirt never marked it complete) or writes
    ``SCRUBBED`` at the end of the file (in place).
    """
    state = {'calls': [], 'error': None, 'started': threading.Event()}

    def fake(path, selectors, follow=None, file=None, write=None, **kw):
        in_place = write is not None and write.in_place
        if state.get('replace'):
            return _replace(path, selectors, follow, file, state)
        state['calls'].append({'path': path, 'selectors': selectors,
                               'in_place': in_place,
                               'ino': os.fstat(file.fileno()).st_ino})
        state['started'].set()
        with file as f:
            stream_follow.wait_complete(f, path, follow)
            if state['error'] is not None:
                raise state['error']
            if os.pread(f.fileno(), 16, 0) != libvirt_save.MAGIC:
                # As the stream parser: the writer went, the stream is
                # short.
                raise exception.CheckpointFormatError(
                    path, 'the stream ends before its EOF section', 0)
            with open('/proc/self/fd/%d' % f.fileno(), 'r+b') as w:
                w.seek(0, os.SEEK_END)
                w.write(b'SCRUBBED')
        return report_mod.ScrubReport(checkpoint=path)
    monkeypatch.setattr(memory, 'scrub_checkpoint', fake)
    return state


def _replace(path, selectors, follow, file, state):
    """As the engine's rewrite: a new file renamed over the image."""
    state['calls'].append({'path': path, 'replaced': True})
    with file as f:
        stream_follow.wait_complete(f, path, follow)
        data = os.pread(f.fileno(), 1 << 20, 0)
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, state.get('replace_mode', 0o600))
    os.write(fd, data + b'SCRUBBED')
    os.close(fd)
    os.rename(tmp, path)
    rep = report_mod.ScrubReport(checkpoint=path)
    rep.rewrite['in_place'] = False
    return rep


def follow(**kw):
    args = dict(instance_name=NAME, selectors=['vault'], exclude_paths=[],
                follow_ipc=True, scrub_free_memory=True)
    args.update(kw)
    return privsep_checkpoint.follow_managed_save(**args)


def header(magic):
    xml = b'<domain><memory>4096</memory></domain>\0'
    return libvirt_save.HEADER.pack(magic, 2, len(xml), 1, 0, 0,
                                    *[0] * 14) + xml


def libvirt_writes(path, mark=True):
    """What managedSave does to the file: create (0600), write, mark."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, header(libvirt_save.MAGIC_PARTIAL) + bytes(8192))
    if mark:
        os.pwrite(fd, libvirt_save.MAGIC, 0)
    os.close(fd)


def test_the_scrub_follows_the_save_and_reports_at_the_end(save_dir,
                                                           engine):
    path = follow()
    assert path == str(save_dir / (NAME + '.save'))
    assert not os.path.exists(path)
    libvirt_writes(path)
    assert engine['started'].wait(5)
    result = privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                                    saved=True)
    assert set(result) == {'summary', 'report'}
    [call] = engine['calls']
    assert call['selectors'] == ['vault'] and call['in_place'] is True
    assert call['ino'] == os.stat(path).st_ino
    with open(path, 'rb') as f:
        assert f.read().endswith(b'SCRUBBED')


def test_a_scrub_that_fails_mid_way_fails_the_finish(save_dir, engine):
    """The unscrubbed managed save stays for the driver to roll back."""
    engine['error'] = errors.ScrubError('x.save', 'no vmcoreinfo')
    path = follow()
    libvirt_writes(path)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='ScrubError: .*no vmcoreinfo'):
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)
    with open(path, 'rb') as f:
        assert not f.read().endswith(b'SCRUBBED')


def test_a_failed_save_stops_the_follower_and_leaves_nothing(save_dir,
                                                             engine):
    path = follow()
    # libvirt wrote part of the image, then the save failed (and libvirt
    # did not remove what it wrote).
    libvirt_writes(path, mark=False)
    assert engine['started'].wait(5)
    t = time.monotonic()
    assert privsep_checkpoint.finish_managed_save(
        instance_name=NAME, saved=False) == {}
    assert time.monotonic() - t < 5
    assert os.listdir(save_dir) == []
    # It can be followed again.
    follow()
    privsep_checkpoint.finish_managed_save(instance_name=NAME, saved=False)


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setattr(privsep_checkpoint, '_follow_seconds', lambda: 0.3)


def test_a_save_that_never_writes_times_out_closed(save_dir, engine,
                                                   short_deadline):
    follow()
    # The driver never says the save returned; the follower gives up at
    # its deadline, and finishing then fails.
    time.sleep(0.8)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='did not start in time|end of the save'):
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)


def test_an_incomplete_image_times_out_closed(save_dir, engine,
                                              short_deadline):
    path = follow()
    libvirt_writes(path, mark=False)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError):
        # The driver's word comes too late: the scrub already gave up.
        time.sleep(0.8)
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)
    with open(path, 'rb') as f:
        assert not f.read().endswith(b'SCRUBBED')


def test_an_existing_file_is_refused(save_dir, engine):
    libvirt_writes(str(save_dir / (NAME + '.save')))
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='already exists'):
        follow()
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='no scrub follows'):
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)


def test_one_follower_per_instance(save_dir, engine):
    follow()
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='already runs'):
        follow()
    privsep_checkpoint.finish_managed_save(instance_name=NAME, saved=False)


@pytest.mark.parametrize('name', ['../x', '', 'a/b', 7])
def test_instance_names_are_checked(save_dir, engine, name):
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError):
        follow(instance_name=name)


def test_a_symbolic_link_is_not_followed(save_dir, engine, tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(header(libvirt_save.MAGIC))
    follow()
    os.symlink(victim, save_dir / (NAME + '.save'))
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='without following links'):
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)
    assert engine['calls'] == []
    assert victim.read_bytes() == header(libvirt_save.MAGIC)


def test_a_hard_link_is_refused(save_dir, engine, tmp_path):
    other = save_dir / 'other'
    libvirt_writes(str(other))
    follow()
    os.link(other, save_dir / (NAME + '.save'))
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='2 hard links'):
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)
    assert engine['calls'] == []


def test_a_file_writable_by_others_is_refused(save_dir, engine):
    follow()
    tmp = save_dir / 'tmp'
    libvirt_writes(str(tmp))
    os.chmod(tmp, 0o622)
    os.rename(tmp, save_dir / (NAME + '.save'))
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='mode 622'):
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)


def test_a_file_replaced_during_the_scrub_fails_it(save_dir, engine):
    path = follow()
    libvirt_writes(path, mark=False)
    assert engine['started'].wait(5)
    os.rename(path, str(save_dir / 'moved'))
    libvirt_writes(path)
    os.pwrite(os.open(str(save_dir / 'moved'), os.O_WRONLY),
              libvirt_save.MAGIC, 0)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                       match='replaced while it was scrubbed'):
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)
    # The file now at the name was never written.
    with open(path, 'rb') as f:
        assert not f.read().endswith(b'SCRUBBED')


def test_a_directory_writable_by_others_is_refused(save_dir, engine):
    os.chmod(save_dir, 0o777)
    try:
        with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                           match='writable by others'):
            follow()
    finally:
        os.chmod(save_dir, 0o755)


def test_a_file_created_after_the_last_look_is_deleted_too(save_dir,
                                                           engine):
    """libvirt created the file after the follower's last look, then the
    save failed and left it: it is deleted all the same.
    """
    follow()
    path = str(save_dir / (NAME + '.save'))
    follower = save_follower.followers._followers[NAME]
    follower._returned.set()      # the follower stops looking at once
    follower._thread.join(5)
    libvirt_writes(path, mark=False)
    assert privsep_checkpoint.finish_managed_save(
        instance_name=NAME, saved=False) == {}
    assert os.listdir(save_dir) == []


@pytest.mark.parametrize('mode,ok', [(0o600, True), (0o622, False)])
def test_a_rewrite_renamed_over_the_image_is_checked(save_dir, engine,
                                                     mode, ok):
    """Where the image is rewritten rather than patched (compressed, or
    no journal may be kept), the file the scrub renamed into place must
    pass the checks of a file to scrub.
    """
    engine['replace'] = True
    engine['replace_mode'] = mode
    path = follow()
    libvirt_writes(path)
    if ok:
        privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                               saved=True)
        with open(path, 'rb') as f:
            assert f.read().endswith(b'SCRUBBED')
    else:
        with pytest.raises(privsep_checkpoint.PrivilegedScrubError,
                           match='replaced while it was scrubbed'):
            privsep_checkpoint.finish_managed_save(instance_name=NAME,
                                                   saved=True)
