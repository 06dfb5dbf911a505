"""Sealed suspends in SparcLibvirtDriver: the paths the functional
harness does not reach (a resume that fails once unsealed, a kill
fallback that fails, a seal kept unsealed as the operator allows). The
driver is built without LibvirtDriver's constructor; the privileged
entry points and Nova's own methods are mocked.
"""

import types
from unittest import mock

from nova import exception as nova_exception
from nova.virt.libvirt import driver as libvirt_driver
import pytest

from sparc_nova import conf
from sparc_nova import exception
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt.libvirt import driver
from sparc_nova.virt import scrubber
from sparc_nova.virt import seal_keys
from tests import fake_key_manager
from tests.unit.virt import driver_fakes
from tests.unit.virt import fakes

SEAL = {'sparc:exclude_processes': 'vault', 'sparc:suspend': 'seal'}
CTX = types.SimpleNamespace(project_id='project-a', user_id='u')


@pytest.fixture
def privileged():
    with driver_fakes.mocked_privileged(
            'begin_managed_save', 'end_managed_save', 'seal_managed_save',
            'unseal_managed_save', 'kill_sealed_managed_save',
            'sealed_pages_state', 'discard_sealed_pages',
            'discard_managed_save') as mocks:
        mocks.sealed_pages_state.return_value = {'managed_save': True,
                                                 'sealed': True}
        mocks.unseal_managed_save.return_value = {'frames_restored': 1}
        yield mocks


@pytest.fixture
def manager():
    return fake_key_manager.ProjectKeyManager()


@pytest.fixture
def drv(privileged, manager):
    d = driver_fakes.bare_driver()
    d._seal_keys = seal_keys.SealKeys(conf.CONF, manager=manager)
    d._host = mock.Mock()
    return d


@pytest.fixture
def record():
    with mock.patch.object(driver.tenant_report, 'record') as r, \
            mock.patch.object(driver.tenant_report, 'record_success') as s:
        yield types.SimpleNamespace(error=r, success=s)


def sealed_instance(drv):
    """An instance suspended sealed: (instance, secret ref, key)."""
    instance = fakes.instance(metadata=SEAL)
    instance.save = mock.Mock()
    ref, key = drv._seal_keys.create(CTX, instance)
    instance.system_metadata[driver.SEAL_KEY_REF] = ref
    return instance, ref, key


def test_a_resume_failing_once_unsealed_seals_again_with_the_same_key(
        drv, privileged, manager):
    instance, ref, key = sealed_instance(drv)
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'resume',
                           side_effect=RuntimeError('qemu died')):
        with pytest.raises(RuntimeError):
            drv.resume(CTX, instance, [])
    privileged.unseal_managed_save.assert_called_once_with(
        path=drv.managed_save_path(instance), instance_name=instance.name,
        key=key)
    (args, kwargs), = drv._scrubber.seal_managed_save.call_args_list
    assert args[0] is CTX and args[1] is instance
    assert args[3:] == (drv.managed_save_path(instance), key)
    # Still sealed under the same secret: a later resume unseals it.
    assert ref in manager.keys
    assert instance.system_metadata[driver.SEAL_KEY_REF] == ref
    privileged.discard_managed_save.assert_not_called()


def test_a_managed_save_that_cannot_be_sealed_again_is_deleted(
        drv, privileged):
    instance, ref, key = sealed_instance(drv)
    drv._scrubber.seal_managed_save.side_effect = \
        virt_exception.SparcScrubFailed(what='memory image',
                                        instance_uuid=instance.uuid,
                                        reason='x')
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'resume',
                           side_effect=RuntimeError('qemu died')):
        with pytest.raises(RuntimeError):
            drv.resume(CTX, instance, [])
    drv._host.get_guest.return_value._domain.managedSaveRemove \
        .assert_called_once_with(0)
    privileged.discard_managed_save.assert_called_once_with(instance.name)


def test_resume_of_an_already_unsealed_save_deletes_the_secret(
        drv, privileged, manager):
    instance, ref, key = sealed_instance(drv)
    privileged.sealed_pages_state.return_value = {'managed_save': True,
                                                  'sealed': False}
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'resume') as res:
        drv.resume(CTX, instance, [])
    res.assert_called_once()
    privileged.unseal_managed_save.assert_not_called()
    assert manager.keys == {}
    assert driver.SEAL_KEY_REF not in instance.system_metadata


def test_resume_deletes_the_secret_only_once_the_guest_runs(
        drv, privileged, manager):
    instance, ref, key = sealed_instance(drv)

    def resume(*args, **kwargs):
        assert ref in manager.keys
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'resume',
                           side_effect=resume):
        drv.resume(CTX, instance, [])
    assert manager.keys == {}
    assert driver.SEAL_KEY_REF not in instance.system_metadata


