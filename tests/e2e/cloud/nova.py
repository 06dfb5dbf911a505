"""Nova: API (gunicorn), conductor, scheduler and one compute service
running TCG guests through the cloud's own libvirtd (see
:mod:`tests.e2e.cloud.libvirtd`).

nova-compute runs as the unprivileged ``nova`` user, as deployed: it
reaches libvirt through the socket's group, and every privsep daemon
(Nova's and sparc-nova's) is started by Nova's root helper, ``sudo
nova-rootwrap <etc>/rootwrap.conf privsep-helper --config-file
<etc>/nova-cpu.conf ...``, allowed by the sudoers drop-in of
:mod:`tests.e2e.cloud.host_accounts` and by the filters Nova and
sparc-nova ship (copied into ``<etc>/rootwrap.d``, as an installation
does into ``/etc/nova/rootwrap.d``). ``<etc>`` is under ``/etc`` because
those filters accept configuration files only there. Everything else
(databases, instances, managed saves) stays under the state directory.

The daemon runs as root, after sudo cleared the environment: it imports
the sparc-nova installed in the cloud's virtualenv (``install.sh``), not
a checkout named by ``PYTHONPATH``.
"""

import os
import re
import shutil
import signal
import subprocess
import time

from tests.e2e.cloud import apis
from tests.e2e.cloud import devstack_lib
from tests.e2e.cloud import host_accounts
from tests.e2e.cloud import inifile
from tests.e2e.cloud import libvirtd
from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

Settings = settings_mod.CloudSettings

#: Compute host name, and the libvirt domain name of instance N.
HOST = 'sparc-cloud'
INSTANCE_NAME_TEMPLATE = 'sparc-cloud-%08x'

#: The services in the order they start (and stop in reverse).
SERVICES = ('nova-conductor', 'nova-scheduler', 'nova-compute')


def managed_save_dir(conf: Settings) -> str:
    """Where libvirt keeps ``<domain>.save`` files (its
    ``/var/lib/libvirt/qemu/save``, seen from outside its namespace).
    """
    return libvirtd.host_path(conf, '/var/lib/libvirt/qemu/save')


def instances_dir(conf: Settings) -> str:
    return conf.path('nova', 'instances')


def conf_file(conf: Settings) -> str:
    """nova.conf of the API, conductor and scheduler."""
    return conf.path('etc', 'nova', 'nova.conf')


def compute_conf_file(conf: Settings) -> str:
    """nova-cpu.conf: nova.conf without database access (under /etc)."""
    return os.path.join(conf.etc_dir, 'nova-cpu.conf')


#: The rootwrap filters of Nova (in its wheel's etc/) and of sparc-nova
#: (in this repository), installed into <etc>/rootwrap.d.
def _filters(conf: Settings) -> list[str]:
    return [conf.venv_etc('nova', 'rootwrap.d', 'compute.filters'),
            os.path.join(settings_mod.REPO, 'etc', 'sparc-nova',
                         'rootwrap.d', 'sparc-nova.filters')]


def _write_rootwrap(conf: Settings) -> None:
    """<etc>/rootwrap.conf and <etc>/rootwrap.d, root's and read-only to
    everyone else, as nova-rootwrap requires.
    """
    filters_dir = os.path.join(conf.etc_dir, 'rootwrap.d')
    os.makedirs(filters_dir, mode=0o755, exist_ok=True)
    for path in _filters(conf):
        target = os.path.join(filters_dir, os.path.basename(path))
        shutil.copyfile(path, target)
        os.chmod(target, 0o644)
    inifile.write_ini(host_accounts.rootwrap_conf(conf), {'DEFAULT': {
        'filters_path': filters_dir,
        # privsep-helper is the virtualenv's.
        'exec_dirs': ','.join([os.path.dirname(conf.bin('privsep-helper')),
                               '/sbin', '/usr/sbin', '/bin', '/usr/bin']),
        'use_syslog': False,
        'daemon_timeout': 600,
        'rlimit_nofile': 1024,
    }})
    os.chmod(host_accounts.rootwrap_conf(conf), 0o644)


