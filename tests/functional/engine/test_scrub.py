"""Process exclusion end to end on a real guest (Debian 6.1, 256 MiB, pc):
``ps``, ``scrub``, ``verify`` and ``virsh restore``.
"""

import json
import os
import shutil

import pytest

from tests.functional.engine import scenario as scen

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def sc(make_guest, guest_image, module_dir):
    return scen.build(make_guest, guest_image, module_dir)


@pytest.fixture(scope='module')
def scrubbed(sc):
    """The checkpoint scrubbed through the CLI, with its report."""
    out = os.path.join(sc.workdir, 'scrubbed.save')
    report = os.path.join(sc.workdir, 'report.json')
    args = ['checkpoint', 'scrub', sc.save_path, '--output', out,
            '--report', report, '--format', 'json']
    for sel in sc.selectors():
        args += ['--exclude-process', sel]
    scen.sparc(*args, check=0)
    with open(report) as f:
        return out, json.load(f)


def test_ps_matches_guest(sc):
    out = scen.sparc('checkpoint', 'ps', sc.save_path, '--all', '--format',
                     'json', check=0)
    mine = {p['pid']: p for p in json.loads(out.stdout)['processes']}
    # Short-lived processes differ between the listing and the save: the
    # helpers the listing loop itself ran (sh subshells, cut, awk, cat)
    # and the heartbeat loop's sleep. Everything else must match.
    transient = {'cut', 'awk', 'cat', 'sleep', 'sh'}
    for p in sc.processes:
        if p['pid'] not in mine:
            assert p['comm'] in transient, p
            continue
        m = mine[p['pid']]
        assert (m['ppid'], m['uid'], m['threads']) == (
            p['ppid'], p['uid'], p['threads']), (m, p)
        assert m['comm'] == p['comm'][:15] or \
            p['comm'].startswith(m['comm']), (m, p)
    guest_pids = {p['pid'] for p in sc.processes}
    missing = [m for pid, m in mine.items() if pid not in guest_pids]
    assert all(m['comm'] in transient for m in missing), missing
    for name, pid in sc.pids.items():
        assert mine[pid]['comm'] == 'workload'
        assert mine[pid]['exe'] == '/bin/workload'
    assert mine[sc.pids['threads']]['threads'] == 4


def test_markers_present_before(sc):
    args = ['checkpoint', 'verify', sc.save_path]
    for name in scen.MARKERS:
        args += ['--marker', sc.marker(name)]
    out = scen.sparc(*args, '--format', 'json', check=1)
    # Rows follow the order of the --marker arguments (named #1, #2...).
    rows = dict(zip([sc.marker(n) for n in scen.MARKERS],
                    json.loads(out.stdout)['markers']))
    for name in scen.MARKERS:
        assert rows[sc.marker(name)]['in_memory'] > 0, name


def test_no_selected_marker_left(sc, scrubbed):
    out, _ = scrubbed
    args = ['checkpoint', 'verify', out]
    for name in scen.SELECTED + ('spray',):
        args += ['--marker', sc.marker(name)]
    res = scen.sparc(*args, '--format', 'json', check=0)
    for row in json.loads(res.stdout)['markers']:
        assert row['in_memory'] == 0 and row['in_file'] == 0, row


def test_control_marker_kept(sc, scrubbed):
    out, _ = scrubbed
    res = scen.sparc('checkpoint', 'verify', out, '--marker',
                     sc.marker('control'), '--format', 'json', check=1)
    row = json.loads(res.stdout)['markers'][0]
    before = scen.sparc('checkpoint', 'verify', sc.save_path, '--marker',
                        sc.marker('control'), '--format', 'json', check=1)
    assert row['in_memory'] == \
        json.loads(before.stdout)['markers'][0]['in_memory'] > 0


def test_frames_equal_guest_pagemap(sc, scrubbed):
    _, report = scrubbed
    scen.assert_frames_match(sc, report, none_refused=True)
    assert report['verification']['result'] == 'ok'
    assert report['free_pages']['frames_rewritten'] > 0


def test_report_contents(sc, scrubbed):
    _, report = scrubbed
    assert report['kernel']['build_id']
    assert report['kernel']['types'] == 'BTF (guest memory)'
    threads = {p['pid']: p['threads'] for p in report['processes']}
    assert len(threads[sc.pids['threads']]) == 4
    kills = {p['pid']: p['kill'] for p in report['processes']}
    for name in scen.SELECTED:
        k = kills[sc.pids[name]]
        assert len(k['threads']) == len(threads[sc.pids[name]])
    assert kills[sc.pids['pipe']]['wakeup'] == 'timer'
    assert kills[sc.pids['futex']]['wakeup'] == 'timer'
    assert report['patched_fields']
    assert set(report['timings']) >= {'parse_and_introspect', 'plan',
                                      'rewrite', 'verify'}


