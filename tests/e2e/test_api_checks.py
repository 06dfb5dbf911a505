"""Policies are checked when they are set, and scrub records can be
neither forged nor inherited (the real APIs of the test cloud):

* ``flavor set`` of an invalid ``sparc:`` extra spec is a 400 (Nova's
  extra spec validators, microversion 2.86);
* server metadata with an invalid ``sparc:`` value is a 400 from nova-api's
  ``sparc_policy`` filter, at server create and at metadata set, with the
  message of ``sparc policy check``;
* a project member cannot set ``sparc_scrubbed`` on an image (Glance's
  property protections: 403), with the ``openstack`` CLI;
* a snapshot of a server whose image carries scrub records does not carry
  them (``non_inheritable_image_properties``).
"""

import uuid

import pytest

from tests.e2e import guest_image
from tests.e2e import servers
from tests.policy_check import policy_check_error

BAD_SELECTOR = {'sparc:exclude_processes': 'keepassxc,pid:x'}
PARENT_RECORDS = {'sparc_scrubbed': 'true',
                  'sparc_policy_digest': 'sha256:' + 'ab' * 32,
                  'sparc_scrub_summary': 'parent: 3 paths removed'}


def _message(response) -> str:
    body = response.json()
    (fault,) = body.values()
    return fault['message']


def test_flavor_set_invalid_spec_is_400(conn):
    flavor = conn.compute.create_flavor(name='sparc.e2e.specs', ram=256,
                                        vcpus=1, disk=1)
    try:
        response = conn.compute.post(
            '/flavors/%s/os-extra_specs' % flavor.id,
            json={'extra_specs': {'sparc:exclude_processes': 'pid:x'}},
            microversion='2.86', raise_exc=False)
        assert response.status_code == 400, response.text
        assert ("sparc:exclude_processes='pid:x' (flavor extra spec): "
                "'pid:x': pid: takes a decimal number, not 'x'"
                in _message(response))
        response = conn.compute.post(
            '/flavors/%s/os-extra_specs' % flavor.id,
            json={'extra_specs': {'sparc:exclude_processes': 'pid:42'}},
            microversion='2.86', raise_exc=False)
        assert response.status_code == 200, response.text
    finally:
        conn.compute.delete_flavor(flavor, ignore_missing=True)


def test_server_create_with_invalid_metadata_is_400(
        member_conn, images, flavor):
    response = member_conn.compute.post('/servers', json={'server': {
        'name': 'e2e-invalid-policy', 'imageRef': images['root'].id,
        'flavorRef': flavor.id, 'networks': 'none',
        'metadata': BAD_SELECTOR}}, microversion='2.37', raise_exc=False)
    if response.status_code == 202:
        member_conn.compute.delete_server(response.json()['server']['id'])
    assert response.status_code == 400, response.text
    assert _message(response) == policy_check_error(BAD_SELECTOR)


@pytest.fixture(scope='module')
def scrubbed_image(conn, images, guest):
    """A copy of the root image carrying scrub records, as a snapshot
    sparc-nova made has them.
    """
    root = conn.image.get_image(images['root'])
    image = conn.image.create_image(
        name='sparc-e2e-scrubbed-parent', filename=guest.root,
        disk_format='ami', container_format='ami', wait=True,
        kernel_id=root.kernel_id,
        ramdisk_id=root.ramdisk_id,
        os_command_line=guest_image.KERNEL_CMDLINE, **PARENT_RECORDS)
    yield image
    conn.image.delete_image(image, ignore_missing=True)


@pytest.fixture(scope='module')
def server(conn, scrubbed_image, flavor):
    """A server without a policy booted from the image with records."""
    booted = servers.boot(conn, 'e2e-api-checks', scrubbed_image, flavor)
    yield booted
    servers.delete(conn, booted)


def test_metadata_set_invalid_value_is_400(conn, server):
    key, value = next(iter(BAD_SELECTOR.items()))
    response = conn.compute.put(
        '/servers/%s/metadata/%s' % (server.id, key),
        json={'meta': {key: value}}, raise_exc=False)
    assert response.status_code == 400, response.text
    assert _message(response) == policy_check_error(BAD_SELECTOR)
    assert key not in conn.compute.get_server_metadata(server).metadata


def test_snapshot_does_not_inherit_scrub_records(conn, server):
    image = conn.compute.create_server_image(server, 'e2e-no-inherit')
    try:
        # The record Nova's API made, before the compute service uploads.
        created = conn.image.get_image(image)
        assert created.status in ('queued', 'saving'), created.status
        for key in PARENT_RECORDS:
            assert key not in created.properties, created.properties
        image = conn.image.wait_for_status(
            created, status='active', failures=['killed', 'deleted'],
            wait=900)
        props = conn.image.get_image(image).properties
        for key, value in PARENT_RECORDS.items():
            assert props.get(key) != value, (key, props)
    finally:
        conn.image.delete_image(image, ignore_missing=True)


def test_member_cannot_forge_scrub_record(member_cli, member_conn,
                                          tmp_path):
    data = tmp_path / 'blob.raw'
    data.write_bytes(b'\0' * 4096)
    image = member_conn.image.create_image(
        name='e2e-forge-%s' % uuid.uuid4().hex[:8], filename=str(data),
        disk_format='raw', container_format='bare', wait=True)
    try:
        result = member_cli.run(
            'image', 'set', '--property', 'sparc_scrubbed=true', image.id)
        assert result.returncode != 0, result
        assert '403' in result.stderr, result.stderr
        props = member_conn.image.get_image(image).properties
        assert 'sparc_scrubbed' not in props, props
        # Everything else stays open to the member.
        result = member_cli.run(
            'image', 'set', '--property', 'sparc_exclude_paths=/x', image.id)
        assert result.returncode == 0, result.stderr
    finally:
        member_conn.image.delete_image(image, ignore_missing=True)
