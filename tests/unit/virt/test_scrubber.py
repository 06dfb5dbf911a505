"""The scrubber: engines, failure policy, notifications, image records."""

from unittest import mock

import pytest

from sparc_nova.engine.disk import report as disk_report
from sparc_nova import exception
from sparc_nova import notifications
from sparc_nova.privsep import checkpoint as privsep_checkpoint
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import scrubber
from tests.unit.virt import fakes


def disk_report_of(removed=2, unmatched=()):
    report = disk_report.ScrubReport(source='/snap/abc',
                                     destination='/snap/abc.sparc',
                                     output_format='qcow2')
    report.volumes = [disk_report.VolumeReport('/dev/sda1', 'filesystem')]
    report.removed = [disk_report.RemovedPath('sha256:%d' % i, 'file', 100,
                                              '/home/*/.ssh/**', '/dev/sda1')
                      for i in range(removed)]
    report.canaries = 8
    report.unmatched_rules = list(unmatched)
    return report


SUMMARY = ('removed 2 paths (200 bytes) on 1 volume; 8 canaries, 0 left; '
           'verified')


@pytest.fixture
def notifier():
    return mock.Mock(spec=notifications.ScrubNotifier, host='compute1')


@pytest.fixture
def scrub_image():
    with mock.patch.object(scrubber.disk, 'scrub_image',
                           autospec=True) as m:
        m.return_value = disk_report_of()
        yield m


def snapshot(notifier, effective, src='/snap/abc', fmt='qcow2'):
    return scrubber.Scrubber(notifier).snapshot_file(
        'ctx', fakes.instance(), effective, 'img-1', src, fmt)


def test_disk_rules():
    assert scrubber.disk_rules(fakes.effective()) == []
    assert scrubber.disk_rules(fakes.effective(
        exclude_processes='vault')) == []
    assert scrubber.disk_rules(fakes.effective(
        exclude_paths='!/a/*.pub')) == []
    assert scrubber.disk_rules(fakes.effective(
        exclude_paths='/a/**,!/a/*.pub')) == [
            'scope:instance', '/a/**', '!/a/*.pub']
    assert scrubber.disk_rules(fakes.effective(
        exclude_paths='preset:tmp,!/tmp/keep')) == [
            'scope:instance', 'preset:tmp', '!/tmp/keep']


def test_disk_summary_counts_and_never_names():
    report = disk_report_of(unmatched=['/nothing/**'])
    report.volumes[0].verification = disk_report.UNVERIFIED
    summary = scrubber.disk_summary(report)
    assert summary == ('removed 2 paths (200 bytes) on 1 volume; 8 '
                       'canaries, 0 left; NOT fully verified; 1 rule '
                       'matched nothing')


def test_disk_summary_words_follow_the_counts():
    report = disk_report_of(removed=1, unmatched=['/a/**', '/b/**'])
    report.canaries = 1
    report.volumes.append(report.volumes[0])
    assert scrubber.disk_summary(report) == (
        'removed 1 path (100 bytes) on 2 volumes; 1 canary, 0 left; '
        'verified; 2 rules matched nothing')


def test_snapshot_scrubbed(notifier, scrub_image):
    effective = fakes.effective(exclude_paths='/home/*/.ssh/**')
    outcome = snapshot(notifier, effective)
    assert outcome.scrubbed
    assert outcome.path == '/snap/abc' + scrubber.SCRUBBED_SUFFIX
    args, kwargs = scrub_image.call_args
    assert args[:2] == ('/snap/abc', '/snap/abc.sparc')
    assert [r.text for r in args[2].rules] == ['/home/*/.ssh/**']
    assert args[3].output_format == 'qcow2'
    # Read in the format Nova wrote the snapshot in, never probed.
    assert args[3].source_format == 'qcow2'
    assert callable(kwargs['progress'])
    assert outcome.image_properties() == {
        'sparc_scrubbed': 'true', 'sparc_policy_digest': effective.digest,
        'sparc_scrub_summary': SUMMARY}
    start = notifier.start.call_args[0][1]
    assert start['instance_uuid'] == fakes.INSTANCE_UUID
    assert start['operation'] == 'snapshot'
    assert start['image_id'] == 'img-1'
    assert start['policy_digest'] == effective.digest
    end = notifier.end.call_args[0][1]
    assert end['summary'] == SUMMARY
    assert notifier.error.call_count == 0


def test_snapshot_summary_truncated_for_glance():
    outcome = scrubber.Outcome(True, 'x' * 1000, 'sha256:0')
    assert len(outcome.image_properties()['sparc_scrub_summary']) == 255


def test_snapshot_with_presets(notifier, scrub_image):
    snapshot(notifier, fakes.effective(exclude_paths='preset:gnupg'))
    rules = scrub_image.call_args[0][2]
    assert rules.units == ['preset:gnupg']


