"""Bring the whole test cloud up and down."""

import logging
import os
import shutil
import signal
import time

from tests.e2e.cloud import apis
from tests.e2e.cloud import catalog
from tests.e2e.cloud import host_accounts
from tests.e2e.cloud import infra
from tests.e2e.cloud import keymanager
from tests.e2e.cloud import libvirtd
from tests.e2e.cloud import nova
from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

LOG = logging.getLogger(__name__)


class TestCloud:
    """One all-in-one cloud. ``up()`` starts from an empty state directory
    (after stopping whatever a previous run left); ``down()`` stops every
    process and keeps the logs.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, conf: settings_mod.CloudSettings | None = None,
                 driver: str = 'sparc'):
        self.conf = conf or settings_mod.CloudSettings.from_environ()
        self.driver = driver
        self.sup = processes.Supervisor(self.conf.path('run'),
                                        self.conf.logs)
        self.timings: dict[str, float] = {}

    def _step(self, name: str, fn, *args) -> None:
        start = time.monotonic()
        LOG.info('cloud: %s', name)
        fn(*args)
        self.timings[name] = round(time.monotonic() - start, 1)

    def up(self) -> None:
        """Bring everything up (the logs of the previous run are removed);
        on failure stop what started and raise
        :class:`~tests.e2e.cloud.processes.CloudError`.
        """
        self.clean()
        os.makedirs(self.conf.state)
        os.chmod(self.conf.state, 0o755)
        shutil.rmtree(self.conf.logs, ignore_errors=True)
        os.makedirs(self.conf.logs)
        c, s = self.conf, self.sup
        try:
            self._step('accounts', host_accounts.ensure, c)
            self._step('libvirtd', libvirtd.start, c, s)
            self._step('mariadb', infra.MariaDB(c, s).start)
            self._step('rabbitmq', infra.RabbitMQ(c, s).start)
            self._step('keystone', apis.keystone, c, s)
            self._step('catalog', catalog.populate, c)
            self._step('glance', apis.glance, c, s)
            self._step('placement', apis.placement, c, s)
            self._step('neutron', apis.neutron, c, s)
            self._step('barbican', keymanager.start, c, s)
            self._step('nova-config', self._configure_nova)
            self._step('nova-cells', nova.create_cells, c, s)
            self._step('nova', nova.start, c, s)
        except BaseException:
            LOG.error('cloud: bring-up failed after %s', self.timings)
            self.down()
            raise
        with open(c.path('openrc'), 'w') as f:
            f.write(catalog.openrc(c))

    def _configure_nova(self) -> None:
        nova.write_config(self.conf)
        nova.configure_sparc(self.conf, self.conf.logs, self.driver)

    def down(self) -> None:
        """Stop every process of this cloud (Nova first, the database and
        broker last).
        """
        nova.stop(self.conf, self.sup)
        self.sup.stop_all()
        self.sup.stop_leftovers()

    def clean(self) -> None:
        """Stop what a previous run left and remove its state (not its
        logs) and its configuration under /etc.
        """
        self.sup.stop_leftovers()
        if os.path.isdir(self.conf.state):
            for pid in nova.qemu_pids(self.conf):
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(self.conf.state)
        host_accounts.remove_sudoers(self.conf)
        shutil.rmtree(self.conf.etc_dir, ignore_errors=True)

    def sql(self, database: str, statement: str) -> list[list[str]]:
        """Query one of the cloud's databases (rows of strings)."""
        return infra.MariaDB(self.conf, self.sup).sql(statement, database)

    def connect(self):
        """An openstacksdk connection as the cloud's admin."""
        return catalog.connect(self.conf)

    def connect_member(self):
        """An openstacksdk connection as the tenant's member."""
        return catalog.connect_member(self.conf)
