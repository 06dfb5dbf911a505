"""Scrubbing the checkpoints of an instance: the engines, the failure
policy, the notifications and the records left on Glance images.

One rule for every checkpoint: a scrub that fails for any reason raises
:class:`SparcScrubFailed` (the caller then keeps nothing unscrubbed),
unless the effective policy says ``on_failure=allow``, in which case the
checkpoint goes ahead unscrubbed and its records say so.
"""

import dataclasses
import os
import time

from oslo_log import log as logging

from sparc_nova import conf
from sparc_nova.engine import disk
from sparc_nova import exception
from sparc_nova.i18n import _
from sparc_nova.i18n import _P
from sparc_nova import notifications
from sparc_nova import policy
from sparc_nova import printable
from sparc_nova.privsep import checkpoint as privsep_checkpoint
from sparc_nova.virt import blocking
from sparc_nova.virt import exception as virt_exception

LOG = logging.getLogger(__name__)

#: Disk formats the disk engine reads and writes.
DISK_FORMATS = ('qcow2', 'raw')

#: Suffix of the scrubbed copy of a snapshot file, next to it.
SCRUBBED_SUFFIX = '.sparc'

SNAPSHOT = 'snapshot'
SUSPEND = 'suspend'


@dataclasses.dataclass
class Outcome:
    """What became of one checkpoint.

    ``path`` is the file that holds the checkpoint now (the scrubbed copy
    of a snapshot, or the original when it was not scrubbed).
    """

    scrubbed: bool
    summary: str
    digest: str
    path: str | None = None

    def image_properties(self) -> dict[str, str]:
        """The records sparc-nova leaves on a Glance image. No guest data
        and no file names: the summary counts, it does not list.
        """
        return {policy.SCRUBBED_PROPERTY: 'true' if self.scrubbed
                else 'false',
                policy.DIGEST_PROPERTY: self.digest,
                policy.SUMMARY_PROPERTY:
                    self.summary[:policy.MAX_VALUE_LENGTH]}


def no_policy_properties() -> dict[str, str]:
    """Records for a snapshot of an instance without a policy whose image
    carried records of an earlier scrub: they must not be inherited.
    """
    return Outcome(False, 'no privacy policy: not scrubbed', '',
                   ).image_properties()


def disk_rules(effective: policy.EffectivePolicy) -> list[str]:
    """The policy's rule list for the disk engine (every source in a
    scope of its own, see :attr:`policy.EffectivePolicy.path_rules`), or
    an empty list when it selects nothing (negations alone select
    nothing).
    """
    return list(effective.path_rules)


def disk_summary(report) -> str:
    """One line of counts from a disk ScrubReport: never a path. The
    words follow the counts ("1 path", "2 paths").
    """
    removed = len(report.removed)
    volumes = len(report.volumes)
    summary = '; '.join([
        _P('removed %(n)d path (%(bytes)d bytes) on %(volumes)s',
           'removed %(n)d paths (%(bytes)d bytes) on %(volumes)s',
           removed) % {'n': removed,
                       'bytes': sum(r.size for r in report.removed),
                       'volumes': _P('%d volume', '%d volumes',
                                     volumes) % volumes},
        _P('%(n)d canary, %(left)d left', '%(n)d canaries, %(left)d left',
           report.canaries) % {'n': report.canaries,
                               'left': report.residual},
        _('verified') if report.verified else _('NOT fully verified')])
    if report.unmatched_rules:
        unmatched = len(report.unmatched_rules)
        summary += '; ' + _P('%d rule matched nothing',
                             '%d rules matched nothing',
                             unmatched) % unmatched
    return summary


def failure_reason(error: Exception) -> str:
    """Why a scrub failed, for the log, the notification and the instance
    fault: a :class:`~sparc_nova.exception.SparcError`'s message (the
    engines keep guest paths and contents out of it), escaped
    (:func:`~sparc_nova.printable.printable`: guest strings cannot forge
    log lines or drive a terminal). Any other error is named by its type
    only: its message may quote anything (a guest path in an OSError);
    the traceback is logged at debug level.
    """
    if isinstance(error, exception.SparcError):
        return printable.printable(error, limit=2000)
    LOG.debug('Unexpected error of the scrub', exc_info=error)
    return 'unexpected %s (traceback in the debug log)' % (
        type(error).__name__)


