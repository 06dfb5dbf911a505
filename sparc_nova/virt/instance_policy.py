"""The privacy policy of a Nova instance, from its three sources."""

from nova import objects

from sparc_nova import conf
from sparc_nova import exception
from sparc_nova import policy
from sparc_nova.virt import exception as virt_exception

#: Nova keeps an instance's image properties in its system metadata
#: under this prefix (custom properties are not in image_meta).
IMAGE_PROPERTY_PREFIX = 'image_'


def sources(instance: 'objects.Instance') -> dict[str, dict[str, str]]:
    """The flavor extra specs, image properties and instance metadata of
    ``instance``, as plain dicts keyed by source.
    """
    flavor = instance.flavor
    extra_specs = dict(flavor.extra_specs or {}) if flavor else {}
    system_metadata = instance.system_metadata or {}
    image = {key[len(IMAGE_PROPERTY_PREFIX):]: value
             for key, value in system_metadata.items()
             if key.startswith(IMAGE_PROPERTY_PREFIX + 'sparc_')}
    return {policy.FLAVOR: extra_specs, policy.IMAGE: image,
            policy.INSTANCE: dict(instance.metadata or {})}


def load(instance: 'objects.Instance') -> policy.EffectivePolicy:
    """The effective policy of ``instance``.

    :raises SparcPolicyInvalid: a source holds an invalid key or value
    """
    found = sources(instance)
    try:
        return policy.from_sources(
            flavor=found[policy.FLAVOR], image=found[policy.IMAGE],
            instance=found[policy.INSTANCE],
            on_failure_allow_from=conf.CONF.sparc.on_failure_allow_from)
    except exception.InvalidPolicy as e:
        raise virt_exception.SparcPolicyInvalid(
            instance_uuid=instance.uuid,
            reason='; '.join(str(p) for p in e.problems))


def has_scrub_records(instance: 'objects.Instance') -> bool:
    """Whether the instance was booted from an image sparc-nova scrubbed
    (snapshots inherit those image properties).
    """
    system_metadata = instance.system_metadata or {}
    return any(IMAGE_PROPERTY_PREFIX + key in system_metadata
               for key in policy.RECORD_PROPERTIES)


def operator_specs(flavor) -> dict[str, str]:
    """The ``sparc:`` extra specs of ``flavor`` (the operator's part of
    the policy); ``{}`` for no flavor.
    """
    specs = dict(flavor.extra_specs or {}) if flavor else {}
    prefix = policy.PREFIXES[policy.FLAVOR]
    return {key: value for key, value in specs.items()
            if key.startswith(prefix)}
