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
from tests.unit.virt import driver_fakes
from tests.unit.virt import fakes

POLICY = {'sparc:exclude_paths': '/secret/**'}


@pytest.fixture
def privileged():
    """The privileged entry points on managed saves, mocked."""
    with driver_fakes.mocked_privileged(
            'begin_managed_save', 'end_managed_save', 'discard_managed_save',
            'pending_managed_saves', 'sweep_leftovers') as mocks:
        yield mocks


@pytest.fixture
def drv(privileged):
    return driver_fakes.bare_driver()


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
        job = drv._snapshot_jobs.for_image(image_id)
        seen.append((job.policy.exclude_paths,
                     drv._snapshot_jobs.policed(inst.uuid)))
        job.uploaded = True

    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot',
                           side_effect=nova_snapshot):
        drv.snapshot('ctx', inst, 'img', None)
    assert seen == [(['/secret/**'], True)]
    assert drv._snapshot_jobs.for_image('img') is None


def test_snapshot_not_uploaded_through_the_scrub_is_deleted(drv):
    inst = fakes.instance(metadata=POLICY)
    drv._image_api = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot'):
        with pytest.raises(virt_exception.SparcScrubFailed) as e:
            drv.snapshot('ctx', inst, 'img', None)
    assert 'Nova did not upload it through the scrub' in str(e.value)
    drv._image_api.delete.assert_called_once_with('ctx', 'img')


@pytest.mark.parametrize('power, launched', [(1, True), (4, False)])
def test_failed_shelve_deletes_its_image_and_restarts_the_guest(
        drv, power, launched):
    inst = fakes.instance(metadata=POLICY, power_state=power,
                          task_state=task_states.SHELVING)
    drv._image_api = mock.Mock()
    drv._host = mock.Mock()
    guest = drv._host.get_guest.return_value
    guest.get_power_state.return_value = 4
    failed = virt_exception.SparcScrubFailed(
        what='snapshot img', instance_uuid=inst.uuid, reason='x')
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot',
                           side_effect=failed), \
            mock.patch.object(libvirt_driver.LibvirtDriver,
                              '_resume_guest_after_snapshot') as resume:
        with pytest.raises(virt_exception.SparcScrubFailed):
            drv.snapshot('ctx', inst, 'img', None)
    drv._image_api.delete.assert_called_once_with('ctx', 'img')
    resume.assert_called_once_with('ctx', False, power, inst, guest)


def test_failed_create_image_leaves_the_image_to_nova(drv):
    inst = fakes.instance(metadata=POLICY)
    drv._image_api = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot',
                           side_effect=RuntimeError('x')):
        with pytest.raises(RuntimeError):
            drv.snapshot('ctx', inst, 'img', None)
    assert drv._image_api.delete.call_count == 0


def test_suspend_records_the_unscrubbed_save(drv, privileged):
    inst = fakes.instance(metadata=POLICY)
    order = []
    privileged.begin_managed_save.side_effect = \
        lambda name: order.append(('begin', name))
    privileged.end_managed_save.side_effect = \
        lambda name: order.append(('end', name))

    def scrub(*a, save):
        order.append(('follow',))
        save()
        order.append(('scrubbed',))
    drv._scrubber.managed_save.side_effect = scrub
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend',
                           side_effect=lambda *a: order.append(('save',))):
        drv.suspend('ctx', inst)
    assert order == [('begin', inst.name), ('follow',), ('save',),
                     ('scrubbed',), ('end', inst.name)]


def test_suspend_without_a_record_saves_nothing(drv, privileged):
    inst = fakes.instance(metadata=POLICY)
    privileged.begin_managed_save.side_effect = RuntimeError('no daemon')
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend') as up:
        with pytest.raises(nova_exception.InstanceFaultRollback) as e:
            drv.suspend('ctx', inst)
    assert up.call_count == 0
    assert 'could not record the managed save (no daemon)' in \
        e.value.inner_exception.format_message()


def test_crash_during_scrub_keeps_the_record(drv, privileged):
    inst = fakes.instance(metadata=POLICY)
    drv._scrubber.managed_save.side_effect = KeyboardInterrupt
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend'):
        with pytest.raises(KeyboardInterrupt):
            drv.suspend('ctx', inst)
    assert privileged.begin_managed_save.call_count == 1
    assert privileged.end_managed_save.call_count == 0


