"""sparc.scrub.* notifications on an oslo.messaging transport."""

from unittest import mock

from oslo_config import cfg
import oslo_messaging
from oslo_messaging.notify import _impl_test
import pytest

from nova import context as nova_context
from sparc_nova import conf
from sparc_nova import notifications


@pytest.fixture
def transport():
    messaging_conf = cfg.ConfigOpts()
    transport = oslo_messaging.get_notification_transport(messaging_conf,
                                                          url='fake:/')
    messaging_conf.set_override('driver', ['test'],
                                group='oslo_messaging_notifications')
    _impl_test.reset()
    yield transport
    transport.cleanup()
    _impl_test.reset()


@pytest.fixture
def context():
    # is_admin given: otherwise Nova asks its policy engine, which needs
    # Nova's configuration parsed.
    return nova_context.RequestContext(user_id='u', project_id='p',
                                       is_admin=False)


def sent():
    return [(message['event_type'], message['priority'],
             message['publisher_id'], message['payload'], ctxt)
            for ctxt, message, priority, retry in _impl_test.NOTIFICATIONS]


def test_events(transport, context):
    notifier = notifications.ScrubNotifier('compute1', transport)
    notifier.start(context, {'instance_uuid': 'i'})
    notifier.end(context, {'instance_uuid': 'i', 'summary': 's'})
    notifier.error(context, {'instance_uuid': 'i', 'error': 'e'})
    events = sent()
    assert [e[:3] for e in events] == [
        ('sparc.scrub.start', 'INFO', 'sparc.compute1'),
        ('sparc.scrub.end', 'INFO', 'sparc.compute1'),
        ('sparc.scrub.error', 'ERROR', 'sparc.compute1')]
    assert events[1][3] == {'instance_uuid': 'i', 'summary': 's'}
    assert events[0][4]['project_id'] == 'p'


def test_switched_off(transport, context):
    conf.CONF.set_override('send_notifications', False, group='sparc')
    try:
        notifications.ScrubNotifier('h', transport).start(context, {})
    finally:
        conf.CONF.clear_override('send_notifications', group='sparc')
    assert sent() == []


def test_uses_novas_transport_when_none_given(transport, context):
    with mock.patch('nova.rpc.NOTIFICATION_TRANSPORT', transport):
        notifications.ScrubNotifier('h').end(context, {'a': 1})
    assert [e[0] for e in sent()] == ['sparc.scrub.end']


def test_no_transport_sends_nothing(transport, context, caplog):
    caplog.set_level('DEBUG', logger='sparc_nova.notifications')
    notifier = notifications.ScrubNotifier('h')
    with mock.patch('nova.rpc.NOTIFICATION_TRANSPORT', None), \
            mock.patch.object(oslo_messaging, 'Notifier') as make:
        notifier.end(context, {'a': 1})
    make.assert_not_called()
    assert sent() == []
    assert 'No notification transport: sparc.scrub.end not sent' in \
        caplog.text
    # Nothing is remembered: once Nova has a transport, it is used.
    with mock.patch('nova.rpc.NOTIFICATION_TRANSPORT', transport):
        notifier.end(context, {'a': 1})
    assert [e[0] for e in sent()] == ['sparc.scrub.end']


def test_failure_to_send_is_logged_not_raised(transport, context, caplog):
    notifier = notifications.ScrubNotifier('h', transport)
    with mock.patch.object(oslo_messaging.Notifier, 'info',
                           side_effect=RuntimeError('broker down')):
        notifier.start(context, {})
    assert 'Could not send the sparc.scrub.start notification' in caplog.text


def test_policy_payload_counts_without_clear_text():
    from sparc_nova import policy
    effective = policy.from_sources(instance={
        'sparc:exclude_paths': '/srv/acme-merger/**,/home/*/acme.kdbx',
        'sparc:exclude_processes': 'name:acme'})
    hidden = notifications.policy_payload(effective)
    assert hidden['digest'] == effective.digest
    assert hidden['exclude_paths_count'] == 2
    assert hidden['exclude_processes_count'] == 1
    assert 'acme' not in repr(hidden)
    shown = notifications.policy_payload(effective, clear_text=True)
    assert shown['exclude_paths'] == ['/srv/acme-merger/**',
                                      '/home/*/acme.kdbx']
    assert shown['exclude_processes'] == ['name:acme']
    assert dict(shown, exclude_paths=None, exclude_processes=None,
                path_rules=None) == dict(
        hidden, exclude_paths=None, exclude_processes=None, path_rules=None)


@pytest.mark.parametrize('fmt, expected', [
    ('unversioned', [('sparc.compute1', False)]),
    ('versioned', [('sparc-compute:compute1', True)]),
    ('both', [('sparc.compute1', False),
              ('sparc-compute:compute1', True)])])
def test_follows_novas_notification_format(transport, context, fmt,
                                           expected):
    from sparc_nova import policy
    effective = policy.from_sources(instance={
        'sparc:exclude_processes': 'vault'})
    payload = {'instance_uuid': '7f0c2a44-54c4-4a4e-9c6d-0f6a1e0b9d11',
               'operation': 'suspend', 'host': 'compute1',
               'policy': notifications.policy_payload(effective),
               'policy_digest': effective.digest, 'path': '/x.save'}
    notifier = notifications.ScrubNotifier(
        'compute1', transport, notification_format=fmt)
    notifier.start(context, payload)
    got = [(e[2], 'sparc_nova_object.data' in e[3]) for e in sent()]
    assert got == expected
    for event in sent():
        assert event[0] == 'sparc.scrub.start'
        if 'sparc_nova_object.data' in event[3]:
            data = event[3]['sparc_nova_object.data']
            assert data['path'] == '/x.save'
            assert data['policy']['sparc_nova_object.data']['digest'] == \
                effective.digest
        else:
            assert event[3] == payload


def test_unknown_format_is_refused():
    with pytest.raises(ValueError):
        notifications.ScrubNotifier('h', notification_format='json')
