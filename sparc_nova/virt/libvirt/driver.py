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
  privileged daemon while libvirt writes it (the scrub overlaps
  ``managedSave``); resume restores a guest whose excluded processes die
  at once. ``sparc:suspend=refuse`` refuses the suspend.
  ``sparc:suspend=seal`` seals the managed save instead once libvirt has
  written it: what a scrub would zero is encrypted under a fresh key kept
  in the key manager (castellan, with the suspend request's context; its
  reference is the instance's system metadata ``sparc_seal_key_ref``),
  and ``resume()`` fetches the key with the resume request's context,
  unseals and restores a guest whose excluded processes go on. The
  suspend's instance action gets the event ``sparc-nova: sealed``. A key
  that cannot be fetched keeps the server SUSPENDED, unless ``[sparc]
  seal_fallback = kill`` (see :meth:`SparcLibvirtDriver.resume`).
  Whenever Nova drops the managed save (delete, hard reboot, shelve
  offload), its sealed pages and its secret go too (:meth:`cleanup`).
- ``trigger_crash_dump()`` is refused: the guest's kdump would write its
  memory, excluded processes included, to its disk.
- live migration, cold migration and resize are allowed only to hosts
  that run sparc-nova (trait ``CUSTOM_SPARC_NOVA``, reported by
  ``update_provider_tree``), live migration only over libvirt's native
  TLS; a resize to a flavor that drops the operator's ``sparc:`` extra
  specs is refused.
- ``init_host()`` refuses to start on a Nova whose internals the driver
  does not know (:mod:`.nova_support`), and deletes managed saves whose
  scrub a crash interrupted.
- A scrub that fails leaves nothing unscrubbed behind: the snapshot is
  not uploaded (Nova deletes the image), a suspend is rolled back so the
  instance runs again, and the instance gets a fault. With
  ``sparc:on_failure=allow`` (where permitted) the checkpoint proceeds
  unscrubbed and says so. A policed snapshot whose scrubbed bytes the
  driver did not see go to Glance is deleted and fails. Failures caused
  by the policy are also recorded as an event of the request's instance
  action, which project members can read (:mod:`..tenant_report`).
"""

import os
import time

from oslo_context import context as oslo_context
from oslo_log import log as logging
from oslo_utils import excutils

from nova.compute import power_state
from nova.compute import task_states
from nova.compute import utils as compute_utils
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver

from sparc_nova import conf
from sparc_nova import notifications
from sparc_nova import policy
from sparc_nova.privsep import checkpoint as privsep_checkpoint
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import host_traits
from sparc_nova.virt import instance_policy
from sparc_nova.virt.libvirt import nova_support
from sparc_nova.virt.libvirt import snapshot as snapshot_hooks
from sparc_nova.virt import scrubber
from sparc_nova.virt import seal_keys
from sparc_nova.virt import tenant_report

LOG = logging.getLogger(__name__)
CONF = conf.CONF

#: The task states of an instance being shelved (the snapshot's
#: update_task_state moves it through them).
SHELVING_STATES = (task_states.SHELVING,
                   task_states.SHELVING_IMAGE_PENDING_UPLOAD,
                   task_states.SHELVING_IMAGE_UPLOADING)

#: Errors that mean "the privacy policy made this fail": the project is
#: told why through its instance action log.
POLICY_ERRORS = (virt_exception.SparcPolicyInvalid,
                 virt_exception.SparcScrubFailed,
                 virt_exception.SparcOperationRefused)

#: The instance's system metadata key that holds the reference of the
#: key-manager secret that opens its sealed managed save.
SEAL_KEY_REF = 'sparc_seal_key_ref'
#: The event added to a suspend's instance action once it is sealed
#: (with the prefix: ``sparc-nova: sealed``).
SEALED_EVENT = 'sealed'


class SparcLibvirtDriver(libvirt_driver.LibvirtDriver):
    """The libvirt driver, enforcing each instance's privacy policy on the
    checkpoints it makes.
    """

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only=read_only)
        self._snapshot_jobs = snapshot_hooks.SnapshotJobs()
        self._scrubber = scrubber.Scrubber(
            notifications.ScrubNotifier(
                host=CONF.host,
                notification_format=CONF.notifications.notification_format,
                versioned_topics=tuple(
                    CONF.notifications.versioned_notifications_topics)))
        self._image_api = snapshot_hooks.ScrubbingImageAPI(
            self._image_api, self._snapshot_jobs, self._scrubber)
        self.image_backend = snapshot_hooks.PolicyAwareImageBackend(
            self.image_backend, self._snapshot_jobs)
        # castellan's key manager, built from nova.conf's [key_manager]
        # and [barbican] when a sealed suspend first needs it.
        self._seal_keys = seal_keys.SealKeys(CONF)

    # -- snapshots -------------------------------------------------------

    def snapshot(self, context, instance, image_id, update_task_state):
        shelving = instance.task_state in SHELVING_STATES
        # Shelve powers the guest off before the snapshot; this is its
        # power state from before (only a shelve is undone).
        original_power_state = instance.power_state if shelving else None
        try:
            effective = instance_policy.load(instance)
        except virt_exception.SparcPolicyInvalid as e:
            with excutils.save_and_reraise_exception():
                tenant_report.record(context, instance, e)
                if shelving:
                    self._undo_shelve(context, instance, image_id,
                                      original_power_state)
        if (effective.excludes_anything and
                instance.task_state == task_states.RESIZE_MIGRATING):
            refused = virt_exception.SparcOperationRefused(
                operation='Resize across cells',
                instance_uuid=instance.uuid,
                reason='it uploads the disk to Glance, where it would be '
                       'either unscrubbed or stripped of the files the '
                       'resized server needs')
            tenant_report.record(context, instance, refused)
            raise nova_exception.InstanceFaultRollback(
                inner_exception=refused)
        if not (effective.excludes_anything or
                instance_policy.has_scrub_records(instance)):
            return super().snapshot(context, instance, image_id,
                                    update_task_state)
        job = snapshot_hooks.SnapshotJob(context, instance, image_id,
                                         effective)
        try:
            with self._snapshot_jobs.running(job):
                super().snapshot(context, instance, image_id,
                                 update_task_state)
                self._check_upload(context, job)
        except Exception as e:
            with excutils.save_and_reraise_exception():
                if isinstance(e, POLICY_ERRORS):
                    tenant_report.record(context, instance, e)
                if shelving and effective.excludes_anything:
                    self._undo_shelve(context, instance, image_id,
                                      original_power_state)

    def _check_upload(self, context, job: snapshot_hooks.SnapshotJob
                      ) -> None:
        """Fail closed if Nova uploaded a policed snapshot by a path the
        scrub did not see (a Nova that changed under the driver): the
        image is deleted and :class:`SparcScrubFailed` raised.
        """
        if not job.policy.excludes_anything or job.uploaded:
            return
        LOG.error('Snapshot %s was not uploaded through the scrub; '
                  'deleting the image', job.image_id, instance=job.instance)
        self._delete_image_quietly(context, job.image_id)
        raise virt_exception.SparcScrubFailed(
            what='snapshot %s' % job.image_id,
            instance_uuid=job.instance.uuid,
            reason='Nova did not upload it through the scrub (is this '
                   'Nova supported?); the image was deleted')

    def _delete_image_quietly(self, context, image_id: str) -> None:
        try:
            self._image_api.delete(context, image_id)
        except nova_exception.ImageNotFound:
            pass
        except Exception as e:
            LOG.error('Could not delete image %(image)s: %(error)s',
                      {'image': image_id, 'error': e})

    def _undo_shelve(self, context, instance, image_id: str,
                     original_power_state: int) -> None:
        """After a failed shelve snapshot: delete the image the API
        created for it (Nova leaves it queued) and start the guest again
        if it ran before the shelve powered it off.
        """
        LOG.info('Shelve failed: deleting image %s and restoring the '
                 'server', image_id, instance=instance)
        self._delete_image_quietly(context, image_id)
        try:
            guest = self._host.get_guest(instance)
            if guest.get_power_state(self._host) != power_state.RUNNING:
                self._resume_guest_after_snapshot(
                    context, False, original_power_state, instance, guest)
        except Exception as e:
            LOG.error('Could not start the guest again after the failed '
                      'shelve: %s', e, instance=instance)

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
            tenant_report.record(context, instance, e)
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        if not effective.excludes_anything:
            return super().suspend(context, instance)
        if effective.suspend == policy.SUSPEND_REFUSE:
            refused = virt_exception.SparcOperationRefused(
                operation='Suspend', instance_uuid=instance.uuid,
                reason='sparc:suspend=refuse')
            tenant_report.record(context, instance, refused)
            raise nova_exception.InstanceFaultRollback(
                inner_exception=refused)
        if effective.suspend == policy.SUSPEND_SEAL:
            return self._sealed_suspend(context, instance, effective)
        # Wall time of the steps around the scrubbed save, s (logged).
        started = time.monotonic()
        # Nothing saved if this fails: the guest runs on.
        self._begin_save_or_rollback(context, instance)
        record = time.monotonic() - started
        # The privileged daemon scrubs the managed save while libvirt
        # writes it; the scrub's verdict comes once managedSave returned.
        saved = []

        def save():
            super(SparcLibvirtDriver, self).suspend(context, instance)
            saved.append(True)
        try:
            self._scrubber.managed_save(context, instance, effective,
                                        self.managed_save_path(instance),
                                        save=save)
        except virt_exception.SparcScrubFailed as e:
            try:
                if saved:
                    self._undo_suspend(context, instance)
            finally:
                self._forget_managed_save(instance)
            tenant_report.record(context, instance, e)
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        except Exception:
            # The save failed: libvirt kept the guest, nothing was saved.
            with excutils.save_and_reraise_exception():
                self._forget_managed_save(instance)
        # Scrubbed (or kept unscrubbed as the policy allows).
        forget_started = time.monotonic()
        self._forget_managed_save(instance)
        LOG.info('Suspend with a scrubbed memory image: %(total).3f s in '
                 'the driver, of which %(record).3f s recording the '
                 'managed save and %(forget).3f s clearing the record',
                 {'total': time.monotonic() - started, 'record': record,
                  'forget': time.monotonic() - forget_started},
                 instance=instance)

    # -- sealed suspend ----------------------------------------------------

    def _begin_save_or_rollback(self, context, instance) -> None:
        """Durable record, before libvirt writes the memory image, that it
        is not scrubbed (or sealed) yet: a crash from here on leaves the
        record for init_host to find (_discard_interrupted_saves).

        :raises InstanceFaultRollback: the record could not be written.
        """
        try:
            privsep_checkpoint.begin_managed_save(instance.name)
        except Exception as e:
            failed = virt_exception.SparcScrubFailed(
                what='memory image', instance_uuid=instance.uuid,
                reason='the privileged daemon could not record the '
                       'managed save (%s)' % e)
            tenant_report.record(context, instance, failed)
            raise nova_exception.InstanceFaultRollback(
                inner_exception=failed)

    def _sealed_suspend(self, context, instance, effective) -> None:
        """``suspend`` with ``sparc:suspend=seal``.

        A fresh key is stored in the key manager with the suspend
        request's context (the secret is the server's project's) and its
        reference kept in the instance's system metadata
        (:data:`SEAL_KEY_REF`). libvirt's ``managedSave`` writes the
        memory image, then the privileged daemon seals it (the key crosses
        only the privsep call); the seal starts once ``managedSave``
        returned (the overlapped follower of the scrub is not used).

        Fails closed: when any step fails, the suspend is rolled back
        (the guest restored from the image libvirt wrote, which it then
        deletes), the secret deleted and the reference dropped; nothing
        unsealed stays on disk.
        """
        try:
            ref, key = self._seal_keys.create(context, instance)
        except virt_exception.SparcSealKeyError as e:
            tenant_report.record(context, instance, e)
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        # Kept before anything is saved: whatever happens next, a later
        # cleanup finds the secret to delete.
        instance.system_metadata[SEAL_KEY_REF] = ref
        instance.save()
        try:
            self._begin_save_or_rollback(context, instance)
        except Exception:
            with excutils.save_and_reraise_exception():
                self._drop_seal_key(context, instance, ref)
        path = self.managed_save_path(instance)
        try:
            super().suspend(context, instance)
        except Exception:
            # libvirt kept the guest, nothing was saved.
            with excutils.save_and_reraise_exception():
                self._forget_managed_save(instance)
                self._drop_seal_key(context, instance, ref)
        try:
            outcome = self._scrubber.seal_managed_save(
                context, instance, effective, path, key)
        except virt_exception.SparcScrubFailed as e:
            try:
                self._undo_suspend(context, instance)
            finally:
                self._forget_managed_save(instance)
                self._drop_seal_key(context, instance, ref)
            tenant_report.record(context, instance, e)
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        finally:
            del key
        self._forget_managed_save(instance)
        if not outcome.scrubbed:
            # Kept as libvirt wrote it, as the policy allows: nothing to
            # unseal on resume.
            self._drop_seal_key(context, instance, ref)
            return
        tenant_report.record_success(context, instance, SEALED_EVENT)

    def _drop_seal_key(self, context, instance, ref: str) -> None:
        """Delete secret ``ref`` (best effort, logged) and forget it."""
        self._seal_keys.delete_quietly(context, instance, ref)
        if instance.system_metadata.get(SEAL_KEY_REF) == ref:
            del instance.system_metadata[SEAL_KEY_REF]
            try:
                instance.save()
            except Exception as e:
                LOG.warning('Could not forget the sealing key reference: '
                            '%s', e, instance=instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        """Resume; a sealed managed save is unsealed first.

        The key is fetched with the resume request's context; the daemon
        checks every tag before it writes anything back; the secret is
        deleted once the guest runs. A wrong key or altered sealed pages
        fail the resume and change nothing (the server stays SUSPENDED).
        A key that cannot be fetched (deleted, forbidden, key manager
        down) fails the resume the same way, unless ``[sparc]
        seal_fallback = kill``: the excluded processes are then killed on
        restore, as after a scrub, the sealed pages deleted, and the
        resume goes on (recorded in the instance action).
        """
        ref = instance.system_metadata.get(SEAL_KEY_REF)
        # Asked even without a reference: sealed pages whose key reference
        # was lost must not restore as a zeroed, unarmed checkpoint.
        key = self._unseal(context, instance, ref)
        try:
            super().resume(context, instance, network_info,
                           block_device_info=block_device_info,
                           share_info=share_info)
        except Exception:
            with excutils.save_and_reraise_exception():
                if key is not None:
                    self._reseal(context, instance, ref, key)
        if ref:
            self._drop_seal_key(context, instance, ref)

    def _unseal(self, context, instance, ref: str | None) -> bytes | None:
        """Unseal the managed save of ``instance`` before its resume; the
        key, or None when there was nothing to unseal (or the kill
        fallback ran).

        :raises InstanceFaultRollback: the resume must not go on; the
            managed save and its sealed pages are unchanged.
        """
        try:
            state = privsep_checkpoint.sealed_pages_state(instance.name)
        except Exception as e:
            failed = virt_exception.SparcSealFailed(
                operation='Unseal', instance_uuid=instance.uuid,
                outcome='nothing changed, the server stays suspended',
                reason='the privileged daemon could not look at the '
                       'managed save (%s)' % scrubber.failure_reason(e))
            tenant_report.record(context, instance, failed)
            raise nova_exception.InstanceFaultRollback(
                inner_exception=failed)
        if not state['sealed']:
            # Unsealed by an earlier resume that failed later on.
            LOG.info('No sealed pages next to the managed save: nothing '
                     'to unseal', instance=instance)
            return None
        try:
            if not ref:
                raise virt_exception.SparcSealKeyError(
                    instance_uuid=instance.uuid, action='found',
                    reason='the managed save is sealed but the instance '
                           'keeps no reference to its key (system '
                           'metadata %s)' % SEAL_KEY_REF)
            key = self._seal_keys.fetch(context, instance, ref)
        except virt_exception.SparcSealKeyError as e:
            if CONF.sparc.seal_fallback == 'kill':
                self._resume_without_sealed(context, instance, e)
                return None
            LOG.error('%s; the server stays suspended', e.format_message(),
                      instance=instance)
            tenant_report.record(context, instance, e)
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        try:
            result = privsep_checkpoint.unseal_managed_save(
                path=self.managed_save_path(instance),
                instance_name=instance.name, key=key)
        except Exception as e:
            failed = virt_exception.SparcSealFailed(
                operation='Unseal', instance_uuid=instance.uuid,
                outcome='nothing changed, the server stays suspended',
                reason=scrubber.failure_reason(e))
            LOG.error('%s', failed.format_message(), instance=instance)
            tenant_report.record(context, instance, failed)
            raise nova_exception.InstanceFaultRollback(
                inner_exception=failed)
        LOG.info('Managed save unsealed: %(frames)s frames, %(ranges)s '
                 'byte ranges put back',
                 {'frames': result.get('frames_restored'),
                  'ranges': result.get('byte_ranges_restored')},
                 instance=instance)
        return key

    def _resume_without_sealed(self, context, instance,
                               error: virt_exception.SparcSealKeyError
                               ) -> None:
        """The kill fallback (``[sparc] seal_fallback = kill``): the
        sealed processes are killed on restore, the sealed pages deleted;
        the instance action records why.

        :raises InstanceFaultRollback: the fallback failed; the sealed
            pages are kept.
        """
        try:
            effective = instance_policy.load(instance)
            privsep_checkpoint.kill_sealed_managed_save(
                path=self.managed_save_path(instance),
                instance_name=instance.name,
                selectors=list(effective.exclude_processes),
                exclude_paths=list(effective.path_rules),
                follow_ipc=effective.follow_ipc,
                scrub_free_memory=effective.scrub_free_memory)
        except Exception as e:
            reason = e.format_message() if isinstance(
                e, nova_exception.NovaException) else \
                scrubber.failure_reason(e)
            failed = virt_exception.SparcSealFailed(
                operation='Kill fallback', instance_uuid=instance.uuid,
                outcome='the server stays suspended',
                reason='the sealing key could not be fetched (%s), and '
                       'killing the sealed processes instead failed: %s'
                       % (error.kwargs.get('reason'), reason))
            LOG.error('%s', failed.format_message(), instance=instance)
            tenant_report.record(context, instance, failed)
            raise nova_exception.InstanceFaultRollback(
                inner_exception=failed)
        degraded = virt_exception.SparcSealFallbackKill(
            reason=error.kwargs.get('reason', error.format_message()))
        LOG.warning('%s', degraded.format_message(), instance=instance)
        tenant_report.record(context, instance, degraded)

    def _reseal(self, context, instance, ref: str, key: bytes) -> None:
        """After a resume that failed once its managed save was unsealed:
        seal it again with the same key, so that nothing unsealed stays
        on disk; if that fails, delete the managed save (fail closed: the
        guest's memory state is lost, its disks are intact).
        """
        try:
            if not privsep_checkpoint.sealed_pages_state(
                    instance.name)['managed_save']:
                return
            effective = instance_policy.load(instance)
            self._scrubber.seal_managed_save(
                context, instance, effective,
                self.managed_save_path(instance), key)
            return
        except Exception as e:
            LOG.error('The unsealed managed save could not be sealed again '
                      '(%s); deleting it', e, instance=instance)
        self._remove_managed_save(instance)
        try:
            privsep_checkpoint.discard_managed_save(instance.name)
        except Exception as e:
            LOG.error('Could not delete the unsealed managed save: %s', e,
                      instance=instance)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        super().cleanup(context, instance, network_info,
                        block_device_info=block_device_info,
                        destroy_disks=destroy_disks,
                        migrate_data=migrate_data,
                        destroy_vifs=destroy_vifs,
                        destroy_secrets=destroy_secrets)
        ref = instance.system_metadata.get(SEAL_KEY_REF)
        if ref:
            self._discard_seal(context, instance, ref)

    def _discard_seal(self, context, instance, ref: str) -> None:
        """Once Nova dropped a sealed managed save (libvirt deletes it
        when the domain is undefined: delete, hard reboot, shelve
        offload), delete its sealed pages and its secret (best effort,
        logged).
        """
        if self._has_managed_save(instance):
            return
        try:
            if privsep_checkpoint.discard_sealed_pages(instance.name):
                LOG.info('Sealed pages of the dropped managed save '
                         'deleted', instance=instance)
        except Exception as e:
            LOG.error('Could not delete the sealed pages of the dropped '
                      'managed save: %s', e, instance=instance)
        self._drop_seal_key(context, instance, ref)

    def _has_managed_save(self, instance) -> bool:
        """Whether libvirt holds a managed save of ``instance`` (True when
        it cannot tell: its sealed pages are then kept).
        """
        try:
            return bool(self._host.get_guest(instance)._domain
                        .hasManagedSaveImage(0))
        except nova_exception.InstanceNotFound:
            return False
        except Exception as e:
            LOG.warning('libvirt could not tell whether a managed save is '
                        'kept: %s', e, instance=instance)
            return True

    @staticmethod
    def _forget_managed_save(instance) -> None:
        try:
            privsep_checkpoint.end_managed_save(instance.name)
        except Exception as e:
            # The record stays: the next start deletes the managed save.
            LOG.error('Could not clear the record of the managed save: %s',
                      e, instance=instance)

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

    # -- start -----------------------------------------------------------

    def init_host(self, host):
        # Before anything else: on a Nova whose internals moved, the
        # policy could silently stop applying.
        nova_support.check()
        super().init_host(host)
        self._sweep_leftovers()
        self._discard_interrupted_saves(host)

    def _sweep_leftovers(self) -> None:
        """Finish the in-place scrubs a crash interrupted (from their
        authenticated journals) and remove what killed scrubs left in the
        managed-save and work directories (decompressed memory streams,
        rewrites not yet renamed): no unscrubbed byte stays on disk.
        """
        for report in privsep_checkpoint.sweep_leftovers():
            if report.get('replayed') or report.get('removed') or \
                    report.get('refused'):
                LOG.warning('Leftovers of interrupted scrubs in %s: %d '
                            'finished, %d removed, %d journals refused',
                            report.get('directory'),
                            len(report.get('replayed') or ()),
                            len(report.get('removed') or ()),
                            len(report.get('refused') or ()))

    def _discard_interrupted_saves(self, host: str) -> None:
        """Delete the managed saves whose scrub did not complete (their
        record survived a crash of nova-compute or of the privileged
        daemon, or the journal of their in-place scrub was not replayed:
        one an earlier release wrote): they may hold unscrubbed memory.
        Their instances go to ERROR with a fault that says what
        happened; a hard reboot starts them again from their disks.
        """
        names = privsep_checkpoint.pending_managed_saves()
        if not names:
            return
        context = nova_context.get_admin_context()
        instances = {i.name: i for i in objects.InstanceList.get_by_host(
            context, host)}
        for name in names:
            instance = instances.get(name)
            removed = instance is not None and \
                self._remove_managed_save(instance)
            # Whatever libvirt left (or a file of a domain it does not
            # know), and the record.
            removed = privsep_checkpoint.discard_managed_save(name) or \
                removed
            if not removed:
                # Rolled back before the crash: the guest runs on.
                LOG.info('Record of an unscrubbed managed save of %s '
                         'without the file: cleared', name)
                continue
            LOG.warning('The managed save of %s was not scrubbed when '
                        'nova-compute stopped: deleted it', name,
                        instance=instance)
            if instance is not None:
                self._report_discarded_save(context, instance)

    def _remove_managed_save(self, instance) -> bool:
        """Tell libvirt to drop the instance's managed save (it also
        deletes the file), if libvirt knows the domain; whether it had
        one.
        """
        try:
            domain = self._host.get_guest(instance)._domain
            if domain.hasManagedSaveImage(0):
                domain.managedSaveRemove(0)
                return True
        except nova_exception.InstanceNotFound:
            pass
        except Exception as e:
            LOG.warning('libvirt could not remove the managed save: %s', e,
                        instance=instance)
        return False

    @staticmethod
    def _report_discarded_save(context, instance) -> None:
        error = virt_exception.SparcUnscrubbedSaveDiscarded(
            instance_uuid=instance.uuid)
        compute_utils.add_instance_fault_from_exc(context, instance, error)
        instance.vm_state = vm_states.ERROR
        instance.task_state = None
        instance.power_state = power_state.SHUTDOWN
        instance.save()

    def update_provider_tree(self, provider_tree, nodename,
                             allocations=None):
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        provider_tree.add_traits(nodename, host_traits.TRAIT)

    # -- crash dumps -----------------------------------------------------

    def trigger_crash_dump(self, instance):
        # The API refuses it first (sparc-nova's nova-api middleware);
        # this holds even if that is not deployed.
        try:
            refused = None
            if instance_policy.load(instance).excludes_anything:
                refused = virt_exception.SparcOperationRefused(
                    operation='Crash dump', instance_uuid=instance.uuid,
                    reason="the guest's kdump would write its memory, "
                           "excluded processes included, to its disk")
        except virt_exception.SparcPolicyInvalid as e:
            refused = e
        if refused is not None:
            # Nova passes no context here; the request's is the
            # thread's current one.
            context = oslo_context.get_current()
            if context is not None:
                tenant_report.record(context, instance, refused)
            raise refused
        return super().trigger_crash_dump(instance)

    # -- moves -----------------------------------------------------------

    def _refused_move(self, context, instance, operation: str,
                      dest_host: str | None = None
                      ) -> virt_exception.SparcOperationRefused | None:
        """Why moving ``instance`` (to ``dest_host``, when known) is
        refused, or None when it may go.

        :raises SparcPolicyInvalid: the instance's policy is invalid
        """
        effective = instance_policy.load(instance)
        if not effective.excludes_anything:
            return None
        live = operation == 'Live migration'
        reason = None
        if CONF.sparc.refuse_live_migration if live else \
                CONF.sparc.refuse_cold_migration:
            reason = ('[sparc] refuse_%s_migration is set on this host'
                      % ('live' if live else 'cold'))
        elif live and not CONF.libvirt.live_migration_with_native_tls:
            reason = ('its memory would cross the network unencrypted '
                      '([libvirt] live_migration_with_native_tls is off)')
        elif dest_host is not None and not host_traits.runs_sparc_nova(
                context, dest_host):
            reason = ('host %s does not run sparc-nova (no trait %s), so '
                      'its checkpoints would not be scrubbed'
                      % (dest_host, host_traits.TRAIT))
        if reason is None:
            return None
        return virt_exception.SparcOperationRefused(
            operation=operation, instance_uuid=instance.uuid, reason=reason)

    def _migration_hosts(self, context, instance, dest
                         ) -> tuple[str, str | None]:
        """``(source, destination)`` hosts of the resize or cold
        migration in progress (``dest`` is only the destination's
        address); the destination is None when it cannot be told.
        """
        migration_context = instance.migration_context
        if migration_context is not None:
            migration = objects.Migration.get_by_id(
                context, migration_context.migration_id)
            return migration.source_compute, migration.dest_compute
        if dest == self.get_host_ip_addr():
            return instance.host, instance.host
        return instance.host, None

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        try:
            refused = self._refused_move(context, instance,
                                         'Live migration')
        except virt_exception.SparcPolicyInvalid as e:
            refused = e
        if refused is not None:
            tenant_report.record(context, instance, refused)
            # The conductor handles this exception type cleanly (the
            # instance stays active); it also crosses RPC intact.
            raise nova_exception.MigrationPreCheckError(
                reason=refused.format_message())
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data,
            block_device_info=block_device_info)

    def live_migration(self, context, instance, dest,
                       post_method, recover_method, block_migration=False,
                       migrate_data=None):
        # The destination host is known only here, after the checks:
        # refusing rolls the migration back (the instance stays here).
        try:
            refused = self._refused_move(context, instance,
                                         'Live migration', dest_host=dest)
        except virt_exception.SparcPolicyInvalid as e:
            refused = e
        if refused is not None:
            LOG.error('%s', refused.format_message(), instance=instance)
            compute_utils.add_instance_fault_from_exc(context, instance,
                                                      refused)
            tenant_report.record(context, instance, refused)
            recover_method(context, instance, dest, migrate_data,
                           migration_status='error')
            return
        return super().live_migration(
            context, instance, dest, post_method, recover_method,
            block_migration=block_migration, migrate_data=migrate_data)

    def migrate_disk_and_power_off(self, context, instance, dest,
                                   flavor, network_info,
                                   block_device_info=None,
                                   timeout=0, retry_interval=0):
        try:
            refused = self._refused_resize(context, instance, flavor)
            source, dest_host = self._migration_hosts(context, instance,
                                                      dest)
            if refused is None and dest_host != source:
                # An unknown destination has no trait: refused.
                refused = self._refused_move(
                    context, instance, 'Migration to another host',
                    dest_host=dest_host or dest)
        except virt_exception.SparcPolicyInvalid as e:
            refused = e
        if refused is not None:
            tenant_report.record(context, instance, refused)
            raise nova_exception.InstanceFaultRollback(
                inner_exception=refused)
        return super().migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info,
            block_device_info=block_device_info, timeout=timeout,
            retry_interval=retry_interval)

    @staticmethod
    def _refused_resize(context, instance, flavor
                        ) -> virt_exception.SparcOperationRefused | None:
        """A resize to ``flavor`` that drops or changes one of the
        operator's ``sparc:`` extra specs of the current flavor is refused
        (the operator's floor would no longer hold).
        """
        old = instance_policy.operator_specs(instance.flavor)
        new = instance_policy.operator_specs(flavor)
        dropped = sorted(key for key, value in old.items()
                         if new.get(key) != value)
        if not dropped:
            return None
        return virt_exception.SparcOperationRefused(
            operation='Resize', instance_uuid=instance.uuid,
            reason='flavor %s drops or changes the operator\'s %s'
                   % (flavor.name, ', '.join(dropped)))
