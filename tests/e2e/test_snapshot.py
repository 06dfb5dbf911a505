"""Scenario 1: a tenant's snapshot of a server whose policy excludes files
and a process, as a project member does it with the ``openstack`` CLI
(``server set --property``, ``server image create --wait``, ``image
save``): the image Glance serves holds none of the excluded files' bytes,
keeps the rest, records the scrub, and boots. Scenario 5 for snapshots:
start and end notifications.

The files to exclude are the operator's (the flavor's extra spec), and the
member's metadata tries to keep them with a negation: a negation narrows
only the rules of its own source, so the image still holds none of them.
"""

import json
import os

import pytest

from tests.e2e import notifications as notif
from tests.e2e import servers

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'doc', 'notification_samples')

#: The operator's rule (flavor extra spec).
OPERATOR_SPECS = {'sparc:exclude_paths': '/secrets/**'}
#: The member's metadata: a process, and a negation of the operator's rule.
POLICY = {'sparc:exclude_paths': '!/secrets/**',
          'sparc:exclude_processes': 'vault'}


@pytest.fixture(scope='module')
def operator_flavor(conn):
    """A public flavor whose extra spec excludes /secrets."""
    flavor = conn.compute.create_flavor(name='sparc.e2e.secrets', ram=256,
                                        vcpus=1, disk=1)
    conn.compute.create_flavor_extra_specs(flavor, OPERATOR_SPECS)
    yield flavor
    conn.compute.delete_flavor(flavor, ignore_missing=True)


@pytest.fixture(scope='module')
def snapshot(conn, member_conn, member_cli, images, operator_flavor,
             notifications):
    """(server, image) after ``server image create`` with the policy, the
    member's server and image.
    """
    server = servers.boot(member_conn, 'e2e-snapshot', images['root'],
                          operator_flavor)
    member_cli.set_properties(server.id, POLICY)
    created = member_cli.json('server', 'image', 'create', '--name',
                              'e2e-snapshot-image', '--wait', server.id)
    image = conn.image.get_image(created['id'])
    assert image.status == 'active', image
    yield server, image
    servers.delete(conn, server)
    conn.image.delete_image(image, ignore_missing=True)


def test_image_holds_no_excluded_file(member_cli, guest, snapshot,
                                      tmp_path):
    _, image = snapshot
    data = member_cli.download_image(image.id, str(tmp_path / 'image'))
    for path, marker in guest.secret_files.items():
        assert servers.count(data, marker) == 0, path
    for path, marker in guest.kept_files.items():
        assert servers.count(data, marker) >= 1, path


def test_image_records_the_scrub(conn, snapshot):
    _, image = snapshot
    props = conn.image.get_image(image).properties
    assert str(props.get('sparc_scrubbed')).lower() == 'true', props
    assert props.get('sparc_policy_digest')
    assert props.get('sparc_scrub_summary')


def test_scrub_notifications(snapshot, notifications):
    server, _ = snapshot
    start = notifications.wait_for('sparc.scrub.start',
                                   notif.for_instance(server.id))
    end = notifications.wait_for('sparc.scrub.end',
                                 notif.for_instance(server.id))
    assert start['payload']['operation'] == end['payload']['operation']
    assert end['payload'].get('summary')


def _shape(payload: dict) -> dict:
    """A versioned payload's object names, versions and field names."""
    data = payload[notif.VERSIONED_DATA]
    return {'name': payload['sparc_nova_object.name'],
            'version': payload['sparc_nova_object.version'],
            'fields': sorted(data),
            'policy': _shape(data['policy']) if 'policy' in data else None}


@pytest.mark.parametrize('event', ['sparc.scrub.start', 'sparc.scrub.end'])
def test_versioned_notifications_are_the_documented_samples(
        snapshot, notifications, event):
    """Nova's notification_format is ``both`` in the test cloud: each
    event is also sent versioned, shaped as its sample in the docs.
    """
    server, image = snapshot
    got = notifications.wait_for(event,
                                 notif.versioned_for_instance(server.id))
    with open(os.path.join(SAMPLES, event + '.json')) as f:
        sample = json.load(f)
    assert got['publisher_id'].startswith('sparc-compute:')
    assert got['priority'] == sample['priority']
    assert _shape(got['payload']) == _shape(sample['payload'])
    assert got['payload'][notif.VERSIONED_DATA]['image_id'] == image.id


def _boot_and_count(conn, image, flavor):
    """Boot a server from ``image``; return (secrets, keep, console)."""
    server = servers.boot(conn, 'e2e-from-snapshot', image, flavor)
    try:
        files = servers.wait_console(conn, server, servers.FILES_RE)
        # show and list go through Neutron (security groups) and work.
        assert conn.compute.get_server(server.id).status == 'ACTIVE'
        assert server.id in {s.id for s in conn.compute.servers()}
        return files.group(1), files.group(2), servers.console(conn, server)
    finally:
        servers.delete(conn, server)


def test_server_from_snapshot_boots_without_secrets(conn, images, flavor,
                                                    snapshot):
    _, image = snapshot
    secrets, keep, text = _boot_and_count(conn, image, flavor)
    # /secrets gone, /keep intact; the console is in the failure message.
    assert (secrets, keep) == ('0', '2'), (
        'secrets=%s keep=%s; console:\n%s' % (secrets, keep, text[-3000:]))


def test_member_sees_the_policy_with_the_openstack_cli(member_cli,
                                                       snapshot):
    server, _ = snapshot
    shown = member_cli.json('server', 'privacy', 'show', server.id)
    assert shown['exclude_paths'] == [
        {'value': '/secrets/**', 'sources': ['flavor'], 'locked': True},
        {'value': '!/secrets/**', 'sources': ['instance'], 'locked': False}]
    assert shown['exclude_processes'] == [
        {'value': 'vault', 'sources': ['instance'], 'locked': False}]
    assert shown['unreadable_sources'] == []


def test_member_reads_the_scrub_record_with_the_openstack_cli(member_cli,
                                                              snapshot):
    server, image = snapshot
    record = member_cli.json('image', 'scrub', 'show', image.id)
    assert record['scrubbed'] == 'true', record
    assert record['instance_uuid'] == server.id
    assert record['policy_digest'] == member_cli.json(
        'server', 'privacy', 'show', server.id)['digest']


def test_member_sets_an_invalid_policy_and_nothing_changes(member_cli,
                                                           snapshot):
    server, _ = snapshot
    result = member_cli.run('server', 'privacy', 'set', server.id,
                            '--exclude-process', 'pid:x')
    assert result.returncode != 0
    assert "'pid:x': pid: takes a decimal number" in result.stderr
    shown = member_cli.json('server', 'privacy', 'show', server.id)
    assert [i['value'] for i in shown['exclude_processes']] == ['vault']
