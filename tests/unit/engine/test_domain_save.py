"""Saving a domain with the scrub overlapping the save: failure
handling (engine.domain_save).
"""

import pytest

from sparc_nova.engine import domain_save
from sparc_nova.engine import errors
from sparc_nova.engine import live


class FakeConn:
    def __init__(self, fail=None):
        self.restored = []
        self.fail = fail

    def restore(self, path):
        if self.fail:
            raise self.fail
        self.restored.append(path)


class FakeDom:
    def __init__(self, conn, fail_save=None):
        self.conn = conn
        self.fail_save = fail_save
        self.saved = []

    def connect(self):
        return self.conn

    def saveFlags(self, path, xml, flags):
        if self.fail_save:
            raise self.fail_save
        with open(path, 'wb') as f:
            f.write(b'image')
        self.saved.append((path, flags))


def _scrub_with(monkeypatch, error=None):
    def fake(save, path, selectors, **kw):
        save()
        if error:
            raise error
        return 'report'
    monkeypatch.setattr(live, 'save_and_scrub', fake)


def test_success_returns_the_report(tmp_path, monkeypatch):
    _scrub_with(monkeypatch)
    dom = FakeDom(FakeConn())
    path = str(tmp_path / 'vm.save')
    assert domain_save.save_scrubbed(dom, path, ['vault']) == 'report'
    assert dom.saved == [(path, 0)]
    assert dom.conn.restored == []


def test_failed_scrub_restores_the_guest_and_deletes_the_image(
        tmp_path, monkeypatch):
    _scrub_with(monkeypatch, errors.ScrubError('vm.save', 'bad BTF'))
    dom = FakeDom(FakeConn())
    path = tmp_path / 'vm.save'
    with pytest.raises(errors.ScrubError, match='bad BTF'):
        domain_save.save_scrubbed(dom, str(path), ['vault'])
    assert dom.conn.restored == [str(path)]
    assert not path.exists()


def test_failed_save_restores_nothing(tmp_path, monkeypatch):
    libvirt = pytest.importorskip('libvirt')
    _scrub_with(monkeypatch)
    dom = FakeDom(FakeConn(), fail_save=libvirt.libvirtError('no space'))
    with pytest.raises(libvirt.libvirtError):
        domain_save.save_scrubbed(dom, str(tmp_path / 'vm.save'), ['x'])
    assert dom.conn.restored == []


def test_unrestorable_image_is_kept_and_named(tmp_path, monkeypatch):
    libvirt = pytest.importorskip('libvirt')
    _scrub_with(monkeypatch, errors.ScrubError('vm.save', 'bad BTF'))
    dom = FakeDom(FakeConn(fail=libvirt.libvirtError('no such disk')))
    path = tmp_path / 'vm.save'
    with pytest.raises(Exception, match='restore it or delete it'):
        domain_save.save_scrubbed(dom, str(path), ['vault'])
    assert path.exists()
