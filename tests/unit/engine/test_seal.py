"""Seal and unseal of a planned exclusion, on synthetic checkpoints (the
planning itself is the scrub's, tested with real guests in
tests/functional/engine/test_seal.py).
"""

import os
import threading
import time

import numpy as np
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import rewrite
from sparc_nova.checkpoint import sealed
from sparc_nova.engine import patches
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import seal
from sparc_nova.engine import session as session_mod
from sparc_nova import exception
from tests import streamgen

KEY = bytes(range(32))
SECRET = b'SEAL-ME-0123456789abcdef'
PAGE = 4096
#: Frames 10 and 20 hold the secret; 4 and 8 are data pages holding
#: kernel buffers; 30 and 32 are free.
SECRET_FRAMES = (10, 20)
FREE_FRAMES = (30, 32)


def make(tmp_path, name='vm.save'):
    path = tmp_path / name
    path.write_bytes(streamgen.simple_save(
        ram_pages=64, secret_pfns=SECRET_FRAMES, secret=SECRET))
    os.chmod(path, 0o600)
    return str(path)


def plan(s, free=True, kill=False):
    p = patches.PagePatcher(s.memory)
    p.scrub(np.array(SECRET_FRAMES), 0)
    p.zero_phys(4 * PAGE + 100, 50, 'pipe buffer of pipe:[1]')
    # Frame 8 holds b'PAGE' + le64(8) repeated: clear bit 3 of the 8.
    old = int.from_bytes(s.memory.read(8 * PAGE + 4, 8), 'little')
    p.write(8 * PAGE + 4, (old & ~8).to_bytes(8, 'little'), 'page flags',
            kind=patches.PAGE_FLAGS)
    if free:
        p.scrub(np.array(FREE_FRAMES), 0, free=True)
        p.zero_phys(6 * PAGE + 64, 32, 'free object of kmalloc-32',
                    kind=patches.FREE_OBJECT)
    if kill:
        p.write(12 * PAGE, b'\x01', 'pending', kind=patches.SIGNAL)
    return p


def do_seal(path, free=True, kill=False, **kw):
    s = session_mod.open_session(path, work_dir=None, limits=None,
                                 buildid_cache_dir=None, model_kernel=False)
    rep = report_mod.ScrubReport(checkpoint=path)
    seal.seal_planned(s, path, plan(s, free, kill), KEY, rep,
                      output=kw.get('output'),
                      in_place=kw.get('in_place', False), work_dir=None,
                      limits=None, journal_key=kw.get('journal_key'),
                      journal_dir=kw.get('journal_dir'))
    return rep


def pages(path):
    with checkpoint.open_checkpoint(path) as ck:
        return [ck.memory.read_page(p) for p in range(64)]


def test_seal_then_unseal(tmp_path):
    path = make(tmp_path)
    before = pages(path)
    rep = do_seal(path)
    spath = sealed.sealed_path(path)
    assert rep.seal['file'] == spath
    assert rep.seal['frames'] == 2 and rep.seal['byte_ranges'] == 2
    assert rep.verification['result'] == 'ok'
    assert 'unseal before restoring' in rep.summary()
    # Nothing readable at rest: not in the checkpoint, not in the file.
    for p in (path, spath):
        assert SECRET not in open(p, 'rb').read()
    assert oct(os.stat(spath).st_mode & 0o777) == '0o600'
    sealed_pages = pages(path)
    for pfn in SECRET_FRAMES + FREE_FRAMES:
        assert sealed_pages[pfn] == bytes(PAGE)
    assert sealed_pages[4][100:150] == bytes(50)
    out = seal.unseal_checkpoint(path, KEY)
    assert out['frames_restored'] == 2 and out['byte_ranges_restored'] == 2
    assert out['verification']['result'] == 'ok'
    assert set(out['timings']) >= {'open', 'check', 'rewrite', 'verify',
                                   'total', 'peak_rss_mib',
                                   'peak_private_mib'}
    assert out['timings']['peak_private_mib'] > 0
    assert not os.path.exists(spath)
    after = pages(path)
    for pfn in range(64):
        if pfn in FREE_FRAMES:
            # Free memory stays scrubbed: it belongs to no one.
            assert after[pfn] == bytes(PAGE)
        elif pfn == 6:
            assert after[6][64:96] == bytes(32)
            assert after[6][:64] == before[6][:64]
        else:
            assert after[pfn] == before[pfn], pfn
    assert SECRET in open(path, 'rb').read()


