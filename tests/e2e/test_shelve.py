"""Scenario 3: shelve a server whose policy excludes files: the shelved
image in Glance is scrubbed; unshelve boots it. Scenario 5 for shelve:
start and end notifications.
"""

import pytest

from tests.e2e import notifications as notif
from tests.e2e import servers


@pytest.fixture(scope='module')
def shelved(conn, images, flavor, notifications):
    """(server, shelved image) while the server is shelved offloaded."""
    server = servers.boot(conn, 'e2e-shelve', images['root'], flavor)
    conn.compute.set_server_metadata(
        server, **{'sparc:exclude_paths': '/secrets/**',
                   'sparc:exclude_processes': 'vault'})
    conn.compute.shelve_server(server)
    server = conn.compute.wait_for_server(server, status='SHELVED_OFFLOADED',
                                          wait=900)
    image = conn.image.find_image('e2e-shelve-shelved', ignore_missing=False)
    yield server, image
    servers.delete(conn, server)


def test_shelved_image_is_scrubbed(conn, guest, shelved):
    _, image = shelved
    data = servers.download(conn, image)
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


def test_unshelve_boots(conn, shelved):
    server, _ = shelved
    conn.compute.unshelve_server(server)
    conn.compute.wait_for_server(server, status='ACTIVE', wait=600)
    files = servers.wait_console(conn, server, servers.FILES_RE)
    assert files.groups() == ('0', '2')
