"""Where the test cloud lives and how its parts reach each other.

Every value can be overridden by an environment variable, so that two
clouds (or a cloud and a CI run) can share a machine: ``SPARC_CLOUD_STATE``
(databases, images, instances; wiped at every bring-up),
``SPARC_CLOUD_LOGS`` (one log file per service, kept after tear-down),
``SPARC_CLOUD_VENV`` (the virtualenv holding the OpenStack services) and
``SPARC_CLOUD_PORT_BASE`` (every port is this base plus a fixed offset)
and ``SPARC_CLOUD_ETC`` (nova-compute's configuration and rootwrap.conf:
under ``/etc``, as rootwrap's filters require; by default a directory of
``/etc/sparc-cloud`` named after the state directory).
Everything listens on 127.0.0.1 only.
"""

import dataclasses
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

#: Port offsets from the base, one per listening service.
PORT_OFFSETS = {
    'mariadb': 306,
    'epmd': 369,
    'keystone': 500,
    'barbican': 311,
    'glance': 292,
    'rabbitmq': 672,
    'rabbitmq_dist': 673,
    'neutron': 696,
    'nova': 774,
    'placement': 778,
}

#: The unprivileged user nova-compute runs as, and the group of libvirt's
#: read-write socket (as Debian's libvirt-daemon-system names them).
COMPUTE_USER = 'nova'
LIBVIRT_GROUP = 'libvirt'

REGION = 'RegionOne'
SERVICE_PROJECT = 'service'


@dataclasses.dataclass(frozen=True)
class CloudSettings:
    """Paths, ports and secrets of one test cloud."""

    state: str
    logs: str
    venv: str
    port_base: int
    etc: str = ''
    password: str = 'sparc-cloud-secret'
    host: str = '127.0.0.1'

    @classmethod
    def from_environ(cls) -> 'CloudSettings':
        return cls(
            state=os.environ.get('SPARC_CLOUD_STATE', '/var/tmp/sparc-cloud'),
            logs=os.environ.get('SPARC_CLOUD_LOGS',
                                os.path.join(REPO, 'artifacts', 'cloud')),
            venv=os.environ.get('SPARC_CLOUD_VENV', '/opt/sparc/cloud-venv'),
            port_base=int(os.environ.get('SPARC_CLOUD_PORT_BASE', '17000')),
            etc=os.environ.get('SPARC_CLOUD_ETC', ''))

    @property
    def etc_dir(self) -> str:
        """nova-compute's configuration directory (under ``/etc``)."""
        if self.etc:
            return self.etc
        name = re.sub(r'[^A-Za-z0-9_-]', '_', self.state.strip('/'))
        return os.path.join('/etc/sparc-cloud', name)

    @property
    def sudoers_file(self) -> str:
        """The sudoers drop-in that lets nova-compute run nova-rootwrap
        with this cloud's rootwrap.conf (sudo ignores names with a dot).
        """
        return os.path.join('/etc/sudoers.d', 'sparc-cloud-' + re.sub(
            r'[^A-Za-z0-9_-]', '_', self.etc_dir.strip('/')))

    def port(self, service: str) -> int:
        return self.port_base + PORT_OFFSETS[service]

    def url(self, service: str, path: str = '') -> str:
        return 'http://%s:%d%s' % (self.host, self.port(service), path)

    def path(self, *parts: str) -> str:
        """A path under the state directory."""
        return os.path.join(self.state, *parts)

    def bin(self, name: str) -> str:
        """A program installed in the cloud's virtualenv."""
        return os.path.join(self.venv, 'bin', name)

    def venv_etc(self, *parts: str) -> str:
        """A file the services' wheels installed under ``<venv>/etc``."""
        return os.path.join(self.venv, 'etc', *parts)

    def db_url(self, database: str) -> str:
        return 'mysql+pymysql://sparc:%s@%s:%d/%s?charset=utf8mb4' % (
            self.password, self.host, self.port('mariadb'), database)

    @property
    def transport_url(self) -> str:
        return 'rabbit://sparc:%s@%s:%d/' % (
            self.password, self.host, self.port('rabbitmq'))

    @property
    def amqp_url(self) -> str:
        """The broker as kombu spells it (the notification consumers)."""
        return 'amqp://sparc:%s@%s:%d//' % (
            self.password, self.host, self.port('rabbitmq'))

    @property
    def auth_url(self) -> str:
        return self.url('keystone', '/v3')
