"""The Nova and Glance reads of the Privacy panel.

Writes (instance metadata, createImage) go through Horizon's own API layer
(``openstack_dashboard.api.nova``). The reads below add what that layer
does not offer: servers listed at a microversion that embeds each server's
flavor with its extra specs (the copy Nova keeps for the instance, which
is what the compute driver reads, not the flavor as it is today), the
properties of the images the servers were booted from, and the snapshot
images of the project grouped by instance.
"""

import logging

from openstack_dashboard.api import _nova
from openstack_dashboard.api import glance
from openstack_dashboard.api import nova
from openstack_dashboard.contrib.developer.profiler import api as profiler
from openstack_dashboard.utils import settings as utils

from sparc_nova.dashboard import instance_privacy

LOG = logging.getLogger(__name__)

#: From this microversion on, a server embeds its flavor, extra specs
#: included (when the policy lets the user see them).
EMBEDDED_FLAVOR_MICROVERSION = '2.47'


def _client(request):
    return _nova.novaclient(request, version=EMBEDDED_FLAVOR_MICROVERSION)


@profiler.trace
def server_list(request, marker: str | None = None
                ) -> tuple[list[nova.Server], bool]:
    """One page of the project's servers, newest first.

    :returns: ``(servers, has_more)``
    """
    page_size = utils.get_page_size(request)
    servers = _client(request).servers.list(
        detailed=True, search_opts={'project_id': request.user.tenant_id},
        marker=marker, limit=page_size + 1)
    has_more = len(servers) > page_size
    return [nova.Server(s, request) for s in servers[:page_size]], has_more


@profiler.trace
def server_get(request, server_id: str) -> nova.Server:
    """One server. Nova answers 404 for servers the user may not see."""
    return nova.Server(_client(request).servers.get(server_id), request)


@profiler.trace
def flavor_extra_specs(request, server) -> dict[str, str] | None:
    """The extra specs of the flavor ``server`` runs with, or None when the
    user may not read them.
    """
    flavor = getattr(server, 'flavor', None) or {}
    if 'extra_specs' in flavor:
        return dict(flavor['extra_specs'] or {})
    if 'id' in flavor:
        # A server listed below the embedding microversion.
        try:
            return dict(nova.flavor_get_extras(request, flavor['id'],
                                               raw=True))
        except Exception:
            LOG.info('Extra specs of flavor %s not readable', flavor['id'])
    return None


def _image_id(server) -> str | None:
    image = getattr(server, 'image', None)
    if isinstance(image, dict):
        return image.get('id')
    return None


@profiler.trace
def image_properties(request, servers) -> dict[str, dict[str, str] | None]:
    """The properties of the images ``servers`` were booted from, keyed by
    server id: ``{}`` for a server booted from a volume, None when the
    image cannot be read (deleted, or not visible to the user).
    """
    image_ids = sorted({i for i in map(_image_id, servers) if i})
    found = {}
    if image_ids:
        images, _more, _prev = glance.image_list_detailed(
            request, filters={'id': 'in:' + ','.join(image_ids)})
        found = {image.id: dict(image.properties or {}) for image in images}
    result = {}
    for server in servers:
        image_id = _image_id(server)
        result[server.id] = found.get(image_id) if image_id else {}
    return result


@profiler.trace
def latest_snapshots(request, instance_id: str | None = None
                     ) -> dict[str, instance_privacy.SnapshotRecord]:
    """The newest snapshot image of each of the project's instances (or of
    one instance), keyed by instance id.
    """
    filters = {'owner': request.user.tenant_id}
    if instance_id:
        filters['instance_uuid'] = instance_id
    images, _more, _prev = glance.image_list_detailed(request,
                                                      filters=filters)
    return instance_privacy.latest_snapshots(images)


#: From this microversion on, project members see the events of an
#: instance action (without their tracebacks).
EVENTS_MICROVERSION = '2.51'


@profiler.trace
def policed_requests(request, instance_id: str, suspended: bool = False
                     ) -> dict[str, instance_privacy.InstanceRequest]:
    """The newest request of each action the compute driver polices
    (:data:`~sparc_nova.dashboard.instance_privacy.POLICED_ACTIONS`) in
    the instance's action log, keyed by action name; each one that failed
    with the reason the driver recorded in its events, if any. With
    ``suspended`` (the instance is SUSPENDED), the newest suspend request
    also says whether the driver sealed it
    (:attr:`~sparc_nova.dashboard.instance_privacy.InstanceRequest.sealed`).

    Nova API calls: one instance-action list, plus one instance-action
    get (microversion 2.51, which shows a project member the events,
    never their tracebacks) per action whose newest request failed, and
    for the newest suspend of a suspended instance: at most
    ``1 + len(POLICED_ACTIONS)``, however long the log is.
    """
    newest = instance_privacy.newest_requests(
        nova.instance_action_list(request, instance_id))
    wanted = [r for r in newest.values()
              if r.failed or (suspended and r.action == 'suspend')]
    if wanted:
        actions = _nova.novaclient(
            request, version=EVENTS_MICROVERSION).instance_action
        for last in wanted:
            try:
                action = actions.get(instance_id, last.request_id)
            except Exception:
                # Still shown as failed, without a reason; sealed unknown.
                LOG.info('Events of request %s of instance %s not '
                         'readable', last.request_id, instance_id)
                continue
            events = getattr(action, 'events', None)
            last.sealed = instance_privacy.sealed_event(events)
            if last.failed:
                last.reason = instance_privacy.policy_reason(events)
    return newest


@profiler.trace
def snapshots(request, instance_id: str
              ) -> list[instance_privacy.SnapshotRecord]:
    """Every snapshot image of one instance, newest first."""
    images, _more, _prev = glance.image_list_detailed(
        request, filters={'owner': request.user.tenant_id,
                          'instance_uuid': instance_id})
    records = [instance_privacy.SnapshotRecord.from_image(i) for i in images]
    return sorted(records, key=lambda r: r.created_at, reverse=True)