def test_a_failed_kill_fallback_keeps_the_server_suspended(
        drv, privileged, manager, record):
    conf.CONF.set_override('seal_fallback', 'kill', group='sparc')
    try:
        instance, ref, key = sealed_instance(drv)
        manager.delete(CTX, ref)
        privileged.kill_sealed_managed_save.side_effect = \
            exception.SparcError('no vmcoreinfo in guest memory')
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               'resume') as res:
            with pytest.raises(nova_exception.InstanceFaultRollback) as e:
                drv.resume(CTX, instance, [])
    finally:
        conf.CONF.clear_override('seal_fallback', group='sparc')
    res.assert_not_called()
    message = e.value.inner_exception.format_message()
    assert message == (
        'Kill fallback of the sealed memory image of instance %s failed, '
        'the server stays suspended: the sealing key could not be fetched '
        '(secret %s does not exist (it was deleted?)), and killing the '
        'sealed processes instead failed: no vmcoreinfo in guest memory'
        % (instance.uuid, ref))
    record.error.assert_called_once_with(CTX, instance,
                                         e.value.inner_exception)
    assert instance.system_metadata[driver.SEAL_KEY_REF] == ref


def test_a_seal_kept_unsealed_as_allowed_drops_its_secret(
        drv, privileged, manager, record):
    instance = fakes.instance(metadata=SEAL)
    instance.save = mock.Mock()
    drv._scrubber.seal_managed_save.return_value = scrubber.Outcome(
        False, 'scrub failed, kept unscrubbed', 'sha256:0')
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend'):
        drv.suspend(CTX, instance)
    assert manager.keys == {}
    assert driver.SEAL_KEY_REF not in instance.system_metadata
    record.success.assert_not_called()
    privileged.end_managed_save.assert_called_once_with(instance.name)


def test_a_sealed_suspend_records_the_sealed_event(drv, privileged, manager,
                                                   record):
    instance = fakes.instance(metadata=SEAL)
    instance.save = mock.Mock()
    drv._scrubber.seal_managed_save.return_value = scrubber.Outcome(
        True, 'sealed', 'sha256:0')
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend') as sus:
        drv.suspend(CTX, instance)
    sus.assert_called_once_with(CTX, instance)
    ref = instance.system_metadata[driver.SEAL_KEY_REF]
    assert manager.owners[ref] == 'project-a'
    record.success.assert_called_once_with(CTX, instance, 'sealed')


def test_a_failed_save_deletes_the_secret(drv, privileged, manager):
    instance = fakes.instance(metadata=SEAL)
    instance.save = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend',
                           side_effect=RuntimeError('no space left')):
        with pytest.raises(RuntimeError):
            drv.suspend(CTX, instance)
    assert manager.keys == {}
    assert driver.SEAL_KEY_REF not in instance.system_metadata
    drv._scrubber.seal_managed_save.assert_not_called()
    privileged.end_managed_save.assert_called_once_with(instance.name)


def test_cleanup_keeps_the_seal_while_libvirt_keeps_the_managed_save(
        drv, privileged, manager):
    instance, ref, key = sealed_instance(drv)
    drv._host.get_guest.return_value._domain.hasManagedSaveImage \
        .return_value = 1
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'cleanup'):
        drv.cleanup(CTX, instance, [])
    privileged.discard_sealed_pages.assert_not_called()
    assert ref in manager.keys
    # Once it is gone, the sealed pages and the secret go too.
    drv._host.get_guest.side_effect = nova_exception.InstanceNotFound(
        instance_id=instance.uuid)
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'cleanup'):
        drv.cleanup(CTX, instance, [])
    privileged.discard_sealed_pages.assert_called_once_with(instance.name)
    assert manager.keys == {}
    assert driver.SEAL_KEY_REF not in instance.system_metadata


def test_a_daemon_that_cannot_look_keeps_the_server_suspended(
        drv, privileged, manager, record):
    instance, ref, key = sealed_instance(drv)
    privileged.sealed_pages_state.side_effect = RuntimeError('no daemon')
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'resume') as res:
        with pytest.raises(nova_exception.InstanceFaultRollback) as e:
            drv.resume(CTX, instance, [])
    res.assert_not_called()
    assert e.value.inner_exception.format_message().startswith(
        'Unseal of the sealed memory image of instance %s failed, nothing '
        'changed, the server stays suspended: the privileged daemon could '
        'not look at the managed save' % instance.uuid)
    assert ref in manager.keys


def test_sealed_pages_without_a_key_reference_keep_the_server_suspended(
        drv, privileged, record):
    """Sealed pages next to the managed save and no key reference in the
    instance (lost system metadata): restoring would run the excluded
    processes on zeroed pages with no kill armed, so the resume is
    refused and nothing changes.
    """
    instance = fakes.instance(metadata=SEAL)
    instance.save = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'resume') as res:
        with pytest.raises(nova_exception.InstanceFaultRollback) as e:
            drv.resume(CTX, instance, [])
    res.assert_not_called()
    privileged.unseal_managed_save.assert_not_called()
    assert 'keeps no reference to its key' in \
        e.value.inner_exception.format_message()


def test_a_resume_without_sealed_pages_or_reference_goes_on(
        drv, privileged):
    instance = fakes.instance(metadata={})
    privileged.sealed_pages_state.return_value = {'managed_save': True,
                                                  'sealed': False}
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'resume') as res:
        drv.resume(CTX, instance, [])
    res.assert_called_once()