def write_config(conf: Settings) -> None:
    """nova.conf, and nova-cpu.conf for the compute service."""
    state = conf.path('nova')
    authtoken = apis.authtoken(conf, 'nova')
    client = {k: v for k, v in authtoken.items()
              if k != 'www_authenticate_uri'}
    sections = {
        'DEFAULT': {
            'debug': True,
            'use_stderr': True,
            'host': HOST,
            'my_ip': conf.host,
            'state_path': state,
            'instances_path': os.path.join(state, 'instances'),
            'transport_url': conf.transport_url,
            'compute_driver': 'libvirt.LibvirtDriver',
            'instance_name_template': INSTANCE_NAME_TEMPLATE,
            'heal_instance_info_cache_interval': -1,
            'shelved_offload_time': 0,
            'rootwrap_config': host_accounts.rootwrap_conf(conf),
            # The test guest has no ACPI handler: power off at once.
            'shutdown_timeout': 0,
            'reserved_host_disk_mb': 0,
            'vif_plugging_is_fatal': False,
            'vif_plugging_timeout': 0,
        },
        'api': {'auth_strategy': 'keystone'},
        'api_database': {'connection': conf.db_url('nova_api')},
        'database': {'connection': conf.db_url('nova')},
        'keystone_authtoken': authtoken,
        'placement': client,
        'neutron': client,
        'service_user': dict(client, send_service_user_token=True),
        'conductor': {'workers': 1},
        'scheduler': {'workers': 1,
                      'discover_hosts_in_cells_interval': -1},
        'libvirt': {
            'virt_type': 'qemu',
            'cpu_mode': 'none',
            'connection_uri': libvirtd.connection_uri(conf),
        },
        'oslo_concurrency': {'lock_path': os.path.join(state, 'lock')},
        'oslo_messaging_notifications': {'driver': 'messagingv2'},
        'notifications': {'notification_format': 'both'},
        'vnc': {'enabled': False},
        'serial_console': {'enabled': False},
    }
    inifile.write_ini(conf_file(conf), sections)
    compute = {k: v for k, v in sections.items()
               if k not in ('database', 'api_database')}
    os.makedirs(conf.etc_dir, mode=0o755, exist_ok=True)
    inifile.write_ini(compute_conf_file(conf), compute)
    # Secrets inside: root's, readable by the nova group only.
    os.chown(compute_conf_file(conf), 0, host_accounts.compute_ids()[1])
    os.chmod(compute_conf_file(conf), 0o640)
    _write_rootwrap(conf)
    # The API reads its paste pipeline from the first of its files.
    shutil.copy(conf.venv_etc('nova', 'api-paste.ini'), paste_ini(conf))


def paste_ini(conf: Settings) -> str:
    """nova-api's api-paste.ini."""
    return conf.path('etc', 'nova', 'api-paste.ini')


def configure_sparc(conf: Settings, log_dir: str,
                    driver: str = 'sparc') -> None:
    """Run devstack/lib/sparc's configure_sparc_nova and
    configure_sparc_key_manager (the cloud's Barbican, for sealed
    suspends) on the compute service's nova-cpu.conf and
    configure_sparc_nova_api on nova.conf and api-paste.ini, as the
    DevStack plugin does with Barbican enabled; ``driver='stock'`` keeps
    Nova as it is.
    """
    if driver == 'stock':
        return
    devstack_lib.run(conf, [
        'configure_sparc_nova', 'configure_sparc_key_manager',
        'configure_sparc_nova_api', 'init_sparc_nova'], {
            'SPARC_NOVA_CONF': compute_conf_file(conf),
            'SPARC_NOVA_API_CONF': conf_file(conf),
            'SPARC_NOVA_API_PASTE_INI': paste_ini(conf),
            'SPARC_MANAGED_SAVE_DIR': managed_save_dir(conf),
            'SPARC_SEND_NOTIFICATIONS': 'true',
            # oslo.privsep's default: through Nova's root helper.
            'SPARC_PRIVSEP_HELPER_COMMAND': '',
            'SPARC_KEY_MANAGER_AUTH_URL': conf.auth_url,
            'SPARC_KEY_MANAGER_REGION': settings_mod.REGION})