def test_start_sweeps_leftovers_before_discarding_saves(drv, privileged):
    calls = []
    privileged.sweep_leftovers.side_effect = lambda: calls.append(
        'sweep') or [{'directory': '/save', 'replayed': ['/save/x.save'],
                      'removed': ['/save/.sparc-stream-1-a'],
                      'refused': []}]
    privileged.pending_managed_saves.side_effect = lambda: calls.append(
        'pending') or []
    with mock.patch.object(driver.nova_support, 'check'), \
            mock.patch.object(libvirt_driver.LibvirtDriver, 'init_host'):
        drv.init_host('compute1')
    assert calls == ['sweep', 'pending']


def test_start_discards_interrupted_saves(drv, privileged):
    privileged.pending_managed_saves.return_value = ['instance-00000001',
                                                     'instance-0000dead']
    inst = mock.Mock(uuid=fakes.INSTANCE_UUID)
    inst.name = 'instance-00000001'
    drv._host = mock.Mock()
    domain = drv._host.get_guest.return_value._domain
    domain.hasManagedSaveImage.return_value = True
    objects.register_all()
    with mock.patch('nova.objects.InstanceList.get_by_host',
                    return_value=[inst]), \
            mock.patch('nova.context.get_admin_context',
                       return_value='admin'), \
            mock.patch.object(driver.compute_utils,
                              'add_instance_fault_from_exc') as fault:
        drv._discard_interrupted_saves('compute1')
    assert privileged.discard_managed_save.call_args_list == [
        mock.call('instance-00000001'), mock.call('instance-0000dead')]
    domain.managedSaveRemove.assert_called_once_with(0)
    assert inst.vm_state == 'error'
    assert inst.task_state is None
    inst.save.assert_called_once_with()
    assert 'did not finish scrubbing its memory image' in \
        fault.call_args[0][2].format_message()


def test_start_clears_a_record_without_a_save(drv, privileged):
    # The suspend was rolled back (libvirt restored the guest and deleted
    # the file) but the record could not be cleared.
    privileged.pending_managed_saves.return_value = ['instance-00000001']
    privileged.discard_managed_save.return_value = False
    inst = mock.Mock(uuid=fakes.INSTANCE_UUID, vm_state='active')
    inst.name = 'instance-00000001'
    drv._host = mock.Mock()
    domain = drv._host.get_guest.return_value._domain
    domain.hasManagedSaveImage.return_value = False
    objects.register_all()
    with mock.patch('nova.objects.InstanceList.get_by_host',
                    return_value=[inst]), \
            mock.patch('nova.context.get_admin_context'), \
            mock.patch.object(driver.compute_utils,
                              'add_instance_fault_from_exc') as fault:
        drv._discard_interrupted_saves('compute1')
    privileged.discard_managed_save.assert_called_once_with(
        'instance-00000001')
    assert fault.call_count == 0
    assert inst.vm_state == 'active'
    assert inst.save.call_count == 0


def test_start_refuses_an_unsupported_nova(drv):
    with mock.patch.object(driver.nova_support, '_nova_version',
                           return_value='33.1.0'), \
            mock.patch.object(libvirt_driver.LibvirtDriver,
                              'init_host') as up:
        with pytest.raises(driver.nova_support.UnsupportedNova):
            drv.init_host('compute1')
    assert up.call_count == 0


def test_managed_save_path(drv, override):
    override('managed_save_dir', '/srv/libvirt/save')
    assert drv.managed_save_path(fakes.instance(name='instance-0000002a')) \
        == '/srv/libvirt/save/instance-0000002a.save'


def moving(source, dest):
    objects.register_all()
    migration = mock.Mock(source_compute=source, dest_compute=dest)
    return mock.patch('nova.objects.Migration.get_by_id',
                      return_value=migration)


@pytest.fixture
def sparc_hosts():
    """Hosts that report the trait; every other host does not."""
    hosts = {'compute1', 'compute2'}
    with mock.patch.object(driver.host_traits, 'runs_sparc_nova',
                           side_effect=lambda ctx, host: host in hosts):
        yield hosts


@pytest.fixture
def this_host(override):
    conf.CONF.set_override('host', 'compute1')
    yield 'compute1'
    conf.CONF.clear_override('host')


@pytest.mark.parametrize('source, dest, refused', [
    ('compute1', 'compute2', False), ('compute1', 'compute1', False),
    ('compute1', 'plain3', True)])
