"""The compute host crashes in the middle of a suspend's scrub: the
privsep daemon (which does the scrub) and nova-compute are killed while a
member's ``openstack server suspend`` of a server with a memory policy is
being scrubbed. When nova-compute starts again, ``init_host`` finds the
durable record of the unscrubbed managed save and deletes it: no file on
the host holds the guest's memory, the server is in ERROR with a fault the
member reads with ``openstack server show`` (see doc/nova.md, Suspend),
and a hard reboot starts it again from its disks.

The kill is triggered by the record (``<name>.save.sparc-pending``, written
before the memory image) together with the ``sparc.scrub.start``
notification, whatever the order of libvirt's save and the scrub.
"""

import os
import re
import signal
import time

import pytest

from tests.e2e.cloud import libvirtd
from tests.e2e.cloud import nova as cloud_nova
from tests.e2e import compute_host
from tests.e2e import notifications as notif
from tests.e2e import servers

#: Nova's image files of an instance (they hold the guest's files, not its
#: memory) and its image cache.
IMAGE_FILES = ('_base', 'disk', 'kernel', 'ramdisk')

#: What init_host's fault says (sparc_nova.virt.exception).
FAULT = 'did not finish scrubbing its memory image before nova-compute ' \
        'stopped'


def _kill_mid_scrub(cloud, notifications, server, marker: str,
                    timeout: float = 300) -> None:
    """Wait until the save is recorded as unscrubbed and its scrub has
    started, then SIGKILL sparc-nova's privsep daemon and nova-compute
    (its whole process group), so neither can finish or roll back.
    """
    deadline = time.monotonic() + timeout
    started = notif.for_instance(server.id)
    while not (os.path.exists(marker) and
               notifications.find('sparc.scrub.start', started)):
        assert time.monotonic() < deadline, \
            'no scrub in progress within %ds (record %s: %s)' % (
                timeout, marker, os.path.exists(marker))
        time.sleep(0.05)
    daemons = compute_host.privsep_daemons(cloud)
    compute = compute_host.compute_pid(cloud)
    for pid in daemons:
        os.kill(pid, signal.SIGKILL)
    os.killpg(compute, signal.SIGKILL)
    assert daemons, 'no privsep daemon of sparc-nova to kill'


def _wait_status(conn, server, status: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server.id)
        if server.status == status and server.task_state is None:
            return server
        assert time.monotonic() < deadline, \
            '%s is %s/%s after %ds, not %s' % (
                server.name, server.status, server.task_state, timeout,
                status)
        time.sleep(2)


@pytest.fixture(scope='module')
def crashed(cloud, conn, member_conn, member_cli, images, flavor,
            notifications):
    """(server, instance name) after the crash and the restart of
    nova-compute, once the server is in ERROR (or after 180 s).
    """
    server = servers.boot(member_conn, 'e2e-suspend-crash', images['root'],
                          flavor)
    member_cli.set_properties(server.id,
                              {'sparc:exclude_processes': 'vault'})
    name = conn.compute.get_server(server.id).instance_name
    marker = os.path.join(cloud_nova.managed_save_dir(cloud.conf),
                          name + '.save.sparc-pending')
    member_cli.check('server', 'suspend', server.id)
    try:
        _kill_mid_scrub(cloud, notifications, server, marker)
        # Killed before the scrub ended: the record is still there.
        assert os.path.exists(marker), 'the suspend ended before the kill'
    finally:
        cloud.sup.stop('nova-compute')
        cloud_nova.start_compute(cloud.conf, cloud.sup)
    try:
        server = _wait_status(conn, server, 'ERROR', timeout=180)
    except AssertionError:
        # Not handled at the start: each test says what is left wrong.
        server = conn.compute.get_server(server.id)
    yield server, name
    servers.delete(conn, server)


def test_no_unscrubbed_memory_left_on_the_host(cloud, guest, crashed):
    server, name = crashed
    save_dir = cloud_nova.managed_save_dir(cloud.conf)
    assert not [n for n in os.listdir(save_dir) if n.startswith(name)]
    files = compute_host.path_files(
        libvirtd.root(cloud.conf), cloud_nova.instances_dir(cloud.conf),
        skip=IMAGE_FILES)
    assert files
    for path in files:
        with open(path, 'rb') as f:
            data = f.read()
        for marker in (guest.vault_marker, guest.webapp_marker):
            assert servers.count(data, marker) == 0, path


def test_member_reads_what_happened(member_cli, crashed):
    server, _ = crashed
    shown = member_cli.json('server', 'show', server.id)
    assert shown['status'] == 'ERROR'
    assert FAULT in str(shown.get('fault')), shown.get('fault')


def test_hard_reboot_brings_it_back(conn, member_cli, crashed):
    server, _ = crashed
    member_cli.check('server', 'reboot', '--hard', server.id)
    _wait_status(conn, server, 'ACTIVE')
    # A fresh boot of the guest (the guest was off: no console before;
    # Nova's console log starts anew with each start): its workloads run.
    ready = re.compile(r'SPARC-PS beat=\d+ vault=\d+ webapp=\d+')
    servers.wait_console(conn, server, ready)
