"""Scenario 3: shelve a server whose policy excludes files: the shelved
image in Glance is scrubbed; unshelve boots it. Scenario 5 for shelve:
start and end notifications.
"""

import pytest

from tests.e2e import notifications as notif
from tests.e2e import servers


@pytest.fixture(scope='module')
def shelved(conn, member_conn, member_cli, images, flavor, notifications):
    """(server, shelved image) while the server is shelved offloaded: the
    member's server, policy set and shelved with the ``openstack`` CLI.
    """
    server = servers.boot(member_conn, 'e2e-shelve', images['root'], flavor)
    member_cli.set_properties(server.id, {
        'sparc:exclude_paths': '/secrets/**',
        'sparc:exclude_processes': 'vault'})
    member_cli.check('server', 'shelve', server.id)
    server = conn.compute.wait_for_server(server, status='SHELVED_OFFLOADED',
                                          wait=900)
    image = conn.image.find_image('e2e-shelve-shelved', ignore_missing=False)
    yield server, image
    servers.delete(conn, server)


def test_shelved_image_is_scrubbed(conn, member_cli, guest, shelved,
                                   tmp_path):
    _, image = shelved
    data = member_cli.download_image(image.id, str(tmp_path / 'image'))
    for path, marker in guest.secret_files.items():
        assert servers.count(data, marker) == 0, path
    for path, marker in guest.kept_files.items():
        assert servers.count(data, marker) >= 1, path
    props = conn.image.get_image(image).properties
    assert str(props.get('sparc_scrubbed')).lower() == 'true', props


def test_scrub_notifications(shelved, notifications):
    server, _ = shelved
    notifications.wait_for('sparc.scrub.start', notif.for_instance(server.id))
    end = notifications.wait_for('sparc.scrub.end',
                                 notif.for_instance(server.id))
    assert end['payload'].get('summary')


def test_unshelve_boots(conn, member_cli, shelved):
    server, _ = shelved
    member_cli.check('server', 'unshelve', server.id)
    conn.compute.wait_for_server(server, status='ACTIVE', wait=600)
    files = servers.wait_console(conn, server, servers.FILES_RE)
    assert files.groups() == ('0', '2')
