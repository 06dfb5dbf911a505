"""Notifications consumed from the test cloud's RabbitMQ.

Nova and sparc-nova publish with oslo.messaging's ``messagingv2`` driver
on the ``nova`` topic exchange (routing keys ``notifications.info``,
``notifications.error``, ... for unversioned notifications,
``versioned_notifications.*`` for versioned ones: the test cloud sends
both). A queue of our own bound to that exchange receives a copy of every
notification from the moment it is declared.
"""

import json
import socket
import threading
import time
from typing import Callable

import kombu

#: Nova's control exchange, as oslo.messaging declares it.
EXCHANGE = kombu.Exchange('nova', type='topic', durable=False,
                          auto_delete=False)

Notification = dict


class NotificationLog:
    """Collects every notification in a background thread."""

    def __init__(self, amqp_url: str, queue: str = 'sparc-e2e'):
        self.url = amqp_url
        self.queue = kombu.Queue(
            queue, bindings=[
                kombu.binding(EXCHANGE, routing_key='notifications.*'),
                kombu.binding(EXCHANGE,
                              routing_key='versioned_notifications.*')],
            durable=False, auto_delete=True)
        self.received: list[Notification] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='notifications')

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError('could not bind a queue on %s' % self.url)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with kombu.Connection(self.url) as conn:
            with conn.Consumer(self.queue, callbacks=[self._on_message],
                               accept=['json']):
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        conn.drain_events(timeout=1)
                    except socket.timeout:
                        pass

    def _on_message(self, body, message) -> None:
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        if 'oslo.message' in body:
            body = json.loads(body['oslo.message'])
        with self._cond:
            self.received.append(body)
            self._cond.notify_all()
        message.ack()

    def find(self, event_type: str,
             match: Callable[[dict], bool] = lambda p: True
             ) -> list[Notification]:
        """Notifications received so far of ``event_type`` whose payload
        satisfies ``match``.
        """
        with self._cond:
            return [n for n in self.received
                    if n.get('event_type') == event_type and
                    match(n.get('payload') or {})]

    def wait_for(self, event_type: str,
                 match: Callable[[dict], bool] = lambda p: True,
                 timeout: float = 300) -> Notification:
        """The first notification of ``event_type`` whose payload satisfies
        ``match``; raise AssertionError after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.find(event_type, match)
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({n.get('event_type', '?')
                                   for n in self.received})
                    raise AssertionError(
                        'no %s notification within %ds (event types seen: '
                        '%s)' % (event_type, timeout, ', '.join(seen)))
                self._cond.wait(min(left, 1))


def for_instance(uuid: str) -> Callable[[dict], bool]:
    """A payload matcher: the payload names this instance."""
    return lambda payload: payload.get('instance_uuid') == uuid


#: The key of a versioned payload's fields (sparc_nova.notification_payloads).
VERSIONED_DATA = 'sparc_nova_object.data'


def versioned_for_instance(uuid: str) -> Callable[[dict], bool]:
    """A payload matcher: a versioned sparc-nova payload naming this
    instance.
    """
    return lambda payload: (payload.get(VERSIONED_DATA) or {}).get(
        'instance_uuid') == uuid
