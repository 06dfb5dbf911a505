"""Barbican, the cloud's key manager: configuration, database schema and
its API served by gunicorn (:func:`tests.e2e.cloud.apis.serve`).
nova-compute's castellan is pointed at it by devstack/lib/sparc's
``configure_sparc_key_manager`` (see
:func:`tests.e2e.cloud.nova.configure_sparc`): ``[key_manager] backend =
barbican`` and ``[barbican]`` with the cloud's Keystone as
``auth_endpoint``.

Secrets are stored by the ``store_crypto`` plugin with ``simple_crypto``:
each project's key-encryption key is wrapped by a master KEK, a Fernet key
generated for every bring-up (the state directory, which holds the
database, is wiped at each one) and written only into this cloud's
``barbican.conf`` (mode 0600).

Barbican reads its configuration from the default oslo.config locations
only (its modules parse it at import time, with no file named): the
processes run with ``HOME`` set to the directory holding
``barbican.conf``, the second place oslo.config looks (after
``~/.barbican/``, which does not exist there). Its WSGI script names a
fixed ``/etc/barbican`` paste file, so the API is loaded from this cloud's
copy of the paste file instead (``SPARC_CLOUD_WSGI_PASTE_INI``, see
:mod:`tests.e2e.cloud.wsgi_app`), whose ``/v1`` pipeline authenticates
with keystonemiddleware (``barbican-api-keystone``).

Access is Barbican's default policy (new defaults, project scope): a
project member creates, lists, reads and deletes the project's secrets;
a member of another project is refused (403).
"""

import base64
import os
import secrets
import shutil

from tests.e2e.cloud import apis
from tests.e2e.cloud import inifile
from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

__all__ = ['start', 'conf_dir', 'SERVICE_TYPE']

Settings = settings_mod.CloudSettings

#: Barbican's type in the service catalog (castellan looks it up).
SERVICE_TYPE = 'key-manager'


def conf_dir(conf: Settings) -> str:
    """The directory of ``barbican.conf`` (and the processes' HOME)."""
    return conf.path('etc', 'barbican')


def _new_kek() -> str:
    """A fresh master KEK: a Fernet key (32 random bytes, urlsafe
    base64), as simple_crypto expects.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _write_config(conf: Settings) -> tuple[str, str]:
    """Write barbican.conf (owner-only: it holds the KEK and the service
    password) and the paste file; return both paths.
    """
    etc = conf_dir(conf)
    sections = {
        'DEFAULT': {
            'debug': True,
            'use_stderr': True,
            # The base of the secret references Barbican hands out.
            'host_href': conf.url('barbican'),
            # The schema is made by barbican-manage before the API starts.
            'db_auto_create': False,
        },
        'database': {'connection': conf.db_url('barbican')},
        'keystone_authtoken': apis.authtoken(conf, 'barbican'),
        'oslo_policy': {'enforce_scope': True,
                        'enforce_new_defaults': True},
        # Orders are processed in the API request (no worker).
        'queue': {'enable': False},
        'secretstore': {'enabled_secretstore_plugins': 'store_crypto'},
        'crypto': {'enabled_crypto_plugins': 'simple_crypto'},
        'simple_crypto_plugin': {'kek': _new_kek()},
        'oslo_concurrency': {'lock_path': conf.path('lock', 'barbican')},
    }
    os.makedirs(etc, mode=0o700, exist_ok=True)
    path = os.path.join(etc, 'barbican.conf')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    inifile.write_ini(path, sections)
    paste = shutil.copy(
        conf.venv_etc('barbican', 'barbican-api-paste.ini'), etc)
    return path, paste


def start(conf: Settings, sup: processes.Supervisor) -> None:
    """Configure Barbican, create its schema (``barbican-manage db
    upgrade``) and serve its API; return once it answers HTTP.
    """
    conf_file, paste = _write_config(conf)
    env = {'HOME': conf_dir(conf)}
    sup.run('barbican-manage', [conf.bin('barbican-manage'), 'db',
                                'upgrade'], env=env)
    apis.serve(conf, sup, 'barbican', 'barbican.api.app',
               dict(env, SPARC_CLOUD_WSGI_PASTE_INI=paste))