def test_cold_migration(drv, this_host, sparc_hosts, source, dest,
                        refused):
    inst = fakes.instance(metadata=POLICY)
    inst.migration_context = mock.Mock(migration_id=7)
    with moving(source, dest), mock.patch.object(
            libvirt_driver.LibvirtDriver,
            'migrate_disk_and_power_off') as up:
        if refused:
            with pytest.raises(nova_exception.InstanceFaultRollback) as e:
                drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.3',
                                               inst.flavor, [])
            assert e.value.inner_exception.format_message() == (
                'Migration to another host of instance %s is refused by '
                'its privacy policy: host plain3 does not run sparc-nova '
                '(no trait CUSTOM_SPARC_NOVA), so its checkpoints would '
                'not be scrubbed' % inst.uuid)
            assert up.call_count == 0
        else:
            drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.2',
                                           inst.flavor, [])
            assert up.call_count == 1


def test_cold_migration_refused_by_configuration(drv, override, this_host,
                                                 sparc_hosts):
    override('refuse_cold_migration', True)
    inst = fakes.instance(metadata=POLICY)
    inst.migration_context = mock.Mock(migration_id=7)
    with moving('compute1', 'compute2'), mock.patch.object(
            libvirt_driver.LibvirtDriver,
            'migrate_disk_and_power_off') as up:
        with pytest.raises(nova_exception.InstanceFaultRollback):
            drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.2',
                                           inst.flavor, [])
        # A resize on this host copies nothing off it.
        with moving('compute1', 'compute1'):
            drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.1',
                                           inst.flavor, [])
    assert up.call_count == 1


@pytest.mark.parametrize('new_specs, refused', [
    ({}, True),
    ({'sparc:exclude_paths': '/other/**'}, True),
    ({'sparc:exclude_paths': '/secret/**', 'sparc:follow_ipc': 'true'},
     False),
    ({'sparc:exclude_paths': '/secret/**', 'hw:cpu_policy': 'dedicated'},
     False)])
def test_resize_keeps_the_operators_specs(drv, this_host, sparc_hosts,
                                          new_specs, refused):
    inst = fakes.instance(extra_specs={'sparc:exclude_paths': '/secret/**',
                                       'hw:mem_page_size': 'large'})
    inst.migration_context = mock.Mock(migration_id=7)
    new = fakes.flavor(new_specs, name='m1.big')
    with moving('compute1', 'compute1'), mock.patch.object(
            libvirt_driver.LibvirtDriver,
            'migrate_disk_and_power_off') as up:
        if refused:
            with pytest.raises(nova_exception.InstanceFaultRollback) as e:
                drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.1',
                                               new, [])
            assert e.value.inner_exception.format_message() == (
                "Resize of instance %s is refused by its privacy policy: "
                "flavor m1.big drops or changes the operator's "
                "sparc:exclude_paths" % inst.uuid)
        else:
            drv.migrate_disk_and_power_off('ctx', inst, '10.0.0.1', new,
                                           [])
    assert up.call_count == (0 if refused else 1)


@pytest.fixture
def native_tls():
    conf.CONF.set_override('live_migration_with_native_tls', True,
                           group='libvirt')
    yield
    conf.CONF.clear_override('live_migration_with_native_tls',
                             group='libvirt')


def test_live_migration_needs_native_tls(drv, override):
    inst = fakes.instance(metadata=POLICY)
    with mock.patch.object(libvirt_driver.LibvirtDriver,
                           'check_can_live_migrate_source') as up:
        with pytest.raises(nova_exception.MigrationPreCheckError) as e:
            drv.check_can_live_migrate_source('ctx', inst, 'data')
        assert 'is refused by its privacy policy: its memory would cross ' \
               'the network unencrypted ([libvirt] ' \
               'live_migration_with_native_tls is off)' \
               in e.value.format_message()
        # Without a policy there is nothing to protect.
        drv.check_can_live_migrate_source('ctx', fakes.instance(), 'data')
    up.assert_called_once_with('ctx', mock.ANY, 'data',
                               block_device_info=None)


def test_live_migration_pre_check_with_tls(drv, override, native_tls):
    inst = fakes.instance(metadata=POLICY)
    with mock.patch.object(libvirt_driver.LibvirtDriver,
                           'check_can_live_migrate_source') as up:
        drv.check_can_live_migrate_source('ctx', inst, 'data')
        override('refuse_live_migration', True)
        with pytest.raises(nova_exception.MigrationPreCheckError) as e:
            drv.check_can_live_migrate_source('ctx', inst, 'data')
    assert '[sparc] refuse_live_migration is set' in \
        e.value.format_message()
    assert up.call_count == 1