def test_without_free_memory_the_round_trip_is_byte_identical(tmp_path):
    path = make(tmp_path)
    original = open(path, 'rb').read()
    do_seal(path, free=False)
    assert open(path, 'rb').read() != original
    seal.unseal_checkpoint(path, KEY)
    assert open(path, 'rb').read() == original


def test_in_place_round_trip(tmp_path, journal_key):
    path = make(tmp_path)
    original = open(path, 'rb').read()
    do_seal(path, free=False, in_place=True, journal_key=journal_key)
    assert SECRET not in open(path, 'rb').read()
    seal.unseal_checkpoint(path, KEY, in_place=True,
                           journal_key=journal_key)
    assert open(path, 'rb').read() == original


def test_to_output(tmp_path):
    path = make(tmp_path)
    original = open(path, 'rb').read()
    out = str(tmp_path / 'sealed.save')
    rep = do_seal(path, output=out)
    assert open(path, 'rb').read() == original
    assert rep.seal['file'] == sealed.sealed_path(out)
    back = str(tmp_path / 'back.save')
    res = seal.unseal_checkpoint(out, KEY, output=back)
    assert res['output'] == back and SECRET in open(back, 'rb').read()
    assert not os.path.exists(sealed.sealed_path(out))


def _unchanged_after(path, call, error, match):
    spath = sealed.sealed_path(path)
    files = {p: open(p, 'rb').read() for p in (path, spath)}
    listing = sorted(os.listdir(os.path.dirname(path)))
    with pytest.raises(error, match=match) as e:
        call()
    for p, data in files.items():
        assert open(p, 'rb').read() == data
    assert sorted(os.listdir(os.path.dirname(path))) == listing
    return e.value


def test_wrong_key_changes_nothing(tmp_path):
    path = make(tmp_path)
    do_seal(path)
    err = _unchanged_after(
        path, lambda: seal.unseal_checkpoint(path, bytes(32)),
        sealed.SealedFileError, 'does not open it')
    assert sealed.sealed_path(path) in str(err)


def _flip(at):
    def flip(data):
        data = bytearray(data)
        data[at] ^= 1
        return bytes(data)
    return flip


#: The first record's ciphertext (a frame run: checked as the rewrite
#: writes its pages), and the last record's (a byte range: checked
#: before anything is written).
FIRST_RECORD = 136 + 16 + 5


@pytest.mark.parametrize('damage,match', [
    (_flip(-40), 'record 3 .*authentication tag'),
    (_flip(FIRST_RECORD), 'record 0 .*authentication tag'),
    (lambda d: d[:-100], 'truncated')])
@pytest.mark.parametrize('to_output', [False, True])
def test_damaged_sealed_file_changes_nothing(tmp_path, damage, match,
                                             to_output):
    path = make(tmp_path)
    do_seal(path)
    spath = sealed.sealed_path(path)
    data = open(spath, 'rb').read()
    open(spath, 'wb').write(damage(data))
    output = str(tmp_path / 'out.save') if to_output else None
    _unchanged_after(path,
                     lambda: seal.unseal_checkpoint(path, KEY, output=output),
                     sealed.SealedFileError, match)


def test_a_frame_run_the_rewrite_never_reads_is_checked_before_commit(
        tmp_path, monkeypatch):
    """The tags of frame runs are checked as the rewrite to a new file
    decrypts them; one it did not read is checked before the new file
    takes the checkpoint's place.
    """
    path = make(tmp_path)
    do_seal(path)
    spath = sealed.sealed_path(path)
    data = open(spath, 'rb').read()
    open(spath, 'wb').write(_flip(FIRST_RECORD)(data))
    real = rewrite.rewrite_pages

    def rewrite_without_reading(ck, replacements, **kw):
        # The pages of the sealed frame runs are not asked for.
        unread = {pfn: bytes(PAGE) for pfn in replacements.pfns.tolist()}
        return real(ck, unread, **kw)

    monkeypatch.setattr(rewrite, 'rewrite_pages', rewrite_without_reading)
    _unchanged_after(path, lambda: seal.unseal_checkpoint(path, KEY),
                     sealed.SealedFileError, 'record 0 .*authentication tag')


def test_changed_checkpoint_changes_nothing(tmp_path):
    path = make(tmp_path)
    do_seal(path)
    # The same layout and header, but the sealed frames hold data again
    # (another save of the guest, say).
    spath = sealed.sealed_path(path)
    os.rename(spath, spath + '.keep')
    os.unlink(path)
    make(tmp_path)
    os.rename(spath + '.keep', spath)
    _unchanged_after(path, lambda: seal.unseal_checkpoint(path, KEY),
                     seal.SealError, 'changed since it was sealed')


