"""Scenario 2: suspend a server whose policy excludes a process. While it
is suspended, the managed-save file on the compute host holds none of the
excluded process's memory (the control process's is there); after resume
the guest runs, the excluded process is gone and the control still runs.
Scenario 5 for suspend: start and end notifications.
"""

import os
import re

import pytest

from tests.e2e.cloud import nova as cloud_nova
from tests.e2e import notifications as notif
from tests.e2e import servers


@pytest.fixture(scope='module')
def suspended(cloud, conn, images, flavor, notifications):
    """(server, managed-save bytes) while the server is suspended."""
    server = servers.boot(conn, 'e2e-suspend', images['root'], flavor)
    conn.compute.set_server_metadata(server,
                                     **{'sparc:exclude_processes': 'vault'})
    conn.compute.suspend_server(server)
    server = conn.compute.wait_for_server(server, status='SUSPENDED',
                                          wait=900)
    name = conn.compute.get_server(server.id).instance_name
    path = os.path.join(cloud_nova.managed_save_dir(cloud.conf),
                        name + '.save')
    with open(path, 'rb') as f:
        data = f.read()
    yield server, data
    servers.delete(conn, server)


def test_managed_save_holds_no_excluded_memory(guest, suspended):
    _, data = suspended
    assert servers.count(data, guest.vault_marker) == 0
    assert servers.count(data, guest.webapp_marker) > 0


def test_scrub_notifications(suspended, notifications):
    server, _ = suspended
    start = notifications.wait_for('sparc.scrub.start',
                                   notif.for_instance(server.id))
    end = notifications.wait_for('sparc.scrub.end',
                                 notif.for_instance(server.id))
    assert start['payload']['operation'] == end['payload']['operation']
    assert end['payload'].get('summary')


def test_resume_runs_without_excluded_process(conn, suspended):
    server, _ = suspended
    before = len(servers.console(conn, server))
    conn.compute.resume_server(server)
    conn.compute.wait_for_server(server, status='ACTIVE', wait=300)
    after = re.compile(r'SPARC-PS beat=\d+ vault=none webapp=\d+')
    servers.wait_console(conn, server, after, start=before, timeout=120)
