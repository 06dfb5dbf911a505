"""SparcLibvirtDriver: Nova's libvirt driver with privacy policies.

Enable it on a compute node with::

    [DEFAULT]
    compute_driver = sparc_libvirt.SparcLibvirtDriver

(Nova loads ``nova.virt.<compute_driver>``; sparc-nova installs the module
``nova/virt/sparc_libvirt`` that points here.)

What it changes, for instances whose policy excludes something
(see :mod:`sparc_nova.policy`); every other instance is handled exactly as
by ``LibvirtDriver``:

- ``snapshot()`` (createImage, backup, shelve): the disk image is scrubbed
  before it reaches Glance, and the image records the scrub
  (``sparc_scrubbed``, ``sparc_policy_digest``, ``sparc_scrub_summary``).
  rbd direct snapshots are turned off for these instances. A snapshot
  taken for a resize across cells is refused.
- ``suspend()``: the managed-save file is scrubbed in place by the
  privileged daemon; resume restores a guest whose excluded processes die
  at once. ``sparc:suspend=refuse`` refuses the suspend.
- live migration, and cold migration or resize to another host, are
  refused (configurable): their copies cannot be scrubbed.
- A scrub that fails leaves nothing unscrubbed behind: the snapshot is
  not uploaded (Nova deletes the image), a suspend is rolled back so the
  instance runs again, and the instance gets a fault. With
  ``sparc:on_failure=allow`` (where permitted) the checkpoint proceeds
  unscrubbed and says so.
"""

import os

from oslo_log import log as logging
from oslo_utils import excutils

from nova.compute import power_state
from nova.compute import task_states
from nova import exception as nova_exception
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver

from sparc_nova import conf
from sparc_nova import notifications
from sparc_nova import policy
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import instance_policy
from sparc_nova.virt.libvirt import snapshot as snapshot_hooks
from sparc_nova.virt import scrubber

LOG = logging.getLogger(__name__)
CONF = conf.CONF