def test_changed_byte_range_changes_nothing(tmp_path):
    path = make(tmp_path)
    do_seal(path, free=False)
    s = session_mod.open_session(path, work_dir=None, limits=None,
                                 buildid_cache_dir=None, model_kernel=False)
    with s.ck:
        page = bytearray(s.memory.read(4 * PAGE, PAGE))
        page[120] = 0x55
        rewrite.rewrite_pages(s.ck, {4: bytes(page)})
    s.close()
    _unchanged_after(path, lambda: seal.unseal_checkpoint(path, KEY),
                     seal.SealError, 'bytes at 0x4064 no longer')


def test_other_checkpoint_changes_nothing(tmp_path):
    path = make(tmp_path)
    do_seal(path)
    other = tmp_path / 'other.save'
    other.write_bytes(streamgen.simple_save(ram_pages=128))
    os.chmod(other, 0o600)
    os.rename(sealed.sealed_path(path), sealed.sealed_path(str(other)))
    _unchanged_after(str(other),
                     lambda: seal.unseal_checkpoint(str(other), KEY),
                     sealed.SealedFileError, 'another checkpoint')


def test_in_place_unseal_of_a_rewritten_seal_is_refused(tmp_path,
                                                        journal_key):
    path = make(tmp_path)
    do_seal(path)
    _unchanged_after(path, lambda: seal.unseal_checkpoint(
        path, KEY, in_place=True, journal_key=journal_key),
        exception.CheckpointError, 'cannot take new content in place')


def test_a_plan_with_a_kill_is_not_sealed(tmp_path):
    path = make(tmp_path)
    original = open(path, 'rb').read()
    with pytest.raises(seal.SealError, match='arms a kill'):
        do_seal(path, kill=True)
    assert open(path, 'rb').read() == original
    assert os.listdir(tmp_path) == ['vm.save']


def test_sealing_twice_is_refused(tmp_path):
    path = make(tmp_path)
    do_seal(path)
    _unchanged_after(path, lambda: do_seal(path), seal.SealError,
                     'already there')


def test_rewrite_failure_leaves_no_sealed_file(tmp_path, monkeypatch):
    path = make(tmp_path)
    original = open(path, 'rb').read()

    def broken(*args, **kw):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(seal.memory.rewrite, 'rewrite_pages', broken)
    with pytest.raises(seal.errors.ScrubError, match='No space left'):
        do_seal(path)
    assert open(path, 'rb').read() == original
    assert os.listdir(tmp_path) == ['vm.save']


def _slow_sealed_write(monkeypatch, events, before=None):
    """Make the seal's sealed-pages write slow, and record in ``events``
    when it completed and when a rewritten file took its target's place.
    """
    real_write = sealed.write
    real_replace = os.replace

    def slow_write(*args, **kw):
        events.append(('seal thread', threading.current_thread()
                       is not threading.main_thread()))
        if before is not None:
            before(args[0])
        time.sleep(0.3)
        stats = real_write(*args, **kw)
        events.append('sealed')
        return stats

    def replace(src, dst, **kw):
        events.append('replace')
        return real_replace(src, dst, **kw)
    monkeypatch.setattr(sealed, 'write', slow_write)
    monkeypatch.setattr(seal.memory.rewrite.tempfiles.os, 'replace', replace)


@pytest.mark.parametrize('output', [None, 'out.save'])
def test_the_rewrite_is_committed_only_after_the_sealed_file(
        tmp_path, monkeypatch, output):
    path = make(tmp_path)
    events = []
    _slow_sealed_write(monkeypatch, events)
    rep = do_seal(path, output=output and str(tmp_path / output))
    # The sealed-pages file is written while the checkpoint is rewritten
    # (another thread), and the new file replaces nothing before it is
    # complete.
    assert events == [('seal thread', True), 'sealed', 'replace']
    assert rep.timings['seal_wait'] > 0.1
    assert os.path.exists(rep.seal['file'])


def test_a_seal_in_place_writes_the_sealed_file_first(tmp_path, monkeypatch,
                                                      journal_key):
    path = make(tmp_path)
    events = []
    _slow_sealed_write(monkeypatch, events)
    real_apply = seal.memory.rewrite.journal.apply

    def apply(*args, **kw):
        events.append('patched')
        return real_apply(*args, **kw)
    monkeypatch.setattr(seal.memory.rewrite.journal, 'apply', apply)
    rep = do_seal(path, in_place=True, journal_key=journal_key)
    # ('replace': the journal's own atomic write.)
    assert [e for e in events if e != 'replace'] == [
        ('seal thread', False), 'sealed', 'patched']
    assert 'seal' in rep.timings


