"""The test cloud's database and message broker: private MariaDB and
RabbitMQ instances (own data directories, own Erlang cookie and HOME,
non-default ports on 127.0.0.1), so that they never meet a server the
machine already runs.
"""

import os
import secrets
import subprocess

import kombu

from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

#: One database per service (nova needs three: API, cell0, cell1).
DATABASES = ('keystone', 'glance', 'placement', 'neutron', 'nova_api',
             'nova_cell0', 'nova', 'barbican')


class MariaDB:
    """``mariadbd`` with its data directory under the state directory."""

    name = 'mariadb'

    def __init__(self, conf: settings_mod.CloudSettings,
                 sup: processes.Supervisor):
        self.conf = conf
        self.sup = sup
        self.datadir = conf.path('mariadb', 'data')
        self.socket = conf.path('mariadb', 'mariadb.sock')

    def sql(self, statement: str, database: str = '') -> list[list[str]]:
        """Run SQL as the server's root user (unix socket); return the
        rows it printed (tab-separated columns).
        """
        result = subprocess.run(
            ['mariadb', '--no-defaults', '-S', self.socket, '-uroot', '-N',
             '-B', '-e', statement] + ([database] if database else []),
            check=True, capture_output=True, text=True)
        return [line.split('\t') for line in result.stdout.splitlines()]

    def start(self) -> None:
        os.makedirs(self.datadir)
        self.sup.run('mariadb-install-db', [
            'mariadb-install-db', '--no-defaults', '--user=root',
            '--datadir=' + self.datadir, '--skip-test-db',
            '--auth-root-authentication-method=socket'])
        self.sup.start(self.name, [
            '/usr/sbin/mariadbd', '--no-defaults', '--user=root',
            '--datadir=' + self.datadir, '--socket=' + self.socket,
            '--pid-file=' + self.conf.path('mariadb', 'mariadb.pid'),
            '--bind-address=' + self.conf.host,
            '--port=%d' % self.conf.port('mariadb'),
            '--skip-name-resolve', '--skip-log-bin',
            '--max-connections=1000',
            '--character-set-server=utf8mb4',
            '--collation-server=utf8mb4_general_ci',
            # A throw-away database: durability buys nothing here.
            '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=0',
            '--innodb-buffer-pool-size=256M'],
            port=(self.conf.host, self.conf.port('mariadb')))
        self.sup.wait_until(self.name, lambda: os.path.exists(self.socket),
                            'accepting connections')
        self.sup.wait_port(self.name, self.conf.host,
                           self.conf.port('mariadb'))
        grants = ["CREATE USER 'sparc'@'%s' IDENTIFIED BY '%s'"
                  % (self.conf.host, self.conf.password),
                  "GRANT ALL ON *.* TO 'sparc'@'%s'" % self.conf.host]
        grants += ['CREATE DATABASE %s' % db for db in DATABASES]
        self.sql('; '.join(grants))


class RabbitMQ:
    """``rabbitmq-server`` with its own node name, Erlang cookie, HOME,
    ``epmd`` and configuration; the distribution port and epmd listen on
    127.0.0.1 only.
    """

    name = 'rabbitmq'
    server = '/usr/lib/rabbitmq/bin/rabbitmq-server'

    def __init__(self, conf: settings_mod.CloudSettings,
                 sup: processes.Supervisor):
        self.conf = conf
        self.sup = sup
        self.base = conf.path('rabbitmq')

    def _env(self) -> dict[str, str]:
        b = self.base
        return {
            'HOME': os.path.join(b, 'home'),
            'ERL_EPMD_ADDRESS': self.conf.host,
            'ERL_EPMD_PORT': str(self.conf.port('epmd')),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(b, 'rabbitmq-env.conf'),
            'RABBITMQ_CONFIG_FILE': os.path.join(b, 'rabbitmq.conf'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(b, 'plugins'),
            'RABBITMQ_MNESIA_BASE': os.path.join(b, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(b, 'log'),
            'RABBITMQ_PID_FILE': os.path.join(b, 'rabbitmq.pid'),
            'RABBITMQ_NODENAME': 'sparc-cloud@localhost',
            'RABBITMQ_NODE_IP_ADDRESS': self.conf.host,
            'RABBITMQ_NODE_PORT': str(self.conf.port('rabbitmq')),
            'RABBITMQ_DIST_PORT': str(self.conf.port('rabbitmq_dist')),
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS':
                '-kernel inet_dist_use_interface {127,0,0,1}',
        }

    def _write_files(self) -> None:
        home = os.path.join(self.base, 'home')
        for d in (home, os.path.join(self.base, 'mnesia'),
                  os.path.join(self.base, 'log')):
            os.makedirs(d)
        cookie = os.path.join(home, '.erlang.cookie')
        with open(cookie, 'w') as f:
            f.write(secrets.token_hex(16))
        os.chmod(cookie, 0o400)
        with open(os.path.join(self.base, 'rabbitmq.conf'), 'w') as f:
            f.write('listeners.tcp.default = %s:%d\n'
                    'default_user = sparc\n'
                    'default_pass = %s\n'
                    'log.console = true\n'
                    'log.console.level = warning\n'
                    'log.file = false\n'
                    'disk_free_limit.absolute = 50MB\n'
                    % (self.conf.host, self.conf.port('rabbitmq'),
                       self.conf.password))
        with open(os.path.join(self.base, 'plugins'), 'w') as f:
            f.write('[].\n')
        open(os.path.join(self.base, 'rabbitmq-env.conf'), 'w').close()

    def start(self) -> None:
        self._write_files()
        env = self._env()
        epmd = (self.conf.host, self.conf.port('epmd'))
        self.sup.start('epmd', ['epmd', '-address', epmd[0], '-port',
                                str(epmd[1])], env=env, port=epmd)
        self.sup.wait_port('epmd', *epmd)
        self.sup.start(self.name, [self.server], env=env,
                       port=(self.conf.host, self.conf.port('rabbitmq')))
        self.sup.wait_until(self.name, self._accepts_login,
                            'accepting AMQP logins')

    def _accepts_login(self) -> bool:
        if not processes.port_open(self.conf.host,
                                   self.conf.port('rabbitmq')):
            return False
        try:
            with kombu.Connection(self.conf.amqp_url,
                                  connect_timeout=2) as c:
                c.connect()
            return True
        except Exception:
            return False
