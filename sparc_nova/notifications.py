"""Notifications of scrubs: ``sparc.scrub.start``, ``sparc.scrub.end`` and
``sparc.scrub.error``.

Nova's own notifier drops event types it does not know (and sends nothing
at all in versioned-only mode), so sparc-nova has ``oslo_messaging``
notifiers of its own on Nova's notification transport, and follows Nova's
``[notifications] notification_format``: ``unversioned`` sends the payload
dicts on the topics of ``[oslo_messaging_notifications]``, ``versioned``
sends their versioned objects (:mod:`sparc_nova.notification_payloads`)
on ``[notifications] versioned_notifications_topics``, ``both`` sends
both. ``[sparc] send_notifications = false`` silences them.

Payloads carry the instance, the operation, the policy's digest and
shape (:func:`policy_payload`: how many process selectors and path globs,
the settings; the selectors and globs themselves only with ``[sparc]
notify_clear_text_policy = true``) and the report summary: never guest
data, and never the names of the files a scrub removed.
"""

from typing import Any

from oslo_log import log as logging
import oslo_messaging

from nova import rpc as nova_rpc
from sparc_nova import conf
from sparc_nova import notification_payloads
from sparc_nova import policy as policy_mod

LOG = logging.getLogger(__name__)

EVENT_START = 'sparc.scrub.start'
EVENT_END = 'sparc.scrub.end'
EVENT_ERROR = 'sparc.scrub.error'

#: Outcomes of a failed scrub, in ``sparc.scrub.error`` payloads.
OUTCOME_ABORTED = 'aborted'
OUTCOME_KEPT_UNSCRUBBED = 'kept-unscrubbed'

#: Values of Nova's ``[notifications] notification_format``.
FORMAT_UNVERSIONED = 'unversioned'
FORMAT_VERSIONED = 'versioned'
FORMAT_BOTH = 'both'


def policy_payload(effective: policy_mod.EffectivePolicy,
                   clear_text: bool = False) -> dict[str, Any]:
    """The ``policy`` of a notification payload: its digest, how many
    process selectors and path globs it has, and its settings. With
    ``clear_text`` (``[sparc] notify_clear_text_policy``) the selectors
    and globs too; without, none of their text (a glob such as
    ``/home/*/merger-with-acme/**`` tells what it hides).
    """
    data = effective.effective()
    processes = data.pop(policy_mod.EXCLUDE_PROCESSES)
    paths = data.pop(policy_mod.EXCLUDE_PATHS)
    # The scoped rule list the engines get holds the same globs.
    path_rules = data.pop('path_rules', None)
    data.update(digest=effective.digest,
                exclude_processes_count=len(processes),
                exclude_paths_count=len(paths))
    if clear_text:
        data[policy_mod.EXCLUDE_PROCESSES] = processes
        data[policy_mod.EXCLUDE_PATHS] = paths
        if path_rules is not None:
            data['path_rules'] = path_rules
    return data


class ScrubNotifier:
    """Sends the scrub notifications of one compute host.

    ``notification_format`` and ``versioned_topics`` are Nova's
    ``[notifications] notification_format`` and
    ``versioned_notifications_topics``. The notifiers are made on first
    use, on the notification transport Nova set up
    (``nova.rpc.NOTIFICATION_TRANSPORT``). A notification that cannot be
    sent is logged, never raised: it must not change the outcome of the
    operation it describes.
    """

    def __init__(self, host: str, transport=None,
                 notification_format: str = FORMAT_UNVERSIONED,
                 versioned_topics: tuple[str, ...] = (
                     'versioned_notifications',)):
        if notification_format not in (FORMAT_UNVERSIONED, FORMAT_VERSIONED,
                                       FORMAT_BOTH):
            raise ValueError('notification format %r'
                             % notification_format)
        self.host = host
        self.notification_format = notification_format
        self.versioned_topics = list(versioned_topics)
        self._transport = transport
        self._notifiers = None

    def _get_notifiers(self) -> list | None:
        """``[(notifier, versioned)]`` by the format, or None without a
        transport.
        """
        if self._notifiers is None:
            transport = self._transport or nova_rpc.NOTIFICATION_TRANSPORT
            if transport is None:
                return None
            serializer = nova_rpc.RequestContextSerializer(
                nova_rpc.JsonPayloadSerializer())
            notifiers = []
            if self.notification_format != FORMAT_VERSIONED:
                notifiers.append((oslo_messaging.Notifier(
                    transport, publisher_id='sparc.%s' % self.host,
                    serializer=serializer), False))
            if self.notification_format != FORMAT_UNVERSIONED:
                notifiers.append((oslo_messaging.Notifier(
                    transport, publisher_id='sparc-compute:%s' % self.host,
                    topics=self.versioned_topics,
                    serializer=serializer), True))
            self._notifiers = notifiers
        return self._notifiers

    def _send(self, context, priority: str, event_type: str,
              payload: dict[str, Any]) -> None:
        if not conf.CONF.sparc.send_notifications:
            return
        try:
            notifiers = self._get_notifiers()
            if notifiers is None:
                LOG.debug('No notification transport: %s not sent',
                          event_type)
                return
            for notifier, versioned in notifiers:
                body = payload
                if versioned:
                    body = notification_payloads.scrub_payload(
                        payload).obj_to_primitive()
                getattr(notifier, priority)(context, event_type, body)
        except Exception:
            LOG.exception('Could not send the %s notification', event_type)

    def start(self, context, payload: dict[str, Any]) -> None:
        self._send(context, 'info', EVENT_START, payload)

    def end(self, context, payload: dict[str, Any]) -> None:
        self._send(context, 'info', EVENT_END, payload)

    def error(self, context, payload: dict[str, Any]) -> None:
        self._send(context, 'error', EVENT_ERROR, payload)
