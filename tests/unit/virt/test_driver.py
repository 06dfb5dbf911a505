"""Decisions of SparcLibvirtDriver that the functional harness does not
reach: resize across cells, resizes on the same host, configuration
switches. The driver is built without LibvirtDriver's constructor; Nova's
own methods are mocked where the decision hands over to them.
"""

from unittest import mock

from nova.compute import task_states
from nova import exception as nova_exception
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
import pytest

from sparc_nova import conf
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt.libvirt import driver
from sparc_nova.virt.libvirt import snapshot as snapshot_hooks
from tests.unit.virt import fakes

POLICY = {'sparc:exclude_paths': '/secret/**'}


@pytest.fixture
def drv():
    d = driver.SparcLibvirtDriver.__new__(driver.SparcLibvirtDriver)
    d._snapshot_jobs = snapshot_hooks.SnapshotJobs()
    d._scrubber = mock.Mock()
    return d


@pytest.fixture
def override():
    names = []

    def set_(name, value):
        conf.CONF.set_override(name, value, group='sparc')
        names.append(name)
    yield set_
    for name in names:
        conf.CONF.clear_override(name, group='sparc')


def test_resize_across_cells_refused(drv):
    inst = fakes.instance(metadata=POLICY,
                          task_state=task_states.RESIZE_MIGRATING)
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot') as up:
        with pytest.raises(nova_exception.InstanceFaultRollback) as e:
            drv.snapshot('ctx', inst, 'img', lambda **kw: None)
    assert up.call_count == 0
    assert e.value.inner_exception.format_message() == (
        'Resize across cells of instance %s is refused by its privacy '
        'policy: it uploads the disk to Glance, where it would be either '
        'unscrubbed or stripped of the files the resized server needs'
        % fakes.INSTANCE_UUID)


def test_resize_across_cells_without_policy(drv):
    inst = fakes.instance(task_state=task_states.RESIZE_MIGRATING)
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot') as up:
        drv.snapshot('ctx', inst, 'img', None)
    up.assert_called_once_with('ctx', inst, 'img', None)


def test_snapshot_registers_the_job_while_it_runs(drv):
    inst = fakes.instance(metadata=POLICY)
    seen = []

    def nova_snapshot(context, instance, image_id, update_task_state):
        seen.append((drv._snapshot_jobs.for_image(image_id).policy
                     .exclude_paths, drv._snapshot_jobs.policed(inst.uuid)))

    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot',
                           side_effect=nova_snapshot):
        drv.snapshot('ctx', inst, 'img', None)
    assert seen == [(['/secret/**'], True)]
    assert drv._snapshot_jobs.for_image('img') is None


def test_managed_save_path(drv, override):
    override('managed_save_dir', '/srv/libvirt/save')
    assert drv.managed_save_path(fakes.instance(name='instance-0000002a')) \
        == '/srv/libvirt/save/instance-0000002a.save'


def moving(source, dest):
    objects.register_all()
    migration = mock.Mock(source_compute=source, dest_compute=dest)
    return mock.patch('nova.objects.Migration.get_by_id',
                      return_value=migration)


@pytest.mark.parametrize('source, dest, refused', [
    ('compute1', 'compute2', True), ('compute1', 'compute1', False)])
def test_cold_migration(drv, source, dest, refused):
    inst = fakes.instance(metadata=POLICY)
    inst.migration_context = mock.Mock(migration_id=7)
    with moving(source, dest), mock.patch.object(
            libvirt_driver.LibvirtDriver,
            'migrate_disk_and_power_off') as up:
        if refused:
            with pytest.raises(nova_exception.InstanceFaultRollback) as e:
                drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.2',
                                               'flavor', [])
            assert isinstance(e.value.inner_exception,
                              virt_exception.SparcOperationRefused)
            assert up.call_count == 0
        else:
            drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.1',
                                           'flavor', [])
            assert up.call_count == 1


def test_cold_migration_allowed_by_configuration(drv, override):
    override('refuse_cold_migration', False)
    inst = fakes.instance(metadata=POLICY)
    inst.migration_context = mock.Mock(migration_id=7)
    with moving('compute1', 'compute2'), mock.patch.object(
            libvirt_driver.LibvirtDriver,
            'migrate_disk_and_power_off') as up:
        drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.2', 'flavor',
                                       [])
    assert up.call_count == 1


def test_live_migration_refusal_and_configuration(drv, override):
    inst = fakes.instance(metadata=POLICY)
    with mock.patch.object(libvirt_driver.LibvirtDriver,
                           'check_can_live_migrate_source') as up:
        with pytest.raises(nova_exception.MigrationPreCheckError) as e:
            drv.check_can_live_migrate_source('ctx', inst, 'data')
        assert 'is refused by its privacy policy: its memory stream ' \
               'cannot be scrubbed' in e.value.format_message()
        override('refuse_live_migration', False)
        drv.check_can_live_migrate_source('ctx', inst, 'data')
    up.assert_called_once_with('ctx', inst, 'data', block_device_info=None)


def test_live_migration_with_invalid_policy_refused(drv):
    inst = fakes.instance(metadata={'sparc:suspend': 'never'})
    with pytest.raises(nova_exception.MigrationPreCheckError) as e:
        drv.check_can_live_migrate_source('ctx', inst, 'data')
    assert 'Invalid privacy policy' in e.value.format_message()


def test_suspend_inside_a_snapshot_is_not_scrubbed(drv):
    inst = fakes.instance(metadata=POLICY)
    job = snapshot_hooks.SnapshotJob('ctx', inst, 'img',
                                     fakes.effective(exclude_paths='/a'))
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend') as up:
        with drv._snapshot_jobs.running(job):
            drv.suspend('ctx', inst)
        up.assert_called_once_with('ctx', inst)
        assert drv._scrubber.managed_save.call_count == 0
        drv.suspend('ctx', inst)
        assert drv._scrubber.managed_save.call_count == 1


def test_failed_rollback_removes_the_unscrubbed_managed_save(drv):
    inst = fakes.instance(metadata=POLICY)
    drv._scrubber.managed_save.side_effect = virt_exception.SparcScrubFailed(
        what='memory image', instance_uuid=inst.uuid, reason='x')
    guest = mock.Mock()
    drv._host = mock.Mock()
    drv._host.get_guest.return_value = guest
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend'), \
            mock.patch.object(libvirt_driver.LibvirtDriver,
                              '_resume_guest_after_snapshot',
                              side_effect=RuntimeError('launch failed')):
        with pytest.raises(RuntimeError):
            drv.suspend('ctx', inst)
    guest._domain.managedSaveRemove.assert_called_once_with(0)


def test_rollback_restores_the_guest(drv):
    inst = fakes.instance(metadata=POLICY)
    drv._scrubber.managed_save.side_effect = virt_exception.SparcScrubFailed(
        what='memory image', instance_uuid=inst.uuid, reason='x')
    drv._host = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend'), \
            mock.patch.object(libvirt_driver.LibvirtDriver,
                              '_resume_guest_after_snapshot') as resume:
        with pytest.raises(nova_exception.InstanceFaultRollback):
            drv.suspend('ctx', inst)
    resume.assert_called_once_with('ctx', False, 1, inst,
                                   drv._host.get_guest.return_value)
    assert drv._host.get_guest.return_value._domain.managedSaveRemove \
        .call_count == 0
