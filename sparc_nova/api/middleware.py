"""A filter of nova-api's paste pipeline: privacy policies are checked
when they are set, and checkpoints no scrub can see are refused.

It answers, before Nova's own controllers run:

* ``POST /servers`` (``server.metadata``), ``PUT``/``POST
  /servers/{id}/metadata``, ``PUT``/``DELETE /servers/{id}/metadata/{key}``
  and the ``rebuild`` action (``metadata``): when the request changes
  ``sparc:*`` keys and the server's metadata would then hold a problem it
  did not hold before, ``400 Bad Request`` with the message ``sparc policy
  check`` prints for that metadata. A request that only removes or fixes
  problems passes, so that an invalid policy set before this filter was
  installed can be repaired one key at a time.
* ``createImage`` and ``createBackup`` of a volume-backed server whose
  effective policy excludes paths (Nova snapshots its volumes in Cinder;
  the driver never sees those bytes, so nothing could be scrubbed):
  ``409 Conflict``.
* ``trigger_crash_dump`` of a server whose policy excludes processes (the
  NMI makes the guest's kdump write its whole memory to its disk):
  ``409 Conflict``.

A server whose policy is invalid is refused these actions too (fail
closed), with the policy's problems in the message.

Servers are looked up with Nova's own objects, in-process, with the
request's own context (``nova.context``, set by ``keystonecontext``, which
must come before this filter): the lookup goes through
``nova.compute.api.API.get`` (cells-aware, as the controllers do), is
scoped to the caller's project exactly as the controller that runs next
(a server the caller cannot see is left to Nova, which answers 404), needs
no token or endpoint of its own, and cannot disagree with Nova about which
server the request names. Any other error of the lookup propagates, and
the request fails (500) instead of passing unchecked.
"""

import dataclasses
import json
import logging
import re
from typing import Callable, Mapping

from oslo_middleware import base
import webob
import webob.exc

from sparc_nova.api import validation
from sparc_nova import exception
from sparc_nova import policy

__all__ = ['SparcPolicyMiddleware', 'ServerFacts', 'NovaServers',
           'route']

LOG = logging.getLogger(__name__)

#: ``route()`` kinds.
CREATE = 'create'
METADATA_REPLACE = 'metadata-replace'
METADATA_UPDATE = 'metadata-update'
METADATA_SET = 'metadata-set'
METADATA_DELETE = 'metadata-delete'
ACTION = 'action'

_INSTANCE = policy.INSTANCE
# An optional project id in front (legacy endpoints), then the resource.
_PATH = re.compile(r'^(?:/[^/]+)?/servers(?:/(?P<id>[^/]+)'
                   r'(?:/(?P<sub>metadata|action)(?:/(?P<key>[^/]+))?)?)?/?$')

#: Actions refused for volume-backed servers whose policy excludes paths.
DISK_ACTIONS = ('createImage', 'createBackup')
#: Actions refused for servers whose policy excludes processes.
MEMORY_ACTIONS = ('trigger_crash_dump',)


@dataclasses.dataclass
class ServerFacts:
    """What the filter needs to know of one server.

    ``sources`` maps each policy source to its pairs (flavor extra specs,
    image properties without their ``image_`` prefix, metadata);
    ``volume_backed`` is None unless it was asked for.
    """

    sources: dict[str, dict[str, str]]
    volume_backed: bool | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return self.sources[_INSTANCE]


def route(method: str, path: str) -> tuple[str, str | None, str | None]:
    """What a request does: ``(kind, server_id, metadata_key)``, or
    ``(None, None, None)`` when it does nothing this filter checks.

    :param path: the path below the API version (``PATH_INFO``)
    """
    match = _PATH.match(path)
    if not match:
        return None, None, None
    server_id, sub, key = match.group('id', 'sub', 'key')
    if server_id is None:
        kind = CREATE if method == 'POST' else None
    elif sub == 'action':
        kind = ACTION if method == 'POST' and key is None else None
    elif sub == 'metadata' and key is None:
        kind = {'PUT': METADATA_REPLACE,
                'POST': METADATA_UPDATE}.get(method)
    elif sub == 'metadata':
        kind = {'PUT': METADATA_SET, 'DELETE': METADATA_DELETE}.get(method)
    else:
        kind = None
    if kind is None:
        return None, None, None
    return kind, server_id, key


class NovaServers:
    """Looks servers up with Nova's compute API, in nova-api's process
    (see the module's docstring for why).
    """

    def __init__(self):
        self._api = None

    def _compute_api(self):
        # Created on first use: nova-api builds its RPC clients once the
        # whole paste pipeline is loaded.
        if self._api is None:
            from nova.compute import api as compute_api
            self._api = compute_api.API()
        return self._api

    def get(self, context, server_id: str,
            volume_backed: bool = False) -> ServerFacts | None:
        """The server's facts, or None when the caller cannot see it."""
        from nova.compute import utils as compute_utils
        from nova import exception as nova_exception
        from sparc_nova.virt import instance_policy
        try:
            instance = self._compute_api().get(context, server_id,
                                               expected_attrs=['flavor'])
        except nova_exception.InstanceNotFound:
            return None
        facts = ServerFacts(instance_policy.sources(instance))
        if volume_backed:
            facts.volume_backed = compute_utils.is_volume_backed_instance(
                context, instance)
        return facts