class Scrubber:
    """Runs the engines for the driver, one checkpoint at a time."""

    def __init__(self, notifier: notifications.ScrubNotifier):
        self.notifier = notifier

    def _payload(self, instance, effective, operation, **extra) -> dict:
        payload = {'instance_uuid': instance.uuid,
                   'operation': operation,
                   'policy': notifications.policy_payload(
                       effective,
                       conf.CONF.sparc.notify_clear_text_policy),
                   'policy_digest': effective.digest,
                   'host': self.notifier.host}
        payload.update(extra)
        return payload

    def _run(self, context, instance, effective, operation, what, work,
             **extra) -> Outcome:
        """Run ``work()`` (which returns the report summary) under the
        failure policy, with notifications.
        """
        payload = self._payload(instance, effective, operation, **extra)
        self.notifier.start(context, payload)
        started = time.monotonic()
        try:
            summary = work()
        except SaveFailed as e:
            # Not the scrub's failure: the checkpoint was never made.
            raise e.error from None
        except Exception as e:
            reason = failure_reason(e)
            kept = effective.allows_unscrubbed
            self.notifier.error(context, dict(
                payload, error=reason,
                outcome=(notifications.OUTCOME_KEPT_UNSCRUBBED if kept
                         else notifications.OUTCOME_ABORTED)))
            if kept:
                LOG.warning('Privacy scrub of the %(what)s failed; kept '
                            'unscrubbed as the policy allows '
                            '(sparc:on_failure=allow): %(reason)s',
                            {'what': what, 'reason': reason},
                            instance=instance)
                return Outcome(False, 'scrub failed, kept unscrubbed '
                               '(on_failure=allow): %s' % reason,
                               effective.digest)
            LOG.error('Privacy scrub of the %(what)s failed: %(reason)s',
                      {'what': what, 'reason': reason}, instance=instance)
            # Not chained: Nova puts the traceback into the fault's
            # details, and the chain's messages may name guest files.
            raise virt_exception.SparcScrubFailed(
                what=what, instance_uuid=instance.uuid,
                reason=reason) from None
        self.notifier.end(context, dict(
            payload, summary=summary,
            seconds=round(time.monotonic() - started, 3)))
        LOG.info('Privacy scrub of the %(what)s done: %(summary)s',
                 {'what': what, 'summary': summary}, instance=instance)
        return Outcome(True, summary, effective.digest)

    def snapshot_file(self, context, instance,
                      effective: policy.EffectivePolicy, image_id: str,
                      src: str, disk_format: str) -> Outcome:
        """Scrub the disk image a snapshot is about to upload.

        ``disk_format`` is the format Nova wrote ``src`` in (the image's
        ``disk_format``); the engine reads ``src`` in it and writes the
        scrubbed copy in it.

        :returns: the outcome; its ``path`` is the file to upload
        :raises SparcScrubFailed: unless the policy allows unscrubbed
            snapshots
        """
        rule_list = disk_rules(effective)
        if not rule_list:
            return Outcome(False, 'the policy excludes no guest paths: the '
                           'disk image is unchanged', effective.digest,
                           path=src)
        dst = src + SCRUBBED_SUFFIX

        def work():
            if disk_format not in DISK_FORMATS:
                raise exception.SparcError(
                    'cannot scrub a %s snapshot; set [libvirt] '
                    'snapshot_image_format to qcow2 or raw' % disk_format)
            rules = disk.Rules(rule_list)
            # The snapshot file is in the format Nova wrote it in: read
            # it in that format, never in one qemu guesses (a raw disk
            # whose first sector is a qcow2 header is guest data).
            options = disk.ScrubOptions.from_conf(
                conf.CONF, output_format=disk_format,
                source_format=disk_format)
            report = blocking.call(
                disk.scrub_image, src, dst, rules, options,
                label='Scrubbing snapshot %s' % image_id, instance=instance)
            return disk_summary(report)

        outcome = self._run(context, instance, effective, SNAPSHOT,
                            'snapshot %s' % image_id, work,
                            image_id=image_id)
        outcome.path = dst if outcome.scrubbed else src
        return outcome

    def managed_save(self, context, instance,
                     effective: policy.EffectivePolicy,
                     path: str, save=None) -> Outcome:
        """Scrub a managed-save file in place, through the privileged
        daemon (the file is root's).

        With ``save`` (a callable that runs libvirt's ``managedSave`` and
        returns when it has), the scrub overlaps the save: the daemon
        follows the file while libvirt writes it
        (:func:`~sparc_nova.privsep.checkpoint.follow_managed_save`), and
        is told when ``save()`` returned. An error of ``save()`` is
        raised unchanged once the daemon stopped following (nothing of
        the save is kept). If the daemon refuses to follow, nothing is
        saved, unless the policy allows unscrubbed checkpoints. Without
        ``save`` the file, already written, is scrubbed.

        :raises SparcScrubFailed: unless the policy allows unscrubbed
            checkpoints; the managed save, if ``save()`` made one, is
            then unscrubbed and the caller must discard it.
        """
        def scrub_written():
            result = privsep_checkpoint.scrub_managed_save(
                path=path, instance_name=instance.name,
                selectors=list(effective.exclude_processes),
                exclude_paths=list(effective.path_rules),
                follow_ipc=effective.follow_ipc,
                scrub_free_memory=effective.scrub_free_memory)
            return result['summary']

        def scrub_while_saving():
            # Wall time of each step, s: where a suspend spends what it
            # adds to libvirt's save (logged with the overlap).
            calls = {}
            started = time.monotonic()
            try:
                privsep_checkpoint.follow_managed_save(
                    instance_name=instance.name,
                    selectors=list(effective.exclude_processes),
                    exclude_paths=list(effective.path_rules),
                    follow_ipc=effective.follow_ipc,
                    scrub_free_memory=effective.scrub_free_memory)
            except Exception:
                if effective.allows_unscrubbed:
                    _save_or_raise(save)
                raise
            calls['follow_call'] = time.monotonic() - started
            started = time.monotonic()
            _save_or_raise(save, instance)
            calls['managed_save'] = time.monotonic() - started
            started = time.monotonic()
            result = privsep_checkpoint.finish_managed_save(
                instance_name=instance.name, saved=True)
            calls['finish_call'] = time.monotonic() - started
            _log_overlap(instance, result.get('report') or {}, calls)
            return result['summary']

        work = scrub_written if save is None else scrub_while_saving
        outcome = self._run(context, instance, effective, SUSPEND,
                            'memory image', work, path=path)
        outcome.path = path
        return outcome

    def seal_managed_save(self, context, instance,
                          effective: policy.EffectivePolicy, path: str,
                          key: bytes) -> Outcome:
        """Seal a managed-save file that libvirt has written, through
        the privileged daemon (:func:`~sparc_nova.privsep.checkpoint.
        seal_managed_save`), under the failure policy and with the
        notifications of a scrub. ``key`` goes to the daemon through the
        privsep call only.

        The seal does not overlap ``managedSave`` (the follower of
        :meth:`managed_save` runs a scrub): it starts once libvirt has
        returned.

        :returns: the outcome (``scrubbed`` False: the seal failed and
            the policy allows keeping the managed save as libvirt wrote
            it).
        :raises SparcScrubFailed: the seal failed; the managed save is as
            libvirt wrote it (or was deleted, as the message says), and
            the caller must discard it.
        """
        def work():
            result = privsep_checkpoint.seal_managed_save(
                path=path, instance_name=instance.name, key=key,
                selectors=list(effective.exclude_processes),
                exclude_paths=list(effective.path_rules),
                follow_ipc=effective.follow_ipc,
                scrub_free_memory=effective.scrub_free_memory)
            return result['summary']

        outcome = self._run(context, instance, effective, SUSPEND,
                            'memory image', work, path=path)
        outcome.path = path
        return outcome


