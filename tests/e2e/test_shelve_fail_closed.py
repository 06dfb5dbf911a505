"""A shelve whose scrub fails leaves no image in Glance and the server as
it was: ACTIVE, its guest still running (the heartbeat goes on), with the
reason recorded as a fault and as an event of the shelve's instance
action, which project members can read.

The server boots from the image whose disk also holds a LUKS volume that
nobody has the key of: the disk scrub cannot look inside it and fails.
"""

import time

import pytest

from tests.e2e import servers


@pytest.fixture(scope='module')
def luks_server(conn, images, flavor):
    server = servers.boot(conn, 'e2e-shelve-fails', images['root_luks'],
                          flavor)
    yield server
    servers.delete(conn, server)


def _events(cloud, server) -> list[str]:
    rows = cloud.sql(
        'nova', "SELECT e.event FROM instance_actions_events e JOIN "
                "instance_actions a ON e.action_id = a.id WHERE "
                "a.instance_uuid = '%s' AND a.action = 'shelve' ORDER BY "
                "e.id" % server.id)
    return [r[0] for r in rows]


def _faults(cloud, server) -> list[str]:
    rows = cloud.sql('nova', "SELECT message FROM instance_faults WHERE "
                             "instance_uuid = '%s' ORDER BY id" % server.id)
    return [r[0] for r in rows]


def test_failed_shelve_leaves_no_image_and_the_server_running(
        cloud, conn, luks_server):
    conn.compute.set_server_metadata(
        luks_server, **{'sparc:exclude_paths': '/secrets/**'})
    before = servers.console(conn, luks_server)
    conn.compute.shelve_server(luks_server)
    server = servers.wait_task_done(conn, luks_server)

    assert server.status == 'ACTIVE', server.status
    # No "<name>-shelved" image, not even a queued one.
    assert not list(conn.image.images(name='e2e-shelve-fails-shelved'))
    faults = _faults(cloud, server)
    assert any('Privacy scrub of the snapshot' in f and
               'nothing unscrubbed was kept' in f for f in faults), faults
    assert any(e.startswith('sparc-nova: Privacy scrub of the snapshot')
               for e in _events(cloud, server)), _events(cloud, server)
    # The guest runs again (the shelve powered it off; the driver started
    # it again from its disk): a new boot's heartbeat, or beats that go
    # on, on its console.
    deadline = time.monotonic() + 240
    while not _ran_again(before, servers.console(conn, server)):
        assert time.monotonic() < deadline, 'the guest did not run again'
        time.sleep(3)


def _ran_again(before: str, now: str) -> bool:
    first = 'SPARC-PS beat=1 '
    rebooted = now.count(first) > before.count(first) or (
        len(now) < len(before) and first in now)
    beats = [int(m.group(1)) for m in servers.PS_RE.finditer(now)]
    old = [int(m.group(1)) for m in servers.PS_RE.finditer(before)]
    return rebooted or (bool(beats) and max(beats) > max(old or [0]) + 5)
