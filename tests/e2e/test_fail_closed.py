"""Scenarios 4 and 6: a snapshot that cannot be scrubbed, and one whose
policy is invalid, end with no image in Glance, the server ACTIVE, the
reason recorded as an instance fault, and for the scrub a
``sparc.scrub.error`` notification. The invalid value gets the same message
as ``sparc policy check`` gives offline, from nova-api when it is set and
from the driver for a server that holds one anyway.

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

#: Why the LUKS volume's disk cannot be scrubbed
#: (sparc_nova.engine.disk.preflight / volumes).
NO_KEY = 'LUKS volume has no key: its files cannot be read or scrubbed'


@pytest.fixture(scope='module')
def luks_server(conn, images, flavor):
    server = servers.boot(conn, 'e2e-fail-closed', images['root_luks'],
                          flavor)
    yield server
    servers.delete(conn, server)


def _snapshot_fails(conn, server, name: str) -> str:
    """``server image create`` that must leave no image behind; the id
    the image had.
    """
    image = conn.compute.create_server_image(server, name, wait=False)
    image_id = image.id if hasattr(image, 'id') else image
    servers.wait_task_done(conn, server)
    assert servers.wait_image_gone(conn, image_id) in (
        'missing', 'deleted', 'killed')
    assert not list(conn.image.images(name=name))
    assert conn.compute.get_server(server.id).status == 'ACTIVE'
    return image_id


def _fault_details(cloud, server) -> list[tuple[str, str]]:
    """(message, details) of the server's faults: Nova cuts the message
    at 255 characters, the details hold the whole exception.
    """
    rows = cloud.sql('nova', "SELECT message, details FROM instance_faults "
                             "WHERE instance_uuid = '%s' ORDER BY id"
                     % server.id)
    return [(r[0], r[1] or '') for r in rows]


def _faults(cloud, server) -> list[str]:
    return [message for message, _ in _fault_details(cloud, server)]


def _policy_check(*pairs: str) -> subprocess.CompletedProcess:
    sparc = os.path.join(os.path.dirname(sys.executable), 'sparc')
    return subprocess.run([sparc, 'policy', 'check'] + list(pairs),
                          capture_output=True, text=True)


def test_invalid_policy_reported_as_offline(cloud, conn, luks_server):
    """nova-api refuses the invalid value with the words of ``sparc policy
    check``; a server that holds one anyway (written before the API
    checked, here straight into Nova's database) fails its snapshot with
    the same words.
    """
    import openstack.exceptions

    pair = 'sparc:follow_ipc=maybe'
    offline = _policy_check(pair)
    assert offline.returncode == 1
    message = offline.stdout.splitlines()[1].split('problem: ', 1)[1]
    key, value = pair.split('=', 1)
    with pytest.raises(openstack.exceptions.BadRequestException) as e:
        conn.compute.set_server_metadata(luks_server, **{key: value})
    assert message in str(e.value), (message, str(e.value))
    conn.compute.set_server_metadata(luks_server, **{key: 'true'})
    cloud.sql('nova', "UPDATE instance_metadata SET value = '%s' WHERE "
                      "instance_uuid = '%s' AND `key` = '%s' AND deleted = 0"
              % (value, luks_server.id, key))
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
    image_id = _snapshot_fails(conn, luks_server, 'e2e-fail-closed-image')
    error = notifications.wait_for('sparc.scrub.error',
                                   notif.for_instance(luks_server.id))
    # The reason is the LUKS volume nobody has the key of, not just any
    # failure of the scrub.
    assert NO_KEY in error['payload']['error'], error['payload']
    assert error['payload']['outcome'] == 'aborted', error['payload']
    prefix = ('Privacy scrub of the snapshot %s of instance %s failed; '
              'nothing unscrubbed was kept: ' % (image_id, luks_server.id))
    faults = _fault_details(cloud, luks_server)
    assert any(message.startswith(prefix) and NO_KEY in message + details
               for message, details in faults), faults
