"""Versioned payloads of the ``sparc.scrub.*`` notifications
(oslo.versionedobjects, as Nova's versioned notifications): sent when
Nova's ``[notifications] notification_format`` is ``versioned`` or
``both``, serialized as ``{"sparc_nova_object.name": ...,
"sparc_nova_object.namespace": "sparc_nova", "sparc_nova_object.version":
..., "sparc_nova_object.data": {...}}``.

Version history (a consumer can rely on the fields of its version):

* ``SparcScrubPayload`` 1.0, ``SparcScrubPolicyPayload`` 1.0: first
  version.

The unversioned payload (a plain dict, :mod:`sparc_nova.notifications`)
is the source of both: :func:`scrub_payload` turns it into the object, so
that the two formats can never say different things.
"""

from typing import Any

from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import fields

__all__ = ['SparcScrubPayload', 'SparcScrubPolicyPayload', 'scrub_payload']


class _SparcPayload(ovo_base.VersionedObject):
    OBJ_PROJECT_NAMESPACE = 'sparc_nova'
    OBJ_SERIAL_NAMESPACE = 'sparc_nova_object'


@ovo_base.VersionedObjectRegistry.register
class SparcScrubPolicyPayload(_SparcPayload):
    """The policy a scrub applied: its digest, how many process selectors
    and path rules it has, its settings; the selectors and rules
    themselves only with ``[sparc] notify_clear_text_policy``.
    """

    VERSION = '1.0'
    fields = {
        'digest': fields.StringField(),
        'exclude_processes_count': fields.IntegerField(),
        'exclude_paths_count': fields.IntegerField(),
        'follow_ipc': fields.BooleanField(),
        'scrub_free_memory': fields.BooleanField(),
        'on_failure': fields.StringField(),
        'suspend': fields.StringField(),
        'exclude_processes': fields.ListOfStringsField(nullable=True),
        'exclude_paths': fields.ListOfStringsField(nullable=True),
        'path_rules': fields.ListOfStringsField(nullable=True),
    }


@ovo_base.VersionedObjectRegistry.register
class SparcScrubPayload(_SparcPayload):
    """One scrub of one checkpoint of an instance: ``image_id`` for a
    snapshot, ``path`` (on the compute host) for a managed save;
    ``summary`` and ``seconds`` at the end, ``error`` and ``outcome``
    (``aborted`` or ``kept-unscrubbed``) on failure.
    """

    VERSION = '1.0'
    fields = {
        'instance_uuid': fields.UUIDField(),
        'operation': fields.StringField(),
        'host': fields.StringField(),
        'policy': fields.ObjectField('SparcScrubPolicyPayload'),
        'image_id': fields.StringField(nullable=True),
        'path': fields.StringField(nullable=True),
        'summary': fields.StringField(nullable=True),
        'seconds': fields.FloatField(nullable=True),
        'error': fields.StringField(nullable=True),
        'outcome': fields.StringField(nullable=True),
    }


#: Keys of the unversioned payload the object leaves out (the digest is
#: in ``policy.digest``).
_UNVERSIONED_ONLY = ('policy_digest',)


def scrub_payload(payload: dict[str, Any]) -> SparcScrubPayload:
    """The versioned object of an unversioned ``sparc.scrub.*`` payload;
    every field of the object is set (``None`` where the payload has no
    such key).

    :raises ValueError: a key the object has no field for (a payload
        change without a new object version)
    """
    unknown = (set(payload) - set(SparcScrubPayload.fields) -
               set(_UNVERSIONED_ONLY))
    if unknown:
        raise ValueError('no field of SparcScrubPayload %s for %s'
                         % (SparcScrubPayload.VERSION, sorted(unknown)))
    policy_fields = SparcScrubPolicyPayload.fields
    policy = SparcScrubPolicyPayload(**{
        name: payload['policy'].get(name) for name in policy_fields})
    result = SparcScrubPayload(policy=policy, **{
        name: payload.get(name) for name in SparcScrubPayload.fields
        if name != 'policy'})
    # A notification is a whole record, not a change set.
    result.obj_reset_changes(recursive=True)
    return result
