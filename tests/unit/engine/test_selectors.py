import pytest

from sparc_nova.engine import errors
from sparc_nova.engine import selectors
from sparc_nova.introspect import tasks


def proc(pid, ppid=1, comm='app', exe='/usr/bin/app', uid=0, cgroup='/',
         kthread=False):
    return tasks.Process(pid=pid, ppid=ppid, uid=uid, comm=comm, exe=exe,
                         cgroup=cgroup, kernel_thread=kthread, address=0,
                         mm=0, threads=[], rss_pages=None)


PROCS = [proc(1, 0, 'init', '/sbin/init'),
         proc(2, 0, 'kthreadd', None, kthread=True),
         proc(10, 1, 'keepassxc', '/usr/bin/keepassxc', uid=1000,
              cgroup='/user.slice/app-1'),
         proc(11, 10, 'helper', '/usr/lib/kp/helper', uid=1000,
              cgroup='/user.slice/app-1/sub'),
         proc(12, 11, 'grandchild', '/bin/sh', uid=1000),
         proc(20, 1, 'gpg-agent', '/usr/bin/gpg-agent', uid=1001)]


@pytest.mark.parametrize('text, kind, value', [
    ('keepassxc', 'name', 'keepassxc'),
    ('name:a:b', 'name', 'a:b'),
    ('exe:/usr/bin/*', 'exe', '/usr/bin/*'),
    ('pid:10', 'pid', '10'), ('uid:1000', 'uid', '1000'),
    ('cgroup:/user.slice', 'cgroup', '/user.slice'),
    ('name:weird:thing', 'name', 'weird:thing'),
])
def test_parse(text, kind, value):
    s = selectors.parse(text)
    assert (s.kind, s.value) == (kind, value)


@pytest.mark.parametrize('text', ['', 'pid:x', 'uid:', 'pid:1', 'pid:0',
                                  'cgroup:relative', 'x' * 5000,
                                  'weird:thing', 'exe:usr/bin/x',
                                  'uid:\u00b2'])
def test_parse_errors(text):
    with pytest.raises(errors.SelectorError):
        selectors.parse(text)


def _sel(*texts, children=False):
    chosen, notes = selectors.select(PROCS, selectors.parse_all(texts),
                                     children)
    return set(chosen), notes


def test_name_with_a_colon_round_trips():
    sel = selectors.parse('name:weird:thing')
    assert selectors.parse(str(sel)) == sel


def test_exe_glob_covers_the_directories_it_names():
    assert _sel('exe:/usr/lib')[0] == {11}
    assert _sel('exe:/**/gpg*')[0] == {20}


def test_select():
    assert _sel('keepassxc')[0] == {10}
    assert _sel('exe:/usr/bin/*')[0] == {10, 20}
    assert _sel('uid:1000')[0] == {10, 11, 12}
    assert _sel('cgroup:/user.slice/app-1')[0] == {10, 11}
    assert _sel('cgroup:/user.slice/app')[0] == set()
    assert _sel('pid:10', children=True)[0] == {10, 11, 12}


def test_never_kernel_threads_or_init():
    chosen, notes = _sel('kthreadd', 'init', 'nothing')
    assert chosen == set()
    assert any('kernel thread' in n for n in notes)
    assert any('init is never selected' in n for n in notes)
    assert any('nothing matches no process' in n for n in notes)


def test_children_cycle_terminates():
    procs = [proc(5, 6), proc(6, 5)]
    chosen, _ = selectors.select(procs, [selectors.parse('pid:5')], True)
    assert set(chosen) == {5, 6}