def test_snapshot_without_disk_part_is_not_scrubbed(notifier, scrub_image):
    outcome = snapshot(notifier, fakes.effective(exclude_processes='vault'))
    assert not outcome.scrubbed
    assert outcome.path == '/snap/abc'
    assert 'excludes no guest paths' in outcome.summary
    assert scrub_image.call_count == 0
    assert notifier.start.call_count == 0


@pytest.mark.parametrize('error, reason', [
    (exception.DiskVerificationError('/snap/abc.sparc', 'a canary remains'),
     '/snap/abc.sparc: a canary remains'),
    (RuntimeError('appliance died'),
     'unexpected RuntimeError (traceback in the debug log)'),
])
def test_snapshot_failure_aborts(notifier, scrub_image, error, reason):
    scrub_image.side_effect = error
    with pytest.raises(virt_exception.SparcScrubFailed) as e:
        snapshot(notifier, fakes.effective(exclude_paths='/a'))
    assert e.value.format_message() == (
        'Privacy scrub of the snapshot img-1 of instance %s failed; nothing '
        'unscrubbed was kept: %s' % (fakes.INSTANCE_UUID, reason))
    payload = notifier.error.call_args[0][1]
    assert payload['error'] == reason
    assert payload['outcome'] == 'aborted'
    assert notifier.end.call_count == 0


def test_snapshot_failure_allowed(notifier, scrub_image):
    scrub_image.side_effect = exception.DiskScrubError('/snap/abc',
                                                       'mount failed')
    effective = fakes.effective(exclude_paths='/a')
    effective.on_failure = 'allow'
    outcome = snapshot(notifier, effective)
    assert not outcome.scrubbed
    assert outcome.path == '/snap/abc'
    assert outcome.image_properties()['sparc_scrubbed'] == 'false'
    assert outcome.summary == ('scrub failed, kept unscrubbed '
                               '(on_failure=allow): /snap/abc: mount failed')
    assert notifier.error.call_args[0][1]['outcome'] == 'kept-unscrubbed'


def test_snapshot_format_the_engine_cannot_write(notifier, scrub_image):
    with pytest.raises(virt_exception.SparcScrubFailed) as e:
        snapshot(notifier, fakes.effective(exclude_paths='/a'), fmt='vmdk')
    assert 'cannot scrub a vmdk snapshot' in e.value.format_message()
    assert scrub_image.call_count == 0


def test_managed_save_through_privsep(notifier):
    effective = fakes.effective(exclude_processes='vault,gpg-agent',
                                exclude_paths='/srv/x,preset:gnupg',
                                scrub_free_memory='false')
    with mock.patch.object(scrubber.privsep_checkpoint,
                           'scrub_managed_save') as entry:
        entry.return_value = {'summary': '2 processes excluded',
                              'report': {}}
        outcome = scrubber.Scrubber(notifier).managed_save(
            'ctx', fakes.instance(), effective, '/save/i-1.save')
    entry.assert_called_once_with(
        path='/save/i-1.save', instance_name='instance-00000001',
        selectors=['vault', 'gpg-agent'],
        exclude_paths=['scope:instance', '/srv/x', 'preset:gnupg'],
        follow_ipc=True, scrub_free_memory=False)
    assert outcome.scrubbed and outcome.summary == '2 processes excluded'
    assert notifier.start.call_args[0][1]['operation'] == 'suspend'
    assert notifier.start.call_args[0][1]['path'] == '/save/i-1.save'


@pytest.fixture
def overlapped():
    """The two privileged entry points of the overlapped scrub, mocked;
    ``calls`` records them and the save in order.
    """
    calls = []
    with mock.patch.object(scrubber.privsep_checkpoint,
                           'follow_managed_save') as follow, \
            mock.patch.object(scrubber.privsep_checkpoint,
                              'finish_managed_save') as finish:
        follow.side_effect = lambda **kw: calls.append(('follow', kw))

        def finished(**kw):
            calls.append(('finish', kw))
            return {'summary': '1 process excluded', 'report': {}}
        finish.side_effect = finished
        yield calls, follow, finish


def managed_save(notifier, save, effective=None):
    return scrubber.Scrubber(notifier).managed_save(
        'ctx', fakes.instance(),
        effective or fakes.effective(exclude_processes='vault'),
        '/save/instance-00000001.save', save=save)


def test_scrub_overlaps_the_save(notifier, overlapped):
    calls, _, _ = overlapped
    outcome = managed_save(notifier, lambda: calls.append(('save',)))
    assert [c[0] for c in calls] == ['follow', 'save', 'finish']
    assert calls[0][1]['instance_name'] == 'instance-00000001'
    assert calls[0][1]['selectors'] == ['vault']
    assert calls[2][1] == {'instance_name': 'instance-00000001',
                           'saved': True}
    assert outcome.scrubbed and outcome.summary == '1 process excluded'
    assert notifier.end.call_count == 1


def test_failed_save_stops_the_follower_and_is_raised(notifier,
                                                      overlapped):
    calls, _, _ = overlapped
    boom = RuntimeError('libvirt: managed save failed')

    def save():
        raise boom
    with pytest.raises(RuntimeError) as e:
        managed_save(notifier, save)
    assert e.value is boom
    assert [c[0] for c in calls] == ['follow', 'finish']
    assert calls[1][1]['saved'] is False
    assert notifier.error.call_count == 0


