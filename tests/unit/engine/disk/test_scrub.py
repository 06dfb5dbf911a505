"""Parts of scrub_image that need no appliance."""

import dataclasses

from oslo_config import cfg
import pytest

from sparc_nova.conf import disk as disk_conf
from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import fast_boot
from sparc_nova.engine.disk import host_image
from sparc_nova.engine.disk import options as options_mod
from sparc_nova.engine.disk import preflight
from sparc_nova.engine.disk import removal
from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine.disk import scrub
from sparc_nova.engine.disk import session as session_mod
from sparc_nova import exception


def _session(rule_set, reveal_paths=True):
    return session_mod.Session(
        None, 'img.qcow2', rule_set, options_mod.ScrubOptions(),
        report_mod.ScrubReport('img.qcow2', 'out', 'qcow2',
                               reveal_paths=reveal_paths),
        '/nonexistent', '/nonexistent/work.raw')


def test_unmatched_rules_are_reported():
    session = _session(rules_mod.Rules(['/a/**', '/b'], ['tmp'],
                                       ['/held']))
    removal.check_rules_matched(session, {'/a/**'})
    assert session.report.unmatched_rules == ['/b', 'preset:tmp', '/held']
    assert session.report.rules == {'/a/**': 0, '/b': 0, 'preset:tmp': 0,
                                    '/held': 0}


def test_strict_rules_fail_on_unmatched_glob():
    session = _session(rules_mod.Rules(['/a/**', '/b'], strict=True))
    with pytest.raises(exception.DiskScrubError,
                       match="/b matches nothing"):
        removal.check_rules_matched(session, {'/a/**'})


def test_rules_are_digested_unless_names_are_asked_for():
    rules = (['/home/SECRET-x', '/a/**'], ['tmp'], ['/held-SECRET'])
    session = _session(rules_mod.Rules(*rules), reveal_paths=False)
    removal.check_rules_matched(session, {'/a/**'})
    report = session.report
    assert 'SECRET' not in repr(report.to_dict())
    assert report.unmatched_rules == [
        'sha256:' + report_mod.path_digest('/home/SECRET-x'), 'preset:tmp',
        'sha256:' + report_mod.path_digest('/held-SECRET')]
    assert report.rules['sha256:' + report_mod.path_digest('/a/**')] == 0
    session = _session(rules_mod.Rules(*rules, strict=True),
                       reveal_paths=False)
    with pytest.raises(exception.DiskScrubError) as e:
        removal.check_rules_matched(session, {'/a/**'})
    assert 'SECRET' not in str(e.value)


def test_strict_rules_tolerate_missing_held_paths():
    session = _session(rules_mod.Rules(['/a/**'], held_paths=['/gone'],
                                       strict=True))
    removal.check_rules_matched(session, {'/a/**'})
    assert session.report.unmatched_rules == ['/gone']


def _conf(**sparc):
    conf = cfg.ConfigOpts()
    conf.register_opts(disk_conf.opts, group='sparc')
    conf([], default_config_files=[])
    for name, value in sparc.items():
        conf.set_override(name, value, group='sparc')
    return conf


def test_options_from_conf_and_overrides():
    conf = _conf(disk_verify_kept='all', disk_appliance_launch_timeout_s=42)
    options = options_mod.ScrubOptions.from_conf(
        conf, output_format='raw', allow_unverified=None)
    assert options.output_format == 'raw'
    assert options.allow_unverified is False
    assert options.verify_kept == 'all'
    assert options.launch_timeout_s == 42


def test_options_need_the_callers_conf():
    with pytest.raises(TypeError):
        options_mod.ScrubOptions.from_conf()


def test_defaults_match_the_options():
    """Except the appliance cache: the engine writes no directory of
    its own unless its caller names one.
    """
    from_conf = options_mod.ScrubOptions.from_conf(_conf())
    assert from_conf.appliance_cache_dir == '/var/cache/sparc-nova/appliance'
    assert options_mod.ScrubOptions() == dataclasses.replace(
        from_conf, appliance_cache_dir=None)


def _skip_host_steps(tmp_path, monkeypatch):
    """scrub_image up to the appliance launch with no image: the source
    is a raw ``tmp_path/s``, the destination is writable, the working
    copy is not made.
    """
    monkeypatch.setattr(preflight, 'inspect_source',
                        lambda *a: preflight.SourceImage(
                            str(tmp_path / 's'), 'raw', 0, []))
    monkeypatch.setattr(preflight, 'check_destination', lambda *a: None)
    monkeypatch.setattr(host_image, 'convert', lambda *a: None)


def test_launch_gets_the_deadline_and_the_reports_notes(tmp_path,
                                                        monkeypatch):
    """A TCG retry after the KVM launch deadline ends up in the report."""
    seen = {}

    def launch(path, drives, accel, memsize_mib, timeout, notes,
               appliance_dir):
        seen['timeout'] = timeout
        seen['appliance_dir'] = appliance_dir
        notes.append('retried on TCG')
        seen['notes'] = notes
        raise exception.DiskScrubError(path, 'stop here')
    _skip_host_steps(tmp_path, monkeypatch)
    monkeypatch.setattr(appliance, 'launch', launch)
    with pytest.raises(exception.DiskScrubError, match='stop here'):
        scrub.scrub_image(str(tmp_path / 's'), str(tmp_path / 'd'),
                          rules_mod.Rules(['/tmp/**']),
                          options_mod.ScrubOptions(launch_timeout_s=7))
    assert seen['timeout'] == 7
    assert seen['notes'] == ['retried on TCG']
    assert seen['appliance_dir'] is None
    assert [p.name for p in tmp_path.iterdir()] == []


def test_launch_boots_the_prepared_appliance(tmp_path, monkeypatch):
    """With a cache directory the scrub boots what fast_boot prepared
    there from libguestfs' supermin input.
    """
    seen = {}

    def prepare(cache_dir, supermin_d):
        seen['prepare'] = (cache_dir, supermin_d)
        return '/cache/appliance-1'

    def launch(path, drives, accel, memsize_mib, timeout, notes,
               appliance_dir):
        seen['appliance_dir'] = appliance_dir
        raise exception.DiskScrubError(path, 'stop here')
    _skip_host_steps(tmp_path, monkeypatch)
    monkeypatch.setattr(appliance, 'supermin_dir', lambda: '/lib/sd')
    monkeypatch.setattr(fast_boot, 'prepare', prepare)
    monkeypatch.setattr(appliance, 'launch', launch)
    with pytest.raises(exception.DiskScrubError, match='stop here'):
        scrub.scrub_image(str(tmp_path / 's'), str(tmp_path / 'd'),
                          rules_mod.Rules(['/tmp/**']),
                          options_mod.ScrubOptions(
                              appliance_cache_dir='/cache'))
    assert seen == {'prepare': ('/cache', '/lib/sd'),
                    'appliance_dir': '/cache/appliance-1'}


def test_steps_are_announced():
    seen = []
    step = scrub._Stepper(lambda i, n, what: seen.append((i, n, what)))
    step()
    step()
    assert seen == [(1, len(scrub.STEPS), scrub.STEPS[0]),
                    (2, len(scrub.STEPS), scrub.STEPS[1])]
