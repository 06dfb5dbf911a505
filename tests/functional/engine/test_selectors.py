"""Selectors on a real guest: name, exe, uid, cgroup, children, and
frames shared with an unselected process (reported, never scrubbed).
"""

import json
import os
import re

import pytest

from tests.functional.engine import scenario as scen

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def sg(make_guest, guest_image, module_dir):
    g = make_guest()
    pids = {'plain': g.start_workload('hold 1'),
            'uid': g.start_workload('hold 2 --uid 1000')}
    since = g.send('mount -t cgroup2 none /sys/fs/cgroup && '
                   'mkdir /sys/fs/cgroup/secret && echo CG""-OK')
    g.wait_for(r'CG-OK', since=since)
    pids['cgroup'] = g.start_workload('hold 3')
    g.run('echo %d > /sys/fs/cgroup/secret/cgroup.procs; echo MV""-OK'
          % pids['cgroup'], 'MV-OK')
    since = g.console_size()
    pids['parent'] = g.start_workload('hold 5 --fork --pages 32')
    text = g.console_text()[since:]
    pids['child'] = int(re.search(r'CHILD pid=(\d+)', text).group(1))
    path = os.path.join(module_dir, 'sel.save')
    g.save(path)
    return {'path': path, 'pids': pids, 'dir': module_dir,
            'image': guest_image}


def plan(sg, *sels, children=False, follow=True):
    args = ['checkpoint', 'scrub', sg['path'], '--dry-run']
    for s in sels:
        args += ['--exclude-process', s]
    if children:
        args.append('--with-children')
    if not follow:
        args.append('--no-follow-ipc')
    return json.loads(scen.sparc(*args, check=0).stdout)


def selected(p):
    return {x['pid'] for x in p['processes']}


def test_name_selects_all_matching(sg):
    assert selected(plan(sg, 'workload')) == set(sg['pids'].values())


def test_exe_glob(sg):
    assert selected(plan(sg, 'exe:/bin/work*')) == set(sg['pids'].values())
    p = plan(sg, 'exe:/usr/*')
    assert not p['processes'] and 'matches no process' in p['notes'][0]


def test_uid(sg):
    assert selected(plan(sg, 'uid:1000')) == {sg['pids']['uid']}


def test_cgroup(sg):
    assert selected(plan(sg, 'cgroup:/secret')) == {sg['pids']['cgroup']}


def test_pid_1_refused(sg):
    res = scen.sparc('checkpoint', 'scrub', sg['path'], '--dry-run',
                     '--exclude-process', 'pid:1', check=2)
    assert 'init' in res.stderr


def test_shared_frames_refused(sg):
    """The parent's copy-on-write pages are also the child's: selecting
    the parent alone without following IPC scrubs only what it owns
    alone, and reports the child at risk.
    """
    p = plan(sg, 'pid:%d' % sg['pids']['parent'], follow=False)
    proc = p['processes'][0]
    assert proc['frames_refused'] > 32
    assert all('shared with an unselected process' in r['reason']
               for r in proc['refused'])
    risk = {e['pid']: e['edge'] for e in p['ipc']['at_risk']}
    assert risk[sg['pids']['child']]['kind'] == 'shared-anonymous'
    out = os.path.join(sg['dir'], 'parent-only.save')
    scen.sparc('checkpoint', 'scrub', sg['path'], '--output', out,
               '--no-follow-ipc',
               '--exclude-process', 'pid:%d' % sg['pids']['parent'],
               check=0)
    marker = sg['image'].marker(5)
    res = scen.sparc('checkpoint', 'verify', out, '--marker', marker,
                     '--format', 'json', check=1)
    assert json.loads(res.stdout)['markers'][0]['in_memory'] > 0


def test_shared_frames_pull_in_the_other_process(sg):
    """Following IPC (the default), the child that shares the parent's
    copy-on-write frames is excluded too, with that edge as its reason.
    """
    parent, child = sg['pids']['parent'], sg['pids']['child']
    p = plan(sg, 'pid:%d' % parent)
    assert selected(p) == {parent, child}
    assert all(x['frames_refused'] == 0 for x in p['processes'])
    pulled = {e['pid']: e['edge'] for e in p['ipc']['pulled_in']}
    assert pulled[child]['from'] == parent
    assert pulled[child]['kind'] == 'shared-anonymous'
    reasons = {x['pid']: x['selected_because'] for x in p['processes']}
    assert reasons[child][0].startswith('ipc: shared-anonymous')


def test_with_children(sg):
    p = plan(sg, 'pid:%d' % sg['pids']['parent'], children=True)
    assert selected(p) == {sg['pids']['parent'], sg['pids']['child']}
    assert all(x['frames_refused'] == 0 for x in p['processes'])
    out = os.path.join(sg['dir'], 'children.save')
    scen.sparc('checkpoint', 'scrub', sg['path'], '--output', out,
               '--with-children', '--exclude-process',
               'pid:%d' % sg['pids']['parent'], check=0)
    res = scen.sparc('checkpoint', 'verify', out, '--marker',
                     sg['image'].marker(5), check=0)
    assert res.returncode == 0