def _log_overlap(instance, report: dict, calls: dict) -> None:
    """Log how the scrub overlapped managedSave (from the report's
    ``during_save`` and ``timings``) and the wall time of the driver's
    three steps (``calls``: ``follow_call``, ``managed_save``,
    ``finish_call``), all in seconds.
    """
    during = report.get('during_save') or {}
    timings = report.get('timings') or {}
    LOG.info('Memory image scrubbed while libvirt saved it: complete '
             'after %(complete)s s of a %(save)s s save, scrub overlapped '
             'the save: %(overlapped)s, ended %(after)s s after the save '
             'returned; follow call %(follow_call).3f s, managedSave '
             '%(managed_save).3f s, verdict call %(finish_call).3f s, '
             'in place: %(in_place)s',
             dict(calls, complete=during.get('image_complete_after'),
                  save=timings.get('save'),
                  overlapped=during.get('scrub_overlapped_save'),
                  after=timings.get('after_save'),
                  in_place=(report.get('rewrite') or {}).get('in_place')),
             instance=instance)


class SaveFailed(Exception):
    """The save a scrub overlapped failed with ``error``."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _save_or_raise(save, instance=None) -> None:
    """Run ``save()``; if it fails, raise :class:`SaveFailed` with its
    error, after telling the daemon following the save of ``instance``
    (if any) that it failed.
    """
    try:
        save()
    except Exception as e:
        if instance is not None:
            try:
                privsep_checkpoint.finish_managed_save(
                    instance_name=instance.name, saved=False)
            except Exception as stop_error:
                LOG.error('Could not stop following the failed managed '
                          'save: %s', stop_error, instance=instance)
        raise SaveFailed(e) from e


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