@pytest.mark.parametrize('output', [None, 'out.save'])
def test_a_failed_sealed_write_commits_nothing(tmp_path, monkeypatch,
                                               output):
    path = make(tmp_path)
    original = open(path, 'rb').read()

    def full(*args, **kw):
        for _ in args[3]:
            raise exception.CheckpointError(args[0], 'cannot write: No '
                                                     'space left on device')
    monkeypatch.setattr(sealed, 'write', full)
    with pytest.raises(seal.SealError, match='No space left'):
        do_seal(path, output=output and str(tmp_path / output))
    assert open(path, 'rb').read() == original
    assert os.listdir(tmp_path) == ['vm.save']


def test_a_failed_commit_removes_the_completed_sealed_file(tmp_path,
                                                           monkeypatch):
    path = make(tmp_path)
    original = open(path, 'rb').read()
    events = []
    _slow_sealed_write(monkeypatch, events)

    def broken(src, dst, **kw):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(seal.memory.rewrite.tempfiles.os, 'replace', broken)
    with pytest.raises(seal.errors.ScrubError, match='Input/output error'):
        do_seal(path)
    assert 'sealed' in events
    assert open(path, 'rb').read() == original
    assert os.listdir(tmp_path) == ['vm.save']


def test_a_sealed_file_that_appears_meanwhile_is_kept(tmp_path,
                                                      monkeypatch):
    """A sealed-pages file made by someone else while this seal ran (it
    may hold another seal's only copy of its pages) is neither replaced
    nor removed, and the checkpoint is not changed.
    """
    path = make(tmp_path)
    original = open(path, 'rb').read()

    def appear(spath):
        with open(spath, 'wb') as f:
            f.write(b'another seal')
    _slow_sealed_write(monkeypatch, [], before=appear)
    with pytest.raises(seal.SealError, match='already there'):
        do_seal(path)
    assert open(path, 'rb').read() == original
    assert open(sealed.sealed_path(path), 'rb').read() == b'another seal'
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['vm.save', os.path.basename(sealed.sealed_path(path))])


def test_key_size_is_checked_first(tmp_path):
    path = make(tmp_path)
    with pytest.raises(ValueError, match='32 bytes'):
        seal.unseal_checkpoint(path, bytes(16))
    with pytest.raises(ValueError, match='32 bytes'):
        seal.seal_checkpoint(path, ['vault'], bytes(31))


# -- kill_sealed: the fallback when the key is lost -------------------------

def test_kill_sealed_scrubs_with_the_kill_then_deletes_the_sealed_file(
        tmp_path, monkeypatch):
    path = make(tmp_path)
    do_seal(path)
    spath = sealed.sealed_path(path)
    calls = []

    def scrub(p, selectors, **options):
        # The sealed-pages file is still there while the scrub runs.
        assert os.path.exists(spath)
        calls.append((p, list(selectors), options))
        return report_mod.ScrubReport(checkpoint=p)
    monkeypatch.setattr(seal.memory, 'scrub_checkpoint', scrub)
    rep = seal.kill_sealed(path, ['vault'], follow_ipc=False)
    assert calls == [(path, ['vault'], {'follow_ipc': False})]
    assert not os.path.exists(spath)
    assert rep.seal == {}


def test_kill_sealed_failure_keeps_the_sealed_file(tmp_path, monkeypatch):
    path = make(tmp_path)
    do_seal(path)
    spath = sealed.sealed_path(path)

    def scrub(p, selectors, **options):
        raise exception.CheckpointError(p, 'no vmcoreinfo')
    monkeypatch.setattr(seal.memory, 'scrub_checkpoint', scrub)
    with pytest.raises(exception.CheckpointError):
        seal.kill_sealed(path, ['vault'])
    assert os.path.exists(spath)
    # The key still opens it.
    seal.unseal_checkpoint(path, KEY)


def test_kill_sealed_needs_a_sealed_checkpoint(tmp_path, monkeypatch):
    path = make(tmp_path)
    monkeypatch.setattr(seal.memory, 'scrub_checkpoint',
                        lambda *a, **k: pytest.fail('scrubbed'))
    with pytest.raises(sealed.SealedFileError, match='no sealed-pages file'):
        seal.kill_sealed(path, ['vault'])
    with pytest.raises(TypeError):
        seal.kill_sealed(path, ['vault'], dry_run=True)