def test_failed_overlapped_scrub_fails_after_the_save(notifier,
                                                      overlapped):
    calls, _, finish = overlapped
    finish.side_effect = privsep_checkpoint.PrivilegedScrubError(
        'ScrubError: /save/instance-00000001.save: the save did not '
        'finish in time')
    saved = []
    with pytest.raises(virt_exception.SparcScrubFailed) as e:
        managed_save(notifier, lambda: saved.append(1))
    assert saved == [1]
    assert 'did not finish in time' in e.value.format_message()
    assert notifier.error.call_args[0][1]['outcome'] == 'aborted'


def test_refused_follow_saves_nothing(notifier, overlapped):
    _, follow, finish = overlapped
    follow.side_effect = privsep_checkpoint.PrivilegedScrubError(
        'refused: a managed save already exists')
    saved = []
    with pytest.raises(virt_exception.SparcScrubFailed):
        managed_save(notifier, lambda: saved.append(1))
    assert saved == [] and finish.call_count == 0


def test_refused_follow_saves_unscrubbed_when_allowed(notifier,
                                                      overlapped):
    _, follow, finish = overlapped
    follow.side_effect = privsep_checkpoint.PrivilegedScrubError('no')
    effective = fakes.effective(exclude_processes='vault')
    effective.on_failure = 'allow'
    saved = []
    outcome = managed_save(notifier, lambda: saved.append(1), effective)
    assert saved == [1] and not outcome.scrubbed and finish.call_count == 0


def test_no_policy_properties_overwrite_inherited_records():
    assert scrubber.no_policy_properties() == {
        'sparc_scrubbed': 'false', 'sparc_policy_digest': '',
        'sparc_scrub_summary': 'no privacy policy: not scrubbed'}


SECRET_GLOB = '/home/*/merger-with-acme/**'


def test_notifications_carry_no_policy_text(notifier, scrub_image):
    effective = fakes.effective(exclude_paths=SECRET_GLOB,
                                exclude_processes='name:acme-deal')
    snapshot(notifier, effective)
    start = notifier.start.call_args[0][1]
    assert start['policy'] == {
        'digest': effective.digest, 'exclude_processes_count': 1,
        'exclude_paths_count': 1, 'follow_ipc': effective.follow_ipc,
        'scrub_free_memory': effective.scrub_free_memory,
        'on_failure': effective.on_failure, 'suspend': effective.suspend}
    end = notifier.end.call_args[0][1]
    for payload in (start, end):
        assert 'acme' not in repr(payload)


def test_notifications_in_clear_text_when_configured(notifier, scrub_image):
    effective = fakes.effective(exclude_paths=SECRET_GLOB)
    scrubber.conf.CONF.set_override('notify_clear_text_policy', True,
                                    group='sparc')
    try:
        snapshot(notifier, effective)
    finally:
        scrubber.conf.CONF.clear_override('notify_clear_text_policy',
                                          group='sparc')
    policy = notifier.start.call_args[0][1]['policy']
    assert policy['exclude_paths'] == [SECRET_GLOB]
    assert policy['exclude_paths_count'] == 1
    assert policy['digest'] == effective.digest


@pytest.mark.parametrize('error', [
    RuntimeError("rm: cannot remove '/sysroot/home/alice/acme.txt'"),
    OSError(1, 'Operation not permitted', '/home/alice/acme.txt'),
    KeyError('/home/alice/acme.txt'),
])
def test_unexpected_error_text_reaches_no_fault_notification_or_log(
        notifier, scrub_image, caplog, error):
    """An error that is not one of sparc-nova's own may quote anything
    (here a guest path): the fault, the notification and the log at
    INFO and above name its type only.
    """
    scrub_image.side_effect = error
    caplog.set_level('INFO')
    with pytest.raises(virt_exception.SparcScrubFailed) as e:
        snapshot(notifier, fakes.effective(exclude_paths='/a'))
    fault = e.value.format_message()
    assert type(error).__name__ in fault
    texts = [fault, repr(notifier.error.call_args), caplog.text]
    assert not [t for t in texts if 'acme' in t]


def test_guest_strings_in_a_failure_are_escaped(notifier, scrub_image,
                                                caplog):
    scrub_image.side_effect = exception.DiskScrubError(
        '/snap/abc', 'volume label \x1b]0;owned\x07 \u202eevil\nFAKE: ok')
    caplog.set_level('INFO')
    with pytest.raises(virt_exception.SparcScrubFailed) as e:
        snapshot(notifier, fakes.effective(exclude_paths='/a'))
    payload = notifier.error.call_args[0][1]
    for text in (e.value.format_message(), payload['error'], caplog.text):
        assert '\x1b' not in text and '\u202e' not in text
        assert '\nFAKE' not in text
    assert 'volume label \\x1b]0;owned\\x07 \\u202eevil\\nFAKE: ok' \
        in payload['error']
