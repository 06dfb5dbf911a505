"""Scenario 2: suspend a server whose policy excludes a process. While it
is suspended, the managed-save file on the compute host holds none of the
excluded process's memory (the control process's is there); after resume
the guest runs, the excluded process is gone and the control still runs.
Scenario 5 for suspend: start and end notifications.
"""

import os
import time

import pytest

from tests.e2e.cloud import nova as cloud_nova
from tests.e2e import notifications as notif
from tests.e2e import servers


@pytest.fixture(scope='module')
def suspended(cloud, conn, images, flavor, notifications):
    """(server, managed-save bytes, last heartbeat before the suspend)
    while the server is suspended.
    """
    server = servers.boot(conn, 'e2e-suspend', images['root'], flavor)
    conn.compute.set_server_metadata(server,
                                     **{'sparc:exclude_processes': 'vault'})
    last_beat = servers.last_beat(conn, server)
    conn.compute.suspend_server(server)
    server = conn.compute.wait_for_server(server, status='SUSPENDED',
                                          wait=900)
    name = conn.compute.get_server(server.id).instance_name
    path = os.path.join(cloud_nova.managed_save_dir(cloud.conf),
                        name + '.save')
    with open(path, 'rb') as f:
        data = f.read()
    yield server, data, last_beat
    servers.delete(conn, server)


def test_managed_save_holds_no_excluded_memory(guest, suspended):
    _, data, _ = suspended
    assert servers.count(data, guest.vault_marker) == 0
    assert servers.count(data, guest.webapp_marker) > 0


def test_scrub_notifications(suspended, notifications):
    server, _, _ = suspended
    start = notifications.wait_for('sparc.scrub.start',
                                   notif.for_instance(server.id))
    end = notifications.wait_for('sparc.scrub.end',
                                 notif.for_instance(server.id))
    assert start['payload']['operation'] == end['payload']['operation']
    assert end['payload'].get('summary')


def test_resume_runs_without_excluded_process(conn, suspended):
    server, _, last_beat = suspended
    conn.compute.resume_server(server)
    conn.compute.wait_for_server(server, status='ACTIVE', wait=300)
    # The guest's heartbeat counter goes on from where it was saved.
    deadline = time.monotonic() + 120
    while True:
        after = [m for m in servers.PS_RE.finditer(
            servers.console(conn, server)) if int(m.group(1)) > last_beat]
        if after and after[-1].group(2) == 'none':
            assert after[-1].group(3).isdigit(), after[-1].group(0)
            break
        assert time.monotonic() < deadline, [m.group(0) for m in after]
        time.sleep(2)
