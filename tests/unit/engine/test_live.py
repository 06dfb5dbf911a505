"""The scrub that runs while libvirt saves the guest (engine.live)."""

import os
import threading
import time

import pytest

from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import stream_follow
from sparc_nova.engine import errors
from sparc_nova.engine import live
from sparc_nova.engine import memory
from sparc_nova.engine import report as report_mod


class FakeSave:
    """Writes an image like libvirt: the partial magic, then (after
    ``write_s``) the final magic, then clean-up (``stop_s``) before it
    returns.
    """

    def __init__(self, path, write_s=0.05, stop_s=0.4, fail=None,
                 mark=True):
        self.path = path
        self.write_s, self.stop_s = write_s, stop_s
        self.fail, self.mark = fail, mark
        self.marked_at = self.returned_at = None

    def __call__(self):
        with open(self.path, 'wb') as f:
            f.write(libvirt_save.MAGIC_PARTIAL + bytes(4096))
        time.sleep(self.write_s)
        if self.fail:
            raise self.fail
        if self.mark:
            with open(self.path, 'r+b') as f:
                f.write(libvirt_save.MAGIC)
            self.marked_at = time.monotonic()
        time.sleep(self.stop_s)
        self.returned_at = time.monotonic()


@pytest.fixture
def scrubs(monkeypatch):
    """scrub_checkpoint replaced by one that, like the real one, follows
    the image until it is complete, and records what it saw.
    """
    calls = []
    error = [None]

    def fake_scrub(path, selectors, follow=None, file=None, **kw):
        call = {'started': time.monotonic(), 'kw': kw,
                'done_at_start': follow.done(), 'file': file}
        calls.append(call)
        with file as f:
            stream_follow.wait_complete(f, path, follow)
            call['magic'] = os.pread(f.fileno(), 16, 0)
        call['complete'] = time.monotonic()
        if error[0] is not None:
            raise error[0]
        return report_mod.ScrubReport(checkpoint=path,
                                      verification={'result': 'ok'})
    monkeypatch.setattr(memory, 'scrub_checkpoint', fake_scrub)
    return calls, error


def test_scrub_follows_the_image_from_its_creation(tmp_path, scrubs):
    calls, _ = scrubs
    save = FakeSave(str(tmp_path / 'vm.save'), write_s=0.2)
    rep = live.save_and_scrub(save, save.path, ['vault'],
                              scrub_free_memory=False)
    assert len(calls) == 1
    call = calls[0]
    # Started while QEMU was still writing, went on once libvirt marked
    # the image complete, and ended while libvirt was still cleaning up.
    assert not call['done_at_start']
    assert call['started'] < save.marked_at <= call['complete']
    assert call['magic'] == libvirt_save.MAGIC
    assert call['kw'] == {'scrub_free_memory': False}
    assert rep.during_save['scrub_overlapped_save'] is True
    # Upper bounds with room for a loaded host (a thread may wait its
    # turn for 0.1 s or more); the order of events above is what shows
    # the overlap, these that the figures measure it.
    assert 0.15 <= rep.during_save['image_complete_after'] < \
        rep.timings['save']
    assert rep.timings['save'] >= 0.55
    # The scrub ended while libvirt still cleaned up for 0.4 s.
    assert rep.timings['after_save'] < 0.3
    assert rep.timings['total'] == pytest.approx(rep.timings['save'],
                                                 abs=0.3)


def test_an_image_never_marked_is_complete_when_the_save_returns(
        tmp_path, scrubs):
    calls, _ = scrubs
    save = FakeSave(str(tmp_path / 'vm.save'), mark=False, stop_s=0.1)
    rep = live.save_and_scrub(save, save.path, ['vault'])
    assert calls[0]['complete'] >= save.returned_at
    assert rep.during_save['scrub_overlapped_save'] is False


def test_a_failed_save_is_raised(tmp_path, scrubs):
    boom = RuntimeError('libvirt: save failed')
    save = FakeSave(str(tmp_path / 'vm.save'), fail=boom)
    with pytest.raises(RuntimeError, match='save failed'):
        live.save_and_scrub(save, save.path, ['vault'])