class SparcLibvirtDriver(libvirt_driver.LibvirtDriver):
    """The libvirt driver, enforcing each instance's privacy policy on the
    checkpoints it makes.
    """

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only=read_only)
        self._snapshot_jobs = snapshot_hooks.SnapshotJobs()
        self._scrubber = scrubber.Scrubber(
            notifications.ScrubNotifier(host=CONF.host))
        self._image_api = snapshot_hooks.ScrubbingImageAPI(
            self._image_api, self._snapshot_jobs, self._scrub_snapshot_file)
        self.image_backend = snapshot_hooks.PolicyAwareImageBackend(
            self.image_backend, self._snapshot_jobs)

    # -- snapshots -------------------------------------------------------

    def snapshot(self, context, instance, image_id, update_task_state):
        effective = instance_policy.load(instance)
        if (effective.excludes_anything and
                instance.task_state == task_states.RESIZE_MIGRATING):
            raise nova_exception.InstanceFaultRollback(
                inner_exception=virt_exception.SparcOperationRefused(
                    operation='Resize across cells',
                    instance_uuid=instance.uuid,
                    reason='it uploads the disk to Glance, where it would '
                           'be either unscrubbed or stripped of the files '
                           'the resized server needs'))
        if not (effective.excludes_anything or
                instance_policy.has_scrub_records(instance)):
            return super().snapshot(context, instance, image_id,
                                    update_task_state)
        job = snapshot_hooks.SnapshotJob(context, instance, image_id,
                                         effective)
        with self._snapshot_jobs.running(job):
            return super().snapshot(context, instance, image_id,
                                    update_task_state)

    def _scrub_snapshot_file(self, job: snapshot_hooks.SnapshotJob,
                             path: str, disk_format: str
                             ) -> scrubber.Outcome:
        return self._scrubber.snapshot_file(
            job.context, job.instance, job.policy, job.image_id, path,
            disk_format)

    # -- suspend ---------------------------------------------------------

    def managed_save_path(self, instance) -> str:
        """The file libvirt's managedSave writes for ``instance``."""
        return os.path.join(CONF.sparc.managed_save_dir,
                            instance.name + '.save')

    def suspend(self, context, instance):
        if self._snapshot_jobs.snapshotting(instance.uuid):
            # A cold snapshot of a running guest saves its memory for the
            # time the disk is copied and restores it at once: that file
            # never leaves the host and is not a checkpoint to scrub.
            LOG.debug('Suspend for a cold snapshot: memory not scrubbed',
                      instance=instance)
            return super().suspend(context, instance)
        try:
            effective = instance_policy.load(instance)
        except virt_exception.SparcPolicyInvalid as e:
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        if not effective.excludes_anything:
            return super().suspend(context, instance)
        if effective.suspend == policy.SUSPEND_REFUSE:
            raise nova_exception.InstanceFaultRollback(
                inner_exception=virt_exception.SparcOperationRefused(
                    operation='Suspend', instance_uuid=instance.uuid,
                    reason='sparc:suspend=refuse'))
        super().suspend(context, instance)
        try:
            self._scrubber.managed_save(context, instance, effective,
                                        self.managed_save_path(instance))
        except virt_exception.SparcScrubFailed as e:
            self._undo_suspend(context, instance)
            raise nova_exception.InstanceFaultRollback(inner_exception=e)

    def _undo_suspend(self, context, instance) -> None:
        """Restart a guest just saved by :meth:`suspend`, from its
        (unchanged) managed-save file, which libvirt then deletes. If the
        guest cannot be restarted the file is removed and the error raised
        (the instance then goes to ERROR, its memory state lost).
        """
        LOG.info('Rolling back the suspend: restoring the guest',
                 instance=instance)
        guest = self._host.get_guest(instance)
        try:
            self._resume_guest_after_snapshot(
                context, False, power_state.RUNNING, instance, guest)
        except Exception:
            with excutils.save_and_reraise_exception():
                # Fail closed: an unscrubbed memory image must not stay
                # behind for a later start to restore.
                LOG.error('The guest could not be restored; removing its '
                          'unscrubbed managed save', instance=instance)
                guest._domain.managedSaveRemove(0)

    # -- moves -----------------------------------------------------------

    def _refuse_move_if_policed(self, instance, operation: str) -> None:
        effective = instance_policy.load(instance)
        if effective.excludes_anything:
            raise virt_exception.SparcOperationRefused(
                operation=operation, instance_uuid=instance.uuid,
                reason='its %s cannot be scrubbed' % (
                    'memory stream' if operation == 'Live migration'
                    else 'disk copy'))

    def _moving_to_another_host(self, context, instance, dest) -> bool:
        """Whether the resize or migration in progress leaves this host
        (a resize on the same host copies the disk locally).
        """
        migration_context = instance.migration_context
        if migration_context is not None:
            migration = objects.Migration.get_by_id(
                context, migration_context.migration_id)
            return migration.source_compute != migration.dest_compute
        return dest != self.get_host_ip_addr()

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        if CONF.sparc.refuse_live_migration:
            try:
                self._refuse_move_if_policed(instance, 'Live migration')
            except (virt_exception.SparcOperationRefused,
                    virt_exception.SparcPolicyInvalid) as e:
                # The conductor handles this exception type cleanly (the
                # instance stays active); it also crosses RPC intact.
                raise nova_exception.MigrationPreCheckError(
                    reason=e.format_message())
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data,
            block_device_info=block_device_info)

    def migrate_disk_and_power_off(self, context, instance, dest,
                                   flavor, network_info,
                                   block_device_info=None,
                                   timeout=0, retry_interval=0):
        if (CONF.sparc.refuse_cold_migration and
                self._moving_to_another_host(context, instance, dest)):
            try:
                self._refuse_move_if_policed(instance,
                                             'Migration to another host')
            except (virt_exception.SparcOperationRefused,
                    virt_exception.SparcPolicyInvalid) as e:
                raise nova_exception.InstanceFaultRollback(
                    inner_exception=e)
        return super().migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info,
            block_device_info=block_device_info, timeout=timeout,
            retry_interval=retry_interval)
