"""Scenarios 4 and 6: a snapshot that cannot be scrubbed, and one whose
policy is invalid, end with no image in Glance, the server ACTIVE, the
reason recorded as an instance fault, and for the scrub a
``sparc.scrub.error`` notification. The invalid value gets the same message
as ``sparc policy check`` gives offline.

The faults are read from Nova's database: the API shows a server's fault
only while it is in ERROR (or deleted), and Nova records the snapshot's
action event as a success because the snapshot runs after the RPC call
that records it has returned.

The server boots from the image whose disk also holds a LUKS volume that
nobody has the key of: a disk scrub cannot look inside it, so it must
fail rather than report that nothing was found.
"""

import os
import subprocess
import sys

import pytest

from tests.e2e import notifications as notif
from tests.e2e import servers


@pytest.fixture(scope='module')
def luks_server(conn, images, flavor):
    server = servers.boot(conn, 'e2e-fail-closed', images['root_luks'],
                          flavor)
    yield server
    servers.delete(conn, server)


def _snapshot_fails(conn, server, name: str) -> None:
    """``server image create`` that must leave no image behind."""
    image = conn.compute.create_server_image(server, name, wait=False)
    image_id = image.id if hasattr(image, 'id') else image
    servers.wait_task_done(conn, server)
    assert servers.wait_image_gone(conn, image_id) in (
        'missing', 'deleted', 'killed')
    assert not list(conn.image.images(name=name))
    assert conn.compute.get_server(server.id).status == 'ACTIVE'


def _faults(cloud, server) -> list[str]:
    rows = cloud.sql('nova', "SELECT message FROM instance_faults WHERE "
                             "instance_uuid = '%s' ORDER BY id" % server.id)
    return [r[0] for r in rows]


def _policy_check(*pairs: str) -> subprocess.CompletedProcess:
    sparc = os.path.join(os.path.dirname(sys.executable), 'sparc')
    return subprocess.run([sparc, 'policy', 'check'] + list(pairs),
                          capture_output=True, text=True)


def test_invalid_policy_reported_as_offline(cloud, conn, luks_server):
    pair = 'sparc:follow_ipc=maybe'
    offline = _policy_check(pair)
    assert offline.returncode == 1
    message = offline.stdout.splitlines()[1].split('problem: ', 1)[1]
    key, value = pair.split('=', 1)
    conn.compute.set_server_metadata(luks_server, **{key: value})
    try:
        _snapshot_fails(conn, luks_server, 'e2e-invalid-policy')
    finally:
        conn.compute.delete_server_metadata(luks_server, [key])
    assert any(message in f for f in _faults(cloud, luks_server)), (
        message, _faults(cloud, luks_server))


def test_unscrubbable_disk_fails_closed(cloud, conn, luks_server,
                                        notifications):
    conn.compute.set_server_metadata(
        luks_server, **{'sparc:exclude_paths': '/secrets/**'})
    _snapshot_fails(conn, luks_server, 'e2e-fail-closed-image')
    error = notifications.wait_for('sparc.scrub.error',
                                   notif.for_instance(luks_server.id))
    assert error['payload'].get('error')
    faults = _faults(cloud, luks_server)
    assert any('Privacy scrub' in f for f in faults), faults