def create_cells(conf: Settings, sup: processes.Supervisor) -> None:
    """Cells v2: API database, cell0, cell1, cell database."""
    manage = [conf.bin('nova-manage'), '--config-file', conf_file(conf)]
    sup.run('nova-manage', manage + ['api_db', 'sync'])
    sup.run('nova-manage', manage + [
        'cell_v2', 'map_cell0', '--database_connection',
        conf.db_url('nova_cell0')])
    sup.run('nova-manage', manage + ['cell_v2', 'create_cell', '--name',
                                     'cell1'])
    sup.run('nova-manage', manage + ['db', 'sync'])


def start(conf: Settings, sup: processes.Supervisor) -> None:
    """Start the API and the services; return once the compute host is
    mapped to cell1 and its resource provider is in Placement.
    """
    etc = os.path.dirname(conf_file(conf))
    uid, gid, _ = host_accounts.compute_ids()
    # nova-compute's own directories (state_path, instances, locks).
    for path in (conf.path('nova'), instances_dir(conf),
                 conf.path('nova', 'lock')):
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
    apis.serve(conf, sup, 'nova', 'nova.wsgi.osapi_compute',
               {'OS_NOVA_CONFIG_DIR': etc,
                'OS_NOVA_CONFIG_FILES': 'api-paste.ini;nova.conf'})
    for name in SERVICES:
        if name == 'nova-compute':
            start_compute(conf, sup)
        else:
            sup.start(name, [conf.bin(name), '--config-file',
                             conf_file(conf)])
    manage = [conf.bin('nova-manage'), '--config-file', conf_file(conf)]
    deadline = time.monotonic() + 180
    while True:
        for name in SERVICES:
            sup.check(name)
            _check_not_crashed(sup, name)
        sup.run('nova-manage', manage + ['cell_v2', 'discover_hosts'])
        listed = subprocess.run(manage + ['cell_v2', 'list_hosts'],
                                capture_output=True, text=True)
        if HOST in listed.stdout:
            break
        if time.monotonic() > deadline:
            raise processes.CloudError(
                'nova-compute did not register within 180s\n%s'
                % processes.log_tail(sup.log_path('nova-compute')))
        time.sleep(2)


def start_compute(conf: Settings, sup: processes.Supervisor) -> None:
    """Start nova-compute as the nova user (also after a crash). Its
    privsep sockets must be under /tmp (the filters' pattern).
    """
    sup.start('nova-compute', [conf.bin('nova-compute'), '--config-file',
                               compute_conf_file(conf)],
              env={'HOME': host_accounts.NOVA_HOME,
                   'USER': settings_mod.COMPUTE_USER,
                   'LOGNAME': settings_mod.COMPUTE_USER,
                   'TMPDIR': '/tmp'},
              ids=host_accounts.compute_ids())


#: The line a Nova service logs when it failed to start (its top-level
#: logger is "nova"); some then hang instead of exiting.
_CRASHED = re.compile(r' (ERROR|CRITICAL) nova [^.]')


def _check_not_crashed(sup: processes.Supervisor, name: str) -> None:
    with open(sup.log_path(name), errors='replace') as f:
        for line in f:
            if _CRASHED.search(line):
                raise processes.CloudError('%s failed to start\n%s' % (
                    name, processes.log_tail(sup.log_path(name), 30)))


def stop(conf: Settings, sup: processes.Supervisor) -> None:
    """Stop Nova's services, then the guests' QEMU processes (libvirtd
    leaves them running), then libvirtd.
    """
    for name in reversed(SERVICES + ('nova-api',)):
        sup.stop(name)
    for pid in qemu_pids(conf):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sup.stop('libvirtd')


def qemu_pids(conf: Settings) -> list[int]:
    """QEMU processes of this cloud's guests (their command lines name
    their disks, under the state directory).
    """
    root = (conf.state.rstrip('/') + '/').encode()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if argv and b'qemu-system' in argv[0] and any(
                root in a for a in argv):
            pids.append(int(entry))
    return pids
