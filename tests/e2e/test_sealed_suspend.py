"""Sealed suspend (``sparc:suspend=seal``), end to end: a member sets the
policy on a server and suspends it with the ``openstack`` CLI.

* Suspended: the managed save holds none of the excluded process's
  memory (raw scan), the sealed pages beside it are root's, mode 0600,
  and hold none of it in the clear; the sealing key is a secret in
  Barbican that belongs to the member's project; the suspend's action
  carries the member-visible event ``sparc-nova: sealed``.
* Resumed: the excluded process runs on with the same pid and its memory
  intact (a dump of the running guest's memory holds its marker again);
  the secret and the sealed pages are gone.
* Suspended sealed again, the secret deleted by the member, then resumed:
  the resume fails, the server stays SUSPENDED, and the action's event
  says the sealing key could not be fetched.
"""

import os
import stat
import time

import libvirt
import pytest

from tests.e2e import castellan_client
from tests.e2e.cloud import catalog
from tests.e2e.cloud import libvirtd
from tests.e2e.cloud import nova as cloud_nova
from tests.e2e import servers

pytestmark = pytest.mark.e2e

POLICY = {'sparc:exclude_processes': 'vault', 'sparc:suspend': 'seal'}
SEALED_EVENT = 'sparc-nova: sealed'
KEY_ERROR_EVENT = 'sparc-nova: The sealing key of instance'
#: Name suffix of the sealed-pages file (sparc_nova.checkpoint.sealed).
SEALED_SUFFIX = '.sparc-sealed'


@pytest.fixture(scope='module')
def member_session(cloud):
    return castellan_client.session(cloud.conf, catalog.MEMBER_USER,
                                    catalog.MEMBER_PROJECT)


def _secrets_of(session, server) -> list[dict]:
    """The project's Barbican secrets that hold ``server``'s sealing key
    (the driver names them after the server).
    """
    return [s for s in castellan_client.project_secrets(session)
            if server.id in (s.get('name') or '')]


def _events(member_cli, server, action: str) -> list[str]:
    """Event names of the newest ``action`` request of ``server``, as the
    member reads them.
    """
    rows = [r for r in member_cli.json('server', 'event', 'list', server.id)
            if r['Action'] == action]
    assert rows, 'no %s action for %s' % (action, server.id)
    newest = max(rows, key=lambda r: r['Start Time'])
    shown = member_cli.json('server', 'event', 'show', server.id,
                            newest['Request ID'])
    return [e['event'] for e in shown.get('events') or []]


def _vault_pid(conn, server) -> str:
    """The excluded process's pid on the console's newest heartbeat."""
    found = list(servers.PS_RE.finditer(servers.console(conn, server)))
    assert found, 'no heartbeat on the console'
    return found[-1].group(2)


def _paths(cloud, conn, server) -> tuple[str, str]:
    name = conn.compute.get_server(server.id).instance_name
    path = os.path.join(cloud_nova.managed_save_dir(cloud.conf),
                        name + '.save')
    return path, path + SEALED_SUFFIX


def _suspend(conn, member_cli, server):
    member_cli.check('server', 'suspend', server.id)
    return conn.compute.wait_for_server(server, status='SUSPENDED',
                                        wait=900)


@pytest.fixture(scope='module')
def sealed(cloud, conn, member_conn, member_cli, images, flavor):
    """(server, vault pid, managed-save bytes, sealed-pages bytes and
    stat, last heartbeat before the suspend) while the server is
    suspended sealed.
    """
    server = servers.boot(member_conn, 'e2e-seal', images['root'], flavor)
    try:
        member_cli.set_properties(server.id, POLICY)
        pid = _vault_pid(conn, server)
        assert pid.isdigit(), pid
        beat = servers.last_beat(conn, server)
        server = _suspend(conn, member_cli, server)
        path, sealed_path = _paths(cloud, conn, server)
        with open(path, 'rb') as f:
            data = f.read()
        with open(sealed_path, 'rb') as f:
            sealed_data = f.read()
        yield server, pid, data, sealed_data, os.stat(sealed_path), beat
    finally:
        servers.delete(conn, server)


def test_sealed_managed_save_holds_no_excluded_memory(guest, sealed):
    _, _, data, sealed_data, st, _ = sealed
    assert servers.count(data, guest.vault_marker) == 0
    assert servers.count(data, guest.webapp_marker) > 0
    assert servers.count(sealed_data, guest.vault_marker) == 0
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size > 4096


def test_sealing_key_is_a_secret_of_the_project(member_session, sealed):
    server = sealed[0]
    found = _secrets_of(member_session, server)
    assert len(found) == 1, found
    assert found[0]['algorithm'] == 'AES' and found[0]['bit_length'] == 256


def test_suspend_action_says_sealed(member_cli, sealed):
    assert SEALED_EVENT in _events(member_cli, sealed[0], 'suspend')


def _dump_holds(cloud, conn, server, marker: str) -> int:
    """Occurrences of ``marker`` in a memory-only dump of the running
    guest (taken through the compute host's libvirt).
    """
    name = conn.compute.get_server(server.id).instance_name
    inside = '/var/lib/libvirt/qemu/e2e-seal-%d.core' % os.getpid()
    outside = libvirtd.host_path(cloud.conf, inside)
    lv = libvirt.open(libvirtd.connection_uri(cloud.conf))
    try:
        lv.lookupByName(name).coreDumpWithFormat(
            inside, libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_RAW,
            libvirt.VIR_DUMP_MEMORY_ONLY)
        with open(outside, 'rb') as f:
            return servers.count(f.read(), marker)
    finally:
        lv.close()
        if os.path.exists(outside):
            os.unlink(outside)


def test_resume_keeps_the_excluded_process_and_its_memory(
        cloud, conn, guest, member_cli, member_session, sealed):
    server, pid, _, _, _, beat = sealed
    member_cli.check('server', 'resume', server.id)
    conn.compute.wait_for_server(server, status='ACTIVE', wait=300)
    # The guest's heartbeat counts on from where it was saved (the
    # console log may start empty after the restore).
    deadline = time.monotonic() + 120
    while True:
        after = [m for m in servers.PS_RE.finditer(
            servers.console(conn, server)) if int(m.group(1)) > beat + 1]
        if after:
            break
        assert time.monotonic() < deadline, 'no heartbeat after the resume'
        time.sleep(2)
    assert after[-1].group(2) == pid, after[-1].group(0)
    assert _dump_holds(cloud, conn, server, guest.vault_marker) > 0
    assert _secrets_of(member_session, server) == []
    assert not os.path.exists(_paths(cloud, conn, server)[1])


def test_resume_without_the_key_keeps_the_server_suspended(
        cloud, conn, member_cli, member_session, sealed):
    server = sealed[0]
    if conn.compute.get_server(server.id).status != 'ACTIVE':
        pytest.skip('the server did not resume in the previous test')
    server = _suspend(conn, member_cli, server)
    found = _secrets_of(member_session, server)
    assert len(found) == 1, found
    deleted = member_session.delete(found[0]['secret_ref'])
    assert deleted.status_code == 204, deleted.text
    member_cli.check('server', 'resume', server.id)
    server = servers.wait_task_done(conn, server, timeout=300)
    assert server.status == 'SUSPENDED'
    events = _events(member_cli, server, 'resume')
    assert any(e.startswith(KEY_ERROR_EVENT) and 'could not be fetched' in e
               for e in events), events
    # Nothing was unsealed: the sealed pages are still there.
    assert os.path.exists(_paths(cloud, conn, server)[1])
