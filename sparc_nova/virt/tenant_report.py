"""Telling the project why its snapshot, suspend or move failed.

Nova shows an instance fault only for servers in ERROR, and the
``details`` of an instance-action event only to admins (policy
``os_compute_api:os-instance-actions:events:details``). What a project
member sees of every request is its action and the *names* and results of
its events (``openstack server event show SERVER REQUEST_ID``). When the
privacy policy makes an operation fail, the driver therefore adds one
event to the request's action whose name is the reason, prefixed with
:data:`EVENT_PREFIX`, with result ``Error``; admins also get the whole
message as the event's details.

The message is the one of the sparc-nova exception (the fault): it names
the policy keys and values as ``sparc policy check`` does, never guest
data.
"""

from oslo_log import log as logging

from nova import exception as nova_exception
from nova import objects
from nova import utils as nova_utils

__all__ = ['EVENT_PREFIX', 'MAX_EVENT_NAME', 'event_name', 'record',
           'record_success']

LOG = logging.getLogger(__name__)

#: Every event the driver adds starts with this.
EVENT_PREFIX = 'sparc-nova: '
#: Nova's instance_actions_events.event column holds 255 characters.
MAX_EVENT_NAME = 255


def event_name(message: str) -> str:
    """The event name that carries ``message`` (truncated to fit)."""
    return nova_utils.safe_truncate(EVENT_PREFIX + message, MAX_EVENT_NAME)


def record(context, instance, error: Exception) -> None:
    """Add a failed event named after ``error`` to the instance action of
    the request in ``context``. Never raises: a request without an action
    (e.g. a periodic task) or an unreachable conductor is logged only.
    """
    if isinstance(error, nova_exception.NovaException):
        message = error.format_message()
    else:
        message = str(error)
    name = event_name(message)
    try:
        objects.InstanceActionEvent.event_start(
            context, instance.uuid, name, want_result=False)
        objects.InstanceActionEvent.event_finish_with_failure(
            context, instance.uuid, name, exc_val=message, exc_tb=message,
            want_result=False)
    except Exception as e:
        LOG.warning('Could not record why the operation failed in the '
                    'instance action log: %s', e, instance=instance)


def record_success(context, instance, message: str) -> None:
    """Add a successful event named ``sparc-nova: MESSAGE`` to the
    instance action of the request in ``context`` (e.g. ``sparc-nova:
    sealed`` after a sealed suspend, which Horizon shows). Never raises,
    as :func:`record`.
    """
    name = event_name(message)
    try:
        objects.InstanceActionEvent.event_start(
            context, instance.uuid, name, want_result=False)
        objects.InstanceActionEvent.event_finish(
            context, instance.uuid, name, want_result=False)
    except Exception as e:
        LOG.warning('Could not record %(name)r in the instance action '
                    'log: %(error)s', {'name': name, 'error': e},
                    instance=instance)
