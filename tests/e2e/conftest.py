"""The end-to-end stage: one test cloud for the whole session.

The cloud is installed (``cloud/install.sh``, skipped when already
there, or not run at all with ``SPARC_CLOUD_INSTALLED=1``), brought up
once, and always brought down at the end of the session, SIGTERM
included; its logs stay in ``artifacts/cloud`` and the stage's wall time
and peak memory are written to ``artifacts/cloud/usage.json``. The test
guest (see :mod:`guest_image`) is built and uploaded to Glance once.
"""

import os
import signal
import subprocess

import pytest

from tests.e2e import cli
from tests.e2e.cloud import cloud as cloud_mod
from tests.e2e.cloud import processes
from tests.e2e.cloud import settings
from tests.e2e import guest_image
from tests.e2e import notifications as notifications_mod
from tests.e2e import usage

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith('tests/e2e/'):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


def _install(log_dir: str) -> None:
    """Run install.sh, unless ``SPARC_CLOUD_INSTALLED=1`` says the cloud's
    virtualenv is already there and must be left as it is (it installs
    this checkout into it, which a shared virtualenv must not get).
    """
    if os.environ.get('SPARC_CLOUD_INSTALLED') == '1':
        return
    os.makedirs(log_dir, exist_ok=True)
    log = os.path.join(log_dir, 'e2e-install.log')
    with open(log, 'wb') as out:
        result = subprocess.run(
            ['bash', os.path.join(HERE, 'cloud', 'install.sh')],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        pytest.fail('test cloud install failed, see %s' % log)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


@pytest.fixture(scope='session')
def cloud():
    """The running test cloud (:class:`cloud.cloud.TestCloud`)."""
    _install(os.path.join(settings.REPO, 'artifacts'))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    test_cloud = cloud_mod.TestCloud()
    monitor = usage.UsageMonitor(test_cloud)
    try:
        test_cloud.up()
        monitor.start()
        yield test_cloud
    finally:
        test_cloud.down()
        signal.signal(signal.SIGTERM, previous)
        _FIGURES.update(monitor.stop(os.path.join(test_cloud.conf.logs,
                                                  'usage.json')))
        _INCIDENTS.extend(processes.worker_incidents(test_cloud.conf.logs))


#: Wall time and peak memory of the stage, for the terminal summary.
_FIGURES: dict = {}
#: API workers that died during the stage (gunicorn's lines), likewise.
_INCIDENTS: list = []


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.write_line('e2e stage: %s' % _FIGURES)
    for line in _INCIDENTS:
        terminalreporter.write_line('e2e cloud worker died: %s' % line)


@pytest.fixture(scope='session')
def conn(cloud):
    """openstacksdk, as the cloud's admin."""
    connection = cloud.connect()
    yield connection
    connection.close()


@pytest.fixture(scope='session')
def member_conn(cloud):
    """openstacksdk as a member (no admin role) of the tenant's project."""
    connection = cloud.connect_member()
    yield connection
    connection.close()


@pytest.fixture(scope='session')
def member_cli(cloud):
    """The ``openstack`` CLI as the same member."""
    return cli.MemberCLI(cloud.conf)


@pytest.fixture(scope='session')
def notifications(cloud):
    """Every notification published from now on."""
    log = notifications_mod.NotificationLog(cloud.conf.amqp_url)
    log.start()
    yield log
    log.stop()


@pytest.fixture(scope='session')
def guest(cloud):
    """The test guest's files and markers."""
    return guest_image.build_guest(cloud.conf.path('guest'))


@pytest.fixture(scope='session')
def images(conn, guest):
    """Glance images: ``root`` (ext4 root disk) and ``root_luks`` (with a
    LUKS volume nobody has the key of), both booting the test kernel and
    ramdisk; public, as an operator's base images are.
    """
    kernel = conn.image.create_image(
        name='sparc-e2e-kernel', filename=guest.kernel, disk_format='aki',
        container_format='aki', wait=True, visibility='public')
    ramdisk = conn.image.create_image(
        name='sparc-e2e-ramdisk', filename=guest.ramdisk, disk_format='ari',
        container_format='ari', wait=True, visibility='public')
    made = {}
    for name, path in (('root', guest.root),
                       ('root_luks', guest.root_luks)):
        made[name] = conn.image.create_image(
            name='sparc-e2e-' + name, filename=path, disk_format='ami',
            container_format='ami', wait=True, visibility='public',
            kernel_id=kernel.id,
            ramdisk_id=ramdisk.id,
            os_command_line=guest_image.KERNEL_CMDLINE)
    return made


@pytest.fixture(scope='session')
def flavor(conn):
    return conn.compute.create_flavor(name='sparc.e2e', ram=256, vcpus=1,
                                      disk=1)