def test_a_failed_scrub_is_raised_after_the_save_returned(
        tmp_path, scrubs):
    calls, error = scrubs
    error[0] = errors.ScrubError('vm.save', 'no vmcoreinfo')
    save = FakeSave(str(tmp_path / 'vm.save'), stop_s=0.3)
    with pytest.raises(errors.ScrubError, match='no vmcoreinfo'):
        live.save_and_scrub(save, save.path, ['vault'])
    # The caller gets the error only once libvirt is done with the guest.
    assert save.returned_at is not None
    assert calls and calls[0]['complete'] < save.returned_at


def test_the_wait_is_bounded(tmp_path, scrubs):
    """A save that never creates its image: the wait ends at the timeout
    and the error comes once the save call has returned.
    """
    calls, _ = scrubs
    stop = threading.Event()
    returned = []

    def save():
        stop.wait(5)
        returned.append(time.monotonic())
    timer = threading.Timer(0.6, stop.set)
    timer.start()
    t = time.monotonic()
    with pytest.raises(errors.ScrubError, match='did not start'):
        live.save_and_scrub(save, str(tmp_path / 'vm.save'), ['x'],
                            timeout=0.2)
    assert returned and time.monotonic() - t < 3
    assert calls == []


@pytest.mark.parametrize('option', ['output', 'in_place', 'write',
                                    'dry_run', 'follow', 'file'])
def test_output_options_are_refused(tmp_path, option):
    with pytest.raises(TypeError):
        live.save_and_scrub(lambda: None, str(tmp_path / 'x'), ['x'],
                            **{option: True})


def test_the_scrub_runs_nicer_than_the_caller(tmp_path, monkeypatch):
    seen = []

    def fake_scrub(path, selectors, follow=None, file=None, **kw):
        seen.append(os.getpriority(os.PRIO_PROCESS,
                                   threading.get_native_id()))
        with file as f:
            stream_follow.wait_complete(f, path, follow)
        return report_mod.ScrubReport(checkpoint=path)
    monkeypatch.setattr(memory, 'scrub_checkpoint', fake_scrub)
    save = FakeSave(str(tmp_path / 'vm.save'), stop_s=0.05)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    live.save_and_scrub(save, save.path, ['vault'], nice=7)
    assert seen == [max(7, mine)]
    assert os.getpriority(os.PRIO_PROCESS,
                          threading.get_native_id()) == mine


def _raw_header(magic=libvirt_save.MAGIC_PARTIAL, compressed=0):
    xml = b'<domain/>\0'
    return libvirt_save.HEADER.pack(magic, 2, len(xml), 1, compressed, 0,
                                    *[0] * 14) + xml


@pytest.mark.parametrize('compressed,expected', [(0, True), (1, False)])
def test_in_place_only_for_a_raw_image(tmp_path, scrubs, compressed,
                                       expected):
    calls, _ = scrubs
    path = str(tmp_path / 'vm.save')

    def save():
        with open(path, 'wb') as f:
            f.write(_raw_header(compressed=compressed))
        time.sleep(0.05)
        with open(path, 'r+b') as f:
            f.write(libvirt_save.MAGIC)
    live.save_and_scrub(save, path, ['vault'], in_place_if_possible=True,
                        journal_key='/k')
    write = calls[0]['kw']['write']
    assert set(calls[0]['kw']) == {'write'}
    assert write.in_place is expected and write.compression == compressed
    assert write.journal_key == ('/k' if expected else None)


def test_the_image_is_the_one_open_image_returned(tmp_path, scrubs):
    """The scrub reads the file its opener checked and returned, not
    whatever the name points to later.
    """
    calls, _ = scrubs
    save = FakeSave(str(tmp_path / 'vm.save'), stop_s=0.05)
    opened = []

    def open_image():
        if not os.path.exists(save.path):
            return None
        opened.append(open(save.path, 'rb'))
        return opened[-1]
    live.save_and_scrub(save, save.path, ['vault'], open_image=open_image)
    assert len(opened) == 1 and calls[0]['file'] is opened[0]


def test_a_refused_image_fails_the_scrub(tmp_path, scrubs):
    calls, _ = scrubs
    save = FakeSave(str(tmp_path / 'vm.save'), stop_s=0.05)

    def open_image():
        if os.path.exists(save.path):
            raise errors.ScrubError(save.path, 'refused: 2 hard links')
        return None
    with pytest.raises(errors.ScrubError, match='2 hard links'):
        live.save_and_scrub(save, save.path, ['vault'],
                            open_image=open_image)
    assert calls == []
