"""Keystone, Glance, Placement and Neutron: configuration, database
schema, and their APIs served by gunicorn on 127.0.0.1.

Each API runs in one gunicorn master with one thread worker (the services'
WSGI modules through :mod:`tests.e2e.cloud.wsgi_app`).

Idle keep-alive connections are kept for :data:`KEEP_ALIVE` seconds, far
longer than any client here polls (openstacksdk waits 2 s between polls).
With gunicorn's default of 2 s the server closes a pooled connection just
as the client sends its next poll on it; on a loaded machine that lost a
request now and then (the client sees the connection reset).
"""

import shutil
import urllib.error
import urllib.request

from tests.e2e.cloud import devstack_lib
from tests.e2e.cloud import inifile
from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

Settings = settings_mod.CloudSettings

#: Seconds an idle keep-alive connection stays open (see above).
KEEP_ALIVE = 300


def _answers(url: str) -> bool:
    """True once ``url`` gives any HTTP answer below 500."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


def serve(conf: Settings, sup: processes.Supervisor, name: str,
          wsgi_module: str, env: dict[str, str]) -> None:
    """Start ``wsgi_module`` under gunicorn on ``conf.port(name)``; return
    once it answers HTTP.
    """
    env = dict(env, SPARC_CLOUD_WSGI_MODULE=wsgi_module)
    sup.start(name + '-api', [
        conf.bin('gunicorn'), '--no-control-socket',
        '--bind', '%s:%d' % (conf.host, conf.port(name)),
        '--worker-class', 'gthread', '--workers', '1', '--threads', '4',
        '--timeout', '600', '--graceful-timeout', '5',
        '--keep-alive', str(KEEP_ALIVE),
        '--pythonpath', settings_mod.REPO,
        'tests.e2e.cloud.wsgi_app:application'], env=env,
        port=(conf.host, conf.port(name)))
    sup.wait_until(name + '-api', lambda: _answers(conf.url(name, '/')),
                   'answering HTTP on %s' % conf.url(name, '/'),
                   timeout=180)


def authtoken(conf: Settings, user: str) -> dict[str, object]:
    """``[keystone_authtoken]`` (and the keystoneauth sections Nova uses
    for Placement and Neutron) for a service user.
    """
    return {
        'www_authenticate_uri': conf.url('keystone'),
        'auth_url': conf.url('keystone'),
        'auth_type': 'password',
        'project_domain_name': 'Default',
        'user_domain_name': 'Default',
        'project_name': settings_mod.SERVICE_PROJECT,
        'username': user,
        'password': conf.password,
        'region_name': settings_mod.REGION,
    }


def _common(conf: Settings, service: str) -> dict[str, dict[str, object]]:
    return {
        'DEFAULT': {'debug': True, 'use_stderr': True},
        'oslo_concurrency': {'lock_path': conf.path('lock', service)},
    }


def keystone(conf: Settings, sup: processes.Supervisor) -> None:
    """Keystone with Fernet tokens, bootstrapped with the ``admin`` user,
    project and role and its own catalog entry.
    """
    etc = conf.path('etc', 'keystone')
    sections = _common(conf, 'keystone')
    sections.update({
        'database': {'connection': conf.db_url('keystone')},
        'token': {'provider': 'fernet'},
        # The fewest bcrypt rounds: every service authenticates with a
        # password, on two shared cores.
        'identity': {'password_hash_rounds': 4},
        'fernet_tokens': {'key_repository': conf.path('keystone', 'fernet')},
        'credential': {'key_repository': conf.path('keystone', 'credential')},
        'cache': {'enabled': False},
    })
    conf_file = inifile.write_ini(etc + '/keystone.conf', sections)
    manage = [conf.bin('keystone-manage'), '--config-file', conf_file]
    sup.run('keystone-manage', manage + ['db_sync'])
    for repo in ('fernet_setup', 'credential_setup'):
        sup.run('keystone-manage', manage + [
            repo, '--keystone-user', 'root', '--keystone-group', 'root'])
    url = conf.url('keystone', '/v3')
    sup.run('keystone-manage', manage + [
        'bootstrap', '--bootstrap-password', conf.password,
        '--bootstrap-username', 'admin', '--bootstrap-project-name', 'admin',
        '--bootstrap-role-name', 'admin', '--bootstrap-service-name',
        'keystone', '--bootstrap-region-id', settings_mod.REGION,
        '--bootstrap-admin-url', url, '--bootstrap-internal-url', url,
        '--bootstrap-public-url', url])
    serve(conf, sup, 'keystone', 'keystone.wsgi.api',
          {'OS_KEYSTONE_CONFIG_DIR': etc})


def glance(conf: Settings, sup: processes.Supervisor) -> None:
    """Glance with one file store under the state directory, and
    devstack/lib/sparc's property protections and metadefs namespace.
    """
    etc = conf.path('etc', 'glance')
    sections = _common(conf, 'glance')
    sections['DEFAULT'].update({'enabled_backends': 'fs:file'})
    sections.update({
        'database': {'connection': conf.db_url('glance')},
        'keystone_authtoken': authtoken(conf, 'glance'),
        'paste_deploy': {'flavor': 'keystone'},
        'glance_store': {'default_backend': 'fs'},
        'fs': {'filesystem_store_datadir': conf.path('glance', 'images')},
        'os_glance_staging_store': {
            'filesystem_store_datadir': conf.path('glance', 'staging')},
        'os_glance_tasks_store': {
            'filesystem_store_datadir': conf.path('glance', 'tasks')},
    })
    conf_file = inifile.write_ini(etc + '/glance-api.conf', sections)
    shutil.copy(conf.venv_etc('glance', 'glance-api-paste.ini'), etc)
    sparc_env = {'SPARC_GLANCE_CONF_DIR': etc,
                 'SPARC_GLANCE_API_CONF': conf_file,
                 'SPARC_GLANCE_MANAGE': conf.bin('glance-manage')}
    devstack_lib.run(conf, ['configure_sparc_glance'], sparc_env,
                     'configure-sparc-glance.log')
    sup.run('glance-manage', [conf.bin('glance-manage'), '--config-file',
                              conf_file, 'db_sync'])
    devstack_lib.run(conf, ['init_sparc_glance'], sparc_env,
                     'configure-sparc-glance.log')
    serve(conf, sup, 'glance', 'glance.wsgi.api',
          {'OS_GLANCE_CONFIG_DIR': etc})


def placement(conf: Settings, sup: processes.Supervisor) -> None:
    etc = conf.path('etc', 'placement')
    sections = _common(conf, 'placement')
    sections.update({
        'placement_database': {'connection': conf.db_url('placement')},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': authtoken(conf, 'placement'),
    })
    conf_file = inifile.write_ini(etc + '/placement.conf', sections)
    sup.run('placement-manage', [conf.bin('placement-manage'),
                                 '--config-file', conf_file, 'db', 'sync'])
    serve(conf, sup, 'placement', 'placement.wsgi.api',
          {'OS_PLACEMENT_CONFIG_DIR': etc})


def neutron(conf: Settings, sup: processes.Supervisor) -> None:
    """neutron-server's API: ML2 with no mechanism drivers and no agents.
    Nova's servers are created with no network (``networks='none'``);
    what Nova asks of Neutron for them (ports of the instance, security
    groups, extensions) is answered by the real server from its database.
    """
    etc = conf.path('etc', 'neutron')
    sections = _common(conf, 'neutron')
    sections['DEFAULT'].update({
        'core_plugin': 'ml2',
        # The port listing Nova makes needs the port forwarding model,
        # which this plugin (and the router plugin it requires) loads.
        'service_plugins': 'router,port_forwarding',
        'auth_strategy': 'keystone',
        'api_paste_config': conf.venv_etc('neutron', 'api-paste.ini'),
        'transport_url': conf.transport_url,
        'notify_nova_on_port_status_changes': False,
        'notify_nova_on_port_data_changes': False,
    })
    sections.update({
        'database': {'connection': conf.db_url('neutron')},
        'keystone_authtoken': authtoken(conf, 'neutron'),
    })
    files = [
        inifile.write_ini(etc + '/neutron.conf', sections),
        inifile.write_ini(etc + '/ml2_conf.ini', {'ml2': {
            'type_drivers': 'flat',
            'tenant_network_types': '',
            'mechanism_drivers': '',
            'extension_drivers': 'port_security',
        }}),
    ]
    sup.run('neutron-db-manage', [conf.bin('neutron-db-manage'),
                                  '--config-file', files[0],
                                  '--config-file', files[1],
                                  'upgrade', 'heads'])
    serve(conf, sup, 'neutron', 'neutron.wsgi.api', {
        'OS_NEUTRON_CONFIG_DIR': etc,
        'OS_NEUTRON_CONFIG_FILES': 'neutron.conf;ml2_conf.ini',
        'SPARC_CLOUD_WSGI_CONFIGURE_MAPPERS': '1'})
