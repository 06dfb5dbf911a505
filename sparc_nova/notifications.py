"""Notifications of scrubs: ``sparc.scrub.start``, ``sparc.scrub.end`` and
``sparc.scrub.error``.

Nova's own notifier drops event types it does not know (and sends nothing
at all in versioned-only mode), so sparc-nova has an
``oslo_messaging.Notifier`` of its own on Nova's notification transport.
Drivers and topics come from ``[oslo_messaging_notifications]``, as for
any OpenStack service; ``[sparc] send_notifications = false`` silences
them.

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
from sparc_nova import policy as policy_mod

LOG = logging.getLogger(__name__)

EVENT_START = 'sparc.scrub.start'
EVENT_END = 'sparc.scrub.end'
EVENT_ERROR = 'sparc.scrub.error'

#: Outcomes of a failed scrub, in ``sparc.scrub.error`` payloads.
OUTCOME_ABORTED = 'aborted'
OUTCOME_KEPT_UNSCRUBBED = 'kept-unscrubbed'


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

    The notifier is made on first use, on the notification transport Nova
    set up (``nova.rpc.NOTIFICATION_TRANSPORT``). A notification that
    cannot be sent is logged, never raised: it must not change the outcome
    of the operation it describes.
    """

    def __init__(self, host: str, transport=None):
        self.host = host
        self._transport = transport
        self._notifier = None

    def _get_notifier(self):
        if self._notifier is None:
            transport = self._transport or nova_rpc.NOTIFICATION_TRANSPORT
            if transport is None:
                return None
            serializer = nova_rpc.RequestContextSerializer(
                nova_rpc.JsonPayloadSerializer())
            self._notifier = oslo_messaging.Notifier(
                transport, publisher_id='sparc.%s' % self.host,
                serializer=serializer)
        return self._notifier

    def _send(self, context, priority: str, event_type: str,
              payload: dict[str, Any]) -> None:
        if not conf.CONF.sparc.send_notifications:
            return
        try:
            notifier = self._get_notifier()
            if notifier is None:
                LOG.debug('No notification transport: %s not sent',
                          event_type)
                return
            getattr(notifier, priority)(context, event_type, payload)
        except Exception:
            LOG.exception('Could not send the %s notification', event_type)

    def start(self, context, payload: dict[str, Any]) -> None:
        self._send(context, 'info', EVENT_START, payload)

    def end(self, context, payload: dict[str, Any]) -> None:
        self._send(context, 'info', EVENT_END, payload)

    def error(self, context, payload: dict[str, Any]) -> None:
        self._send(context, 'error', EVENT_ERROR, payload)
