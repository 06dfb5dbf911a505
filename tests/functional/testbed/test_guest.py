"""The test bed guest's ground truth read through its serial console,
which garbles a character now and then: a pid misread from the
console must not make a test select a process that does not exist.
"""

import pytest

pytestmark = pytest.mark.slow


class _Garbled:
    """A READY line's match whose pid lost its last digit."""

    def __init__(self, match):
        self._match = match

    def group(self, index):
        value = self._match.group(index)
        return value[:-1] if index == 1 else value


@pytest.fixture(scope='module')
def guest(make_guest):
    return make_guest(memory_mib=256, machine='pc')


def _comms(g) -> dict[int, str]:
    return {p['pid']: p['comm'] for p in g.processes()}


def test_start_workload_returns_the_pid_the_guest_runs(guest):
    pid = guest.start_workload('hold 4')
    assert _comms(guest)[pid] == 'workload'


def test_a_garbled_ready_line_does_not_give_a_wrong_pid(guest,
                                                        monkeypatch):
    real_wait_for = guest.wait_for

    def garbled(pattern, *args, **kwargs):
        match = real_wait_for(pattern, *args, **kwargs)
        return _Garbled(match) if pattern.startswith('READY') else match

    monkeypatch.setattr(guest, 'wait_for', garbled)
    pid = guest.start_workload('hold 5', program='vault')
    monkeypatch.undo()
    assert pid >= 10
    assert _comms(guest)[pid] == 'vault'