def _restorations_of(path, records):
    """``seal._restorations`` of ``records``, written to a sealed-pages
    file of the checkpoint ``path`` and opened again.
    """
    s = session_mod.open_session(path, work_dir=None, limits=None,
                                 buildid_cache_dir=None, model_kernel=False)
    spath = sealed.sealed_path(path)
    try:
        identity = sealed.identity_of(s.ck)
        sealed.write(spath, KEY, identity, records)
        with sealed.open_pages(spath, KEY, identity, 64 * PAGE) as pages:
            repl, counts = seal._restorations(path, s.memory, pages)
            # Copies: a page of the sealed file is valid until the next.
            return ([(pfn, bytes(repl.contents[c])) for pfn, c in
                     zip(repl.pfns.tolist(), repl.content.tolist())],
                    counts)
    finally:
        s.close()
        os.unlink(spath)


@pytest.mark.parametrize('records, match', [
    ([sealed.FrameRun(3, 0, bytes(PAGE)),
      sealed.FrameRun(3, 0, bytes(PAGE))], 'frame 0x3 twice'),
    ([sealed.FrameRun(3, 0, bytes(PAGE)),
      sealed.ByteRange(3 * PAGE + 8, b'ab', bytes(2))],
     'not in a RAM page of this checkpoint, or in a sealed frame'),
    ([sealed.ByteRange(5 * PAGE, b'ab', bytes(2)),
      sealed.ByteRange(5 * PAGE + 1, b'cd', bytes(2))], 'overlap'),
    ([sealed.FrameRun(64, 0, bytes(PAGE))], 'not RAM'),
])
def test_records_that_contradict_each_other_are_refused(tmp_path, records,
                                                        match):
    """Records come from the sealer (their tags need the key), but a
    sealer's bug must not make an unseal write one frame twice. (Odd
    frames of the test checkpoint hold zeros.)
    """
    path = make(tmp_path)
    with pytest.raises(seal.SealError, match=match):
        _restorations_of(path, records)


def test_restorations_keep_the_records_order(tmp_path):
    path = make(tmp_path)
    records = [sealed.FrameRun(41, 0, b'x' * PAGE),
               sealed.ByteRange(7 * PAGE + 2, b'ab', bytes(2)),
               sealed.FrameRun(13, 0, b'y' * PAGE)]
    pages, counts = _restorations_of(path, records)
    assert [pfn for pfn, _ in pages] == [41, 13, 7]
    assert [page[:4] for _, page in pages] == [b'xxxx', b'yyyy',
                                               b'\0\0ab']
    assert counts == {'frames_restored': 2, 'byte_ranges_restored': 1,
                      'pages_written': 3}


def _written(tmp_path, path, runs, patched):
    """A sealed-pages file of ``runs`` and what an unseal of it that also
    patched ``patched`` (frame: page) would have written into ``path``.
    """
    spath = str(tmp_path / 'runs.sparc-sealed')
    identity = bytes(32)
    sealed.write(spath, KEY, identity, runs)
    opened = sealed.open_pages(spath, KEY, identity, 64 * PAGE)
    frames = [r.first_pfn + i for r in runs for i in range(r.frames)]
    contents = seal._RestoredPages(opened, list(patched.values()))
    pfns = frames + list(patched)
    repl = rewrite.PageReplacements(pfns, list(range(len(pfns))), contents)
    return opened, rewrite.RewriteResult(
        path=path, pages=len(pfns), records_rewritten=len(pfns),
        in_place=False, replacements=repl)


@pytest.mark.parametrize('wrong,match', [
    ('run', r'the frames from 0x2\b'), ('patched', r'frame 0x4\b'),
    (None, None)])
def test_read_back_names_the_frames_that_did_not_read_back(
        tmp_path, wrong, match):
    """The frame runs read back by their tags (one changed byte in a page
    fails), the patched pages byte for byte.
    """
    path = make(tmp_path)
    before = pages(path)
    run = before[2] + before[3]
    if wrong == 'run':
        run = run[:5000] + bytes([run[5000] ^ 1]) + run[5001:]
    page = b'z' * PAGE if wrong == 'patched' else before[4]
    opened, result = _written(
        tmp_path, path, [sealed.FrameRun(2, 0, run),
                         sealed.FrameRun(40, 0, before[40])], {4: page})
    with opened:
        if wrong:
            with pytest.raises(seal.SealError, match=match):
                seal._read_back(path, result, opened)
        else:
            assert seal._read_back(path, result,
                                   opened)['frames_checked'] == 4
