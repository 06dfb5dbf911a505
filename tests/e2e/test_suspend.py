"""Scenario 2: suspend a server whose policy excludes a process and a
path. While it is suspended, the managed-save file on the compute host
holds none of the excluded process's memory (the control process's is
there) and none of the excluded files the guest had in its page cache;
after resume the guest runs, the excluded process is gone, the control
still runs, and the guest reads the excluded file again from its disk
(the dropped pages were marked not up to date, not left as zeros).
Scenario 5 for suspend: start and end notifications.
"""

import hashlib
import os
import re
import time

import pytest

from tests.e2e.cloud import nova as cloud_nova
from tests.e2e import notifications as notif
from tests.e2e import servers


@pytest.fixture(scope='module')
def suspended(cloud, conn, member_conn, member_cli, images, flavor,
              notifications):
    """(server, managed-save bytes, last heartbeat before the suspend,
    console text before the suspend) while the server is suspended: the
    member's server, policy set and suspended with the ``openstack`` CLI.
    """
    server = servers.boot(member_conn, 'e2e-suspend', images['root'],
                          flavor)
    member_cli.set_properties(server.id, {
        'sparc:exclude_processes': 'vault',
        'sparc:exclude_paths': '/secrets/**'})
    last_beat = servers.last_beat(conn, server)
    before = servers.console(conn, server)
    member_cli.check('server', 'suspend', server.id)
    server = conn.compute.wait_for_server(server, status='SUSPENDED',
                                          wait=900)
    name = conn.compute.get_server(server.id).instance_name
    path = os.path.join(cloud_nova.managed_save_dir(cloud.conf),
                        name + '.save')
    with open(path, 'rb') as f:
        data = f.read()
    yield server, data, last_beat, before
    servers.delete(conn, server)


SECRET_RE = re.compile(r'SPARC-SECRET beat=(\d+) md5=(\S+)')


def test_managed_save_holds_no_excluded_memory(guest, suspended):
    _, data, _, _ = suspended
    assert servers.count(data, guest.vault_marker) == 0
    assert servers.count(data, guest.webapp_marker) > 0


def test_managed_save_holds_no_cached_excluded_file(guest, suspended):
    _, data, _, before = suspended
    # The guest read the file every two seconds up to the suspend: its
    # content was in the page cache.
    assert SECRET_RE.search(before)
    for path, marker in guest.secret_files.items():
        assert servers.count(data, marker) == 0, path


def test_scrub_overlapped_the_save(cloud, conn, suspended):
    """The privileged daemon scrubbed the managed save while libvirt
    wrote it: libvirt marked the image complete before managedSave
    returned, and the scrub had followed it from its creation.
    """
    server, _, _, _ = suspended
    with open(os.path.join(cloud.conf.logs, 'nova-compute.log'),
              errors='replace') as f:
        lines = [line for line in f if server.id in line and
                 'scrubbed while libvirt saved it' in line]
    assert len(lines) == 1, lines
    assert 'scrub overlapped the save: True' in lines[0], lines[0]
    # libvirt's managed-save directory is the QEMU user's: the raw image
    # was patched in place all the same, its journal in [sparc]
    # journal_dir.
    assert 'in place: True' in lines[0], lines[0]


def test_scrub_notifications(suspended, notifications):
    server, _, _, _ = suspended
    start = notifications.wait_for('sparc.scrub.start',
                                   notif.for_instance(server.id))
    end = notifications.wait_for('sparc.scrub.end',
                                 notif.for_instance(server.id))
    assert start['payload']['operation'] == end['payload']['operation']
    assert end['payload'].get('summary')


def test_resume_runs_without_excluded_process(conn, member_cli, suspended):
    server, _, last_beat, _ = suspended
    member_cli.check('server', 'resume', server.id)
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


def test_resumed_guest_reads_the_dropped_file_from_disk(conn, guest,
                                                        suspended):
    server, _, last_beat, _ = suspended
    if conn.compute.get_server(server.id).status != 'ACTIVE':
        conn.compute.resume_server(server)
        conn.compute.wait_for_server(server, status='ACTIVE', wait=300)
    token = guest.secret_files['/secrets/api-token']
    want = hashlib.md5((token + '\n').encode()).hexdigest()
    deadline = time.monotonic() + 120
    while True:
        text = servers.console(conn, server)
        # The first beat without vault is the first after the resume
        # (vault ran up to the suspend).
        resumed = [int(m.group(1)) for m in servers.PS_RE.finditer(text)
                   if int(m.group(1)) > last_beat and m.group(2) == 'none']
        after = [m for m in SECRET_RE.finditer(text)
                 if resumed and int(m.group(1)) >= resumed[0]]
        if after:
            assert after[-1].group(2) == want, after[-1].group(0)
            break
        assert time.monotonic() < deadline, 'no SPARC-SECRET line after ' \
            'the resume'
        time.sleep(2)
