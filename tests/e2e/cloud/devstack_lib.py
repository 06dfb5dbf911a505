"""Run functions of devstack/lib/sparc, as the DevStack plugin does, with
the small stand-ins of ``devstack_compat.sh`` for DevStack's own.
"""

import os
import subprocess

from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

HERE = os.path.dirname(os.path.abspath(__file__))


def run(conf: settings_mod.CloudSettings, functions: list[str],
        env: dict[str, str], log_name: str = 'configure-sparc-nova.log'
        ) -> None:
    """Run ``functions`` in one bash with ``env`` added to the
    environment; the output goes to ``<logs>/<log_name>``.

    :raises processes.CloudError: a function failed (with the log's end)
    """
    env = dict(os.environ, SPARC_NOVA_DIR=settings_mod.REPO,
               SPARC_NOVA_PYTHON=conf.bin('python'),
               SPARC_CLOUD_VENV=conf.venv,
               # The checkout's modules win over the venv's install.
               PYTHONPATH=settings_mod.REPO, **env)
    script = 'set -euo pipefail; source "%s/devstack_compat.sh"; ' \
             'source "%s/devstack/lib/sparc"; %s' % (
                 HERE, settings_mod.REPO, '; '.join(functions))
    log = os.path.join(conf.logs, log_name)
    with open(log, 'ab') as out:
        result = subprocess.run(['bash', '-c', script], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise processes.CloudError('%s failed\n%s' % (
            ', '.join(functions), processes.log_tail(log)))