class SparcPolicyMiddleware(base.ConfigurableMiddleware):
    """The paste filter (``paste.filter_factory =
    sparc_nova.api.middleware:SparcPolicyMiddleware.factory``).

    :param servers: how servers are looked up (:class:`NovaServers` by
        default; tests pass their own)
    """

    def __init__(self, application, conf=None, servers=None):
        super().__init__(application, conf)
        self.servers = servers or NovaServers()

    @webob.dec.wsgify
    def __call__(self, req: webob.Request):
        refusal = self.check(req)
        if refusal is not None:
            return refusal
        return req.get_response(self.application)

    def check(self, req: webob.Request):
        """A refusal (a WSGI application answering 400 or 409) for
        ``req``, or None to let Nova handle it.
        """
        kind, server_id, key = route(req.method, req.path_info)
        if kind is None:
            return None
        body = _json_body(req) if kind != METADATA_DELETE else {}
        if body is None:
            return None   # not JSON: Nova's own validation answers
        context = req.environ.get('nova.context')
        if kind == ACTION:
            return self._check_action(context, server_id, body)
        if kind == CREATE:
            server = body.get('server')
            metadata = server.get('metadata') if isinstance(
                server, dict) else None
            return self._check_metadata(lambda: {}, metadata)
        lookup = self._lookup_metadata(context, server_id)
        if kind == METADATA_DELETE:
            return self._check_change(lookup, {key: None})
        if kind == METADATA_SET:
            meta = body.get('meta')
            if not isinstance(meta, dict) or list(meta) != [key]:
                return None   # Nova refuses it
            return self._check_change(lookup, meta)
        metadata = body.get('metadata')
        if not isinstance(metadata, dict):
            return None
        if kind == METADATA_UPDATE:
            return self._check_change(lookup, metadata)
        return self._check_metadata(lookup, metadata)

    # -- metadata ----------------------------------------------------------

    def _lookup_metadata(self, context, server_id: str
                         ) -> Callable[[], dict | None]:
        def lookup():
            facts = self.servers.get(context, server_id)
            return None if facts is None else facts.metadata
        return lookup

    def _check_change(self, lookup, changes: Mapping):
        """Metadata update: ``changes`` maps keys to new values (None
        deletes the key) and is merged into the current metadata.
        """
        if not any(_touches_policy(k) for k in changes):
            return None
        current = lookup()
        if current is None:
            return None   # Nova answers 404
        new = dict(current)
        for name, value in changes.items():
            if value is None:
                new.pop(name, None)
            else:
                new[name] = value
        return _refuse_new_problems(current, new)

    def _check_metadata(self, lookup, metadata):
        """The whole metadata is replaced by ``metadata``."""
        if not isinstance(metadata, dict):
            return None
        if not validation.problems(metadata, _INSTANCE):
            return None
        current = lookup()
        return _refuse_new_problems(current or {}, metadata)

    # -- actions -----------------------------------------------------------

    def _check_action(self, context, server_id: str, body: dict):
        if len(body) != 1:
            return None   # Nova refuses it
        action, = body
        if action == 'rebuild':
            entity = body[action]
            if isinstance(entity, dict) and 'metadata' in entity:
                return self._check_metadata(
                    self._lookup_metadata(context, server_id),
                    entity['metadata'])
            return None
        if action not in DISK_ACTIONS + MEMORY_ACTIONS:
            return None
        facts = self.servers.get(context, server_id,
                                 volume_backed=action in DISK_ACTIONS)
        if facts is None:
            return None
        if action in DISK_ACTIONS and not facts.volume_backed:
            return None   # the driver scrubs it
        what = ('a snapshot of the volumes of volume-backed server %s'
                % server_id if action in DISK_ACTIONS else
                'a crash dump of server %s' % server_id)
        try:
            effective = validation.effective(facts.sources)
        except exception.InvalidPolicy as e:
            return _fault(webob.exc.HTTPConflict, '%s is refused: its '
                          'privacy policy is invalid (%s)' % (what, e))
        if action in DISK_ACTIONS and effective.exclude_paths:
            return _fault(webob.exc.HTTPConflict, (
                '%s is refused by its privacy policy: the volumes are '
                'snapshotted by the block storage service, which cannot '
                'remove the files the policy excludes (%s%s)')
                % (what[0].upper() + what[1:], policy.PREFIXES[_INSTANCE],
                   policy.EXCLUDE_PATHS))
        if action in MEMORY_ACTIONS and effective.exclude_processes:
            return _fault(webob.exc.HTTPConflict, (
                '%s is refused by its privacy policy: the guest would '
                'write its whole memory, that of the processes the policy '
                'excludes (%s%s) included, to its disk')
                % (what[0].upper() + what[1:], policy.PREFIXES[_INSTANCE],
                   policy.EXCLUDE_PROCESSES))
        return None


def _touches_policy(key) -> bool:
    return isinstance(key, str) and validation.is_policy_key(key, _INSTANCE)


def _refuse_new_problems(current: Mapping, new: Mapping):
    """400 when ``new`` metadata holds a problem ``current`` does not."""
    found = validation.problems(new, _INSTANCE)
    if not set(found) - set(validation.problems(current, _INSTANCE)):
        return None
    return _fault(webob.exc.HTTPBadRequest, validation.message(found))


def _json_body(req: webob.Request) -> dict | None:
    if not req.body:
        return None
    try:
        body = json.loads(req.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _fault(error_class, message: str):
    """A WSGI application answering like Nova's own faults (JSON
    ``{"badRequest": {"code": 400, "message": ...}}``), so that clients
    show the message.
    """
    LOG.info('refused: %s', message)
    from nova.api.openstack import wsgi as nova_wsgi
    return nova_wsgi.Fault(error_class(explanation=message))
