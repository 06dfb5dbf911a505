"""The ``openstack`` command line (python-openstackclient of the test
cloud), run as the tenant's project member: the way a tenant sets a policy
and snapshots, suspends or shelves a server.
"""

import json
import os
import subprocess
from typing import Any

from tests.e2e.cloud import catalog
from tests.e2e.cloud import settings as settings_mod

#: Seconds one command may take (``--wait`` commands included).
COMMAND_TIMEOUT = 900


class MemberCLI:
    """``openstack`` as the member of the tenant's project (no admin
    role), authenticated through ``OS_*`` variables.
    """

    def __init__(self, conf: settings_mod.CloudSettings):
        self._argv0 = conf.bin('openstack')
        self._env = dict(os.environ)
        for key, value in catalog.member_auth(conf).items():
            self._env['OS_' + key.upper()] = value
        self._env.update(OS_REGION_NAME=settings_mod.REGION,
                         OS_IDENTITY_API_VERSION='3')

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT
            ) -> subprocess.CompletedProcess:
        """``openstack ARGS``; the completed process, whatever its exit
        status.
        """
        return subprocess.run([self._argv0] + list(args), env=self._env,
                              capture_output=True, text=True,
                              timeout=timeout)

    def check(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """``openstack ARGS``, which must succeed; its standard output.

        :raises AssertionError: non-zero exit, with the command and its
            standard error.
        """
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            'openstack %s: exit %d\n%s' % (' '.join(args), result.returncode,
                                           result.stderr[-3000:]))
        return result.stdout

    def json(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """``openstack ARGS -f json``, which must succeed; its output
        decoded.
        """
        return json.loads(self.check(*args, '-f', 'json', timeout=timeout))

    def set_properties(self, server_id: str, properties: dict) -> None:
        """``openstack server set --property K=V ...`` (server metadata)."""
        args = []
        for key, value in properties.items():
            args += ['--property', '%s=%s' % (key, value)]
        self.check('server', 'set', *args, server_id)

    def download_image(self, image_id: str, path: str) -> bytes:
        """``openstack image save``: the bytes Glance serves the member."""
        self.check('image', 'save', '--file', path, image_id)
        with open(path, 'rb') as f:
            return f.read()
