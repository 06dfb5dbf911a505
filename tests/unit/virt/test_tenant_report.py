"""The event that tells a project why its operation failed."""

from unittest import mock

from nova import objects

from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import tenant_report
from tests.unit.virt import fakes


def refused():
    return virt_exception.SparcOperationRefused(
        operation='Suspend', instance_uuid=fakes.INSTANCE_UUID,
        reason='sparc:suspend=refuse')


def test_event_carries_the_message():
    objects.register_all()
    with mock.patch('nova.objects.InstanceActionEvent.event_start') as st, \
            mock.patch('nova.objects.InstanceActionEvent.'
                       'event_finish_with_failure') as fin:
        tenant_report.record('ctx', fakes.instance(), refused())
    message = refused().format_message()
    name = 'sparc-nova: ' + message
    st.assert_called_once_with('ctx', fakes.INSTANCE_UUID, name,
                               want_result=False)
    fin.assert_called_once_with('ctx', fakes.INSTANCE_UUID, name,
                                exc_val=message, exc_tb=message,
                                want_result=False)


def test_long_messages_fit_the_column():
    name = tenant_report.event_name('x' * 400)
    assert len(name) == tenant_report.MAX_EVENT_NAME
    assert name.startswith('sparc-nova: xxx')


def test_never_raises():
    objects.register_all()
    with mock.patch('nova.objects.InstanceActionEvent.event_start',
                    side_effect=RuntimeError('no action for the request')):
        tenant_report.record('ctx', fakes.instance(), refused())


def test_success_event_is_named_exactly():
    objects.register_all()
    with mock.patch('nova.objects.InstanceActionEvent.event_start') as st, \
            mock.patch('nova.objects.InstanceActionEvent.'
                       'event_finish') as fin:
        tenant_report.record_success('ctx', fakes.instance(), 'sealed')
    st.assert_called_once_with('ctx', fakes.INSTANCE_UUID,
                               'sparc-nova: sealed', want_result=False)
    fin.assert_called_once_with('ctx', fakes.INSTANCE_UUID,
                                'sparc-nova: sealed', want_result=False)


def test_success_event_never_raises():
    objects.register_all()
    with mock.patch('nova.objects.InstanceActionEvent.event_start',
                    side_effect=RuntimeError('no action for the request')):
        tenant_report.record_success('ctx', fakes.instance(), 'sealed')
