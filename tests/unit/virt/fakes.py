"""Small stand-ins for the Nova objects the integration reads."""

import types

from sparc_nova import policy

INSTANCE_UUID = '6c6a3c55-2b5d-4a4b-9e3f-3d2f9c0e8a11'


def instance(metadata=None, extra_specs=None, image_properties=None,
             task_state=None, name='instance-00000001', power_state=1):
    """An object with the attributes of ``objects.Instance`` that sparc-nova
    reads. ``image_properties`` are given as Glance names (``sparc_...``)
    and stored as Nova does (``image_sparc_...``).
    """
    system_metadata = {'image_' + k: v
                       for k, v in (image_properties or {}).items()}
    system_metadata['image_disk_format'] = 'qcow2'
    return types.SimpleNamespace(
        uuid=INSTANCE_UUID, name=name, task_state=task_state,
        power_state=power_state,
        metadata=dict(metadata or {}), system_metadata=system_metadata,
        flavor=flavor(extra_specs))


def flavor(extra_specs=None, name='m1.small'):
    """An object with the attributes of ``objects.Flavor`` that sparc-nova
    reads.
    """
    return types.SimpleNamespace(name=name,
                                 extra_specs=dict(extra_specs or {}))


def effective(**instance_pairs):
    """The effective policy of instance metadata ``sparc:KEY=VALUE``."""
    return policy.from_sources(instance={
        'sparc:' + k: v for k, v in instance_pairs.items()})