def test_sandbox_gives_the_same_scrub(sc):
    """Planning in the unprivileged sandbox child writes the same
    checkpoint, byte for byte, with the same report, as planning in this
    process; the child ran as nobody with no capabilities.
    """
    from sparc_nova.engine import memory
    from sparc_nova.engine import sandbox as sandbox_mod
    outs, reports = {}, {}
    for sandbox in (True, False):
        outs[sandbox] = os.path.join(sc.workdir, 'sandbox-%s.save' % sandbox)
        rep = memory.scrub_checkpoint(
            sc.save_path, sc.selectors(), output=outs[sandbox],
            sandbox=sandbox_mod.SandboxPolicy(enabled=sandbox))
        reports[sandbox] = rep.to_dict()
    assert scen.sha256(outs[True]) == scen.sha256(outs[False])
    child = reports[True].pop('sandbox')
    assert reports[False].pop('sandbox') == {}
    for sandbox, report in reports.items():
        assert report.pop('output') == report['rewrite'].pop('path') == \
            outs[sandbox]
        assert report['verification']['result'] == 'ok'
        os.unlink(outs[sandbox])
    assert set(reports[True].pop('timings')) >= {
        'open', 'sandbox', 'parse_and_introspect', 'plan', 'rewrite',
        'verify'}
    reports[False].pop('timings')
    assert reports[True] == reports[False]
    assert reports[True]['patched_fields'] and \
        reports[True]['frames_scrubbed'] > 0
    if os.geteuid() == 0:
        assert (child['uid'], child['gid']) == (65534, 65534)
    assert int(child['cap_eff'], 16) == 0
    assert child['no_new_privs'] and child['seccomp']


def test_free_pages_kept_leaves_spray(sc):
    out = os.path.join(sc.workdir, 'kept.save')
    scen.sparc('checkpoint', 'scrub', sc.save_path, '--output', out,
               '--keep-free-pages', '--exclude-process',
               'pid:%d' % sc.pids['simple'], check=0)
    res = scen.sparc('checkpoint', 'verify', out, '--marker',
                     sc.marker('spray'), '--format', 'json', check=1)
    assert json.loads(res.stdout)['markers'][0]['in_memory'] > 500
    os.unlink(out)


def test_dry_run_writes_nothing(sc):
    before = scen.sha256(sc.save_path)
    mtime = os.stat(sc.save_path).st_mtime_ns
    res = scen.sparc('checkpoint', 'scrub', sc.save_path, '--dry-run',
                     '--exclude-process', 'workload', check=0)
    plan = json.loads(res.stdout)
    assert plan['dry_run'] and plan['output'] is None
    # The bare name selects every workload process, control included.
    assert {p['pid'] for p in plan['processes']} >= set(sc.pids.values())
    assert scen.sha256(sc.save_path) == before
    assert os.stat(sc.save_path).st_mtime_ns == mtime
    assert not [f for f in os.listdir(sc.workdir) if '.sparc-' in f]


def test_in_place_and_again(sc):
    """In place on a raw image; a second scrub of the result finds its
    own wake-ups queued and does not arm them twice.
    """
    path = os.path.join(sc.workdir, 'inplace.save')
    shutil.copyfile(sc.save_path, path)
    sels = []
    for sel in sc.selectors():
        sels += ['--exclude-process', sel]
    first = json.loads(scen.sparc('checkpoint', 'scrub', path, '--in-place',
                                  '--format', 'json', *sels, check=0).stdout)
    assert first['rewrite']['in_place'] and first['output'] == path
    res = scen.sparc('checkpoint', 'verify', path, '--marker',
                     sc.marker('simple'), '--marker', sc.marker('spray'),
                     check=0)
    assert res.returncode == 0
    again = json.loads(scen.sparc('checkpoint', 'scrub', path, '--in-place',
                                  '--format', 'json', *sels, check=0).stdout)
    kills = [p['kill'] for p in again['processes']]
    assert all(k['timer'].get('already_armed') for k in kills
               if k['wakeup'] == 'timer')
    assert again['free_pages']['frames_rewritten'] == 0
    os.unlink(path)


def test_replace_original(sc):
    """Without --output the checkpoint itself is replaced, atomically,
    keeping its mode (managed-save files are root-only).
    """
    path = os.path.join(sc.workdir, 'replace.save')
    shutil.copyfile(sc.save_path, path)
    os.chmod(path, 0o600)
    scen.sparc('checkpoint', 'scrub', path, '--exclude-process',
               'pid:%d' % sc.pids['simple'], check=0)
    assert os.stat(path).st_mode & 0o777 == 0o600
    scen.sparc('checkpoint', 'verify', path, '--marker',
               sc.marker('simple'), check=0)
    assert not [f for f in os.listdir(sc.workdir) if '.sparc-' in f]
    os.unlink(path)


def test_restore_kills_selected_keeps_control(sc, scrubbed):
    out, _ = scrubbed
    scen.restore_and_check(sc, out)
