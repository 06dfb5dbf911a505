"""Loading the rows of the Privacy table: servers, their flavor extra
specs, image properties and latest snapshots, as
:class:`~sparc_nova.dashboard.instance_privacy.InstancePrivacy`.

A failed read of Glance does not hide the table: the affected sources
are shown as unreadable and a message says why.
"""

from concurrent import futures

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from horizon import exceptions

from sparc_nova.dashboard import api
from sparc_nova.dashboard import instance_privacy
from sparc_nova import policy


#: At most this many API calls at once.
MAX_PARALLEL_CALLS = 8


def on_failure_allow_from() -> tuple[str, ...]:
    """The sources whose ``on_failure=allow`` the compute nodes honour
    (Horizon setting ``SPARC_ON_FAILURE_ALLOW_FROM``, which mirrors
    ``[sparc] on_failure_allow_from`` of nova.conf).
    """
    return tuple(getattr(settings, 'SPARC_ON_FAILURE_ALLOW_FROM',
                         (policy.FLAVOR,)))


def build(request, servers,
          snapshots: dict[str, instance_privacy.SnapshotRecord] | None,
          history: bool = True) -> list[instance_privacy.InstancePrivacy]:
    """Rows for ``servers`` (``snapshots``: the latest snapshot of each
    instance; None when they could not be read). ``history`` also looks
    up each instance's newest policed requests (Nova's action log).
    """
    try:
        images = api.image_properties(request, servers)
    except Exception:
        images = {}
        exceptions.handle(request, _('Unable to retrieve the image '
                                     'properties of the instances.'))
    allow_from = on_failure_allow_from()
    rows = []
    for server in servers:
        rows.append(instance_privacy.InstancePrivacy.from_server(
            server, api.flavor_extra_specs(request, server),
            images.get(server.id),
            last_snapshot=(snapshots or {}).get(server.id),
            on_failure_allow_from=allow_from))
    if history:
        _add_requests(request, rows)
    return rows


def _add_requests(request, rows) -> None:
    """Look up the newest policed requests of the rows whose operations
    the compute driver may refuse, and of the suspended ones (in
    parallel; per instance the calls of :func:`api.policed_requests`). A
    failed snapshot request is the only trace of a scrub that failed, as
    nothing was kept; a refused suspend, shelve or move leaves only its
    event, and so does a sealed suspend.
    """
    wanted = [row for row in rows if row.wants_requests]
    if not wanted:
        return

    def lookup(row):
        try:
            return api.policed_requests(request, row.id,
                                        suspended=row.suspended)
        except Exception:
            return {}

    # concurrent.futures rather than Horizon's futurist helper, whose
    # pool takes a second to shut down.
    with futures.ThreadPoolExecutor(
            max_workers=min(len(wanted), MAX_PARALLEL_CALLS)) as pool:
        found = list(pool.map(lookup, wanted))
    for row, newest in zip(wanted, found):
        row.requests = newest


def load_page(request, marker: str | None = None
              ) -> tuple[list[instance_privacy.InstancePrivacy], bool]:
    """One page of the project's instances.

    :returns: ``(rows, has_more)``
    :raises: whatever Nova raises when the servers cannot be listed
    """
    servers, has_more = api.server_list(request, marker=marker)
    snapshots = None
    if servers:
        try:
            snapshots = api.latest_snapshots(request)
        except Exception:
            exceptions.handle(request, _('Unable to retrieve the snapshots '
                                         'of the instances.'))
    return build(request, servers, snapshots), has_more


def load_one(request, instance_id: str, history: bool = True
             ) -> instance_privacy.InstancePrivacy:
    """One instance; with ``history``, also its latest snapshot and
    policed requests (the forms need neither).

    :raises: whatever Nova raises (404 for an instance of another project)
    """
    server = api.server_get(request, instance_id)
    snapshots = None
    if history:
        try:
            snapshots = api.latest_snapshots(request, instance_id=server.id)
        except Exception:
            exceptions.handle(request, _('Unable to retrieve the snapshots '
                                         'of the instance.'), ignore=True)
    return build(request, [server], snapshots, history=history)[0]
