"""Test data of the Privacy panel: Nova servers and Glance images in the
shapes the API clients return them, wrapped by Horizon's API layer.
"""

import copy

from novaclient.v2 import servers as nova_servers

from openstack_dashboard import api
from openstack_dashboard.test.test_data import glance_data

from sparc_nova.dashboard import instance_privacy

IMAGE_ID = 'c0ffee00-0000-4000-8000-000000000001'
PROJECT_ID = '1'          # Horizon's test tenant
OTHER_PROJECT_ID = '2'

#: The operator's flavor: keepassxc excluded, suspend refused.
FLAVOR_SPECS = {'sparc:exclude_processes': 'keepassxc',
                'sparc:suspend': 'refuse',
                'hw:cpu_policy': 'shared'}
#: The image requires ssh keys to be excluded.
IMAGE_PROPERTIES = {'sparc_exclude_paths': '/home/*/.ssh/**',
                    'os_distro': 'debian',
                    # Records of an earlier scrub are not policy.
                    'sparc_scrubbed': 'true'}


def server(server_id='1', name='vm1', metadata=None, status='ACTIVE',
           tenant_id=PROJECT_ID, flavor_specs=None, image_id=IMAGE_ID,
           task_state=None, embedded_flavor=True):
    """A server as Nova returns it at microversion 2.47 (the flavor is
    embedded, extra specs included unless ``flavor_specs`` is None).
    """
    if embedded_flavor:
        flavor = {'original_name': 'm1.tiny', 'vcpus': 1, 'ram': 512,
                  'disk': 1, 'ephemeral': 0, 'swap': 0}
        if flavor_specs is not None:
            flavor['extra_specs'] = dict(flavor_specs)
    else:
        flavor = {'id': 'f1', 'links': []}
    info = {'id': server_id, 'name': name, 'status': status,
            'tenant_id': tenant_id, 'user_id': 'u1',
            'metadata': dict(metadata or {}),
            'flavor': flavor,
            'image': {'id': image_id, 'links': []} if image_id else '',
            'OS-EXT-STS:task_state': task_state,
            'addresses': {}, 'created': '2026-11-27T07:00:00Z'}
    raw = nova_servers.Server(nova_servers.ServerManager(None),
                              copy.deepcopy(info), loaded=True)
    return api.nova.Server(raw, None)


def image(image_id=IMAGE_ID, name='debian', properties=None,
          status='active', created_at='2026-11-27T07:00:00Z',
          owner=PROJECT_ID):
    """A Glance v2 image with custom properties."""
    info = {'id': image_id, 'name': name, 'status': status,
            'visibility': 'private', 'protected': False, 'owner': owner,
            'size': 1024, 'container_format': 'bare', 'disk_format': 'qcow2',
            'created_at': created_at, 'updated_at': created_at,
            'min_ram': 0, 'min_disk': 0}
    info.update(properties or {})
    return api.glance.Image(glance_data.APIResourceV2(info))


def snapshot(instance_id='1', image_id='5a000000-0000-4000-8000-000000000001',
             name='vm1-private', status='active', scrubbed='true',
             summary='scrubbed disk: 2 files removed, verification passed',
             digest='sha256:' + 'ab' * 32, created_at='2026-11-27T08:00:00Z'):
    """A snapshot image Nova made of an instance, with the records the
    compute driver leaves (``scrubbed=None``: no records).
    """
    properties = {'instance_uuid': instance_id, 'image_type': 'snapshot'}
    if scrubbed is not None:
        properties.update({'sparc_scrubbed': scrubbed,
                           'sparc_policy_digest': digest,
                           'sparc_scrub_summary': summary})
    return image(image_id=image_id, name=name, properties=properties,
                 status=status, created_at=created_at)


def record(*args, **kwargs) -> instance_privacy.SnapshotRecord:
    return instance_privacy.SnapshotRecord.from_image(
        snapshot(*args, **kwargs))