@pytest.mark.parametrize('dest, refused', [('compute2', False),
                                           ('plain3', True)])
def test_live_migration_destination(drv, native_tls, sparc_hosts, dest,
                                    refused):
    inst = fakes.instance(metadata=POLICY)
    recover = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver,
                           'live_migration') as up, \
            mock.patch.object(driver.compute_utils,
                              'add_instance_fault_from_exc') as fault:
        drv.live_migration('ctx', inst, dest, 'post', recover,
                           migrate_data='data')
    if refused:
        assert up.call_count == 0
        recover.assert_called_once_with('ctx', inst, dest, 'data',
                                        migration_status='error')
        assert 'host plain3 does not run sparc-nova' in \
            fault.call_args[0][2].format_message()
    else:
        assert recover.call_count == 0
        up.assert_called_once_with('ctx', inst, dest, 'post', recover,
                                   block_migration=False,
                                   migrate_data='data')


def test_live_migration_with_invalid_policy_refused(drv):
    inst = fakes.instance(metadata={'sparc:suspend': 'never'})
    with pytest.raises(nova_exception.MigrationPreCheckError) as e:
        drv.check_can_live_migrate_source('ctx', inst, 'data')
    assert 'Invalid privacy policy' in e.value.format_message()


def test_crash_dump_refused_with_a_policy(drv):
    with mock.patch.object(libvirt_driver.LibvirtDriver,
                           'trigger_crash_dump') as up:
        with pytest.raises(virt_exception.SparcOperationRefused):
            drv.trigger_crash_dump(fakes.instance(metadata=POLICY))
        with pytest.raises(virt_exception.SparcPolicyInvalid):
            drv.trigger_crash_dump(fakes.instance(
                metadata={'sparc:suspend': 'never'}))
        assert up.call_count == 0
        drv.trigger_crash_dump(fakes.instance())
    assert up.call_count == 1


def test_provider_tree_gets_the_trait(drv):
    tree = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver,
                           'update_provider_tree') as up:
        drv.update_provider_tree(tree, 'node1')
    up.assert_called_once_with(tree, 'node1', allocations=None)
    tree.add_traits.assert_called_once_with('node1', 'CUSTOM_SPARC_NOVA')


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


def scrub_fails_after_the_save(inst):
    """A Scrubber.managed_save that saves, then fails."""
    def scrub(*a, save):
        save()
        raise virt_exception.SparcScrubFailed(
            what='memory image', instance_uuid=inst.uuid, reason='x')
    return scrub


def test_failed_rollback_removes_the_unscrubbed_managed_save(drv):
    inst = fakes.instance(metadata=POLICY)
    drv._scrubber.managed_save.side_effect = scrub_fails_after_the_save(inst)
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
    drv._scrubber.managed_save.side_effect = scrub_fails_after_the_save(inst)
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


def test_scrub_refused_before_the_save_restores_nothing(drv, privileged):
    inst = fakes.instance(metadata=POLICY)
    drv._scrubber.managed_save.side_effect = virt_exception.SparcScrubFailed(
        what='memory image', instance_uuid=inst.uuid, reason='refused')
    drv._host = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend') as up, \
            mock.patch.object(libvirt_driver.LibvirtDriver,
                              '_resume_guest_after_snapshot') as resume:
        with pytest.raises(nova_exception.InstanceFaultRollback):
            drv.suspend('ctx', inst)
    assert up.call_count == 0 and resume.call_count == 0
    privileged.end_managed_save.assert_called_once_with(inst.name)


def test_failed_save_is_raised_and_the_record_cleared(drv, privileged):
    inst = fakes.instance(metadata=POLICY)
    drv._scrubber.managed_save.side_effect = lambda *a, save: save()
    drv._host = mock.Mock()
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'suspend',
                           side_effect=RuntimeError('libvirt: no space')), \
            mock.patch.object(libvirt_driver.LibvirtDriver,
                              '_resume_guest_after_snapshot') as resume:
        with pytest.raises(RuntimeError, match='no space'):
            drv.suspend('ctx', inst)
    assert resume.call_count == 0
    privileged.end_managed_save.assert_called_once_with(inst.name)
