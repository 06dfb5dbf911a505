"""Nova: API (gunicorn), conductor, scheduler and one compute service
running TCG guests through libvirt's embedded QEMU driver.

The compute service's libvirt is ``qemu:///embed?root=<state>/libvirt``: a
private domain namespace inside nova-compute, so that domains of the
machine's own libvirtd are never seen (nova-compute refuses a fresh
database while its libvirt already holds domains) and the guests' files
(managed-save images included) live under the state directory.
"""

import os
import re
import shutil
import signal
import subprocess
import time

from tests.e2e.cloud import apis
from tests.e2e.cloud import devstack_lib
from tests.e2e.cloud import inifile
from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

Settings = settings_mod.CloudSettings

#: Compute host name, and the libvirt domain name of instance N.
HOST = 'sparc-cloud'
INSTANCE_NAME_TEMPLATE = 'sparc-cloud-%08x'

#: The services in the order they start (and stop in reverse).
SERVICES = ('nova-conductor', 'nova-scheduler', 'nova-compute')


def libvirt_root(conf: Settings) -> str:
    return conf.path('libvirt')


def managed_save_dir(conf: Settings) -> str:
    """Where the embedded driver keeps ``<domain>.save`` files."""
    return os.path.join(libvirt_root(conf), 'lib', 'qemu', 'save')


def conf_file(conf: Settings) -> str:
    """nova.conf of the API, conductor and scheduler."""
    return conf.path('etc', 'nova', 'nova.conf')


def compute_conf_file(conf: Settings) -> str:
    """nova-cpu.conf: nova.conf without database access."""
    return conf.path('etc', 'nova', 'nova-cpu.conf')


def _privsep_helper(conf: Settings) -> str:
    """No sudo on the test machines: the services run as root and start
    privsep-helper directly.
    """
    return '%s --config-file %s' % (conf.bin('privsep-helper'),
                                    compute_conf_file(conf))


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
            'connection_uri': 'qemu:///embed?root=%s' % libvirt_root(conf),
        },
        'oslo_concurrency': {'lock_path': os.path.join(state, 'lock')},
        'oslo_messaging_notifications': {'driver': 'messagingv2'},
        'notifications': {'notification_format': 'both'},
        'workarounds': {'disable_rootwrap': True},
        'nova_sys_admin': {'helper_command': _privsep_helper(conf)},
        'vnc': {'enabled': False},
        'serial_console': {'enabled': False},
    }
    inifile.write_ini(conf_file(conf), sections)
    compute = {k: v for k, v in sections.items()
               if k not in ('database', 'api_database')}
    inifile.write_ini(compute_conf_file(conf), compute)
    # The API reads its paste pipeline from the first of its files.
    shutil.copy(conf.venv_etc('nova', 'api-paste.ini'), paste_ini(conf))


def paste_ini(conf: Settings) -> str:
    """nova-api's api-paste.ini."""
    return conf.path('etc', 'nova', 'api-paste.ini')


def configure_sparc(conf: Settings, log_dir: str,
                    driver: str = 'sparc') -> None:
    """Run devstack/lib/sparc's configure_sparc_nova on the compute
    service's nova-cpu.conf and configure_sparc_nova_api on nova.conf and
    api-paste.ini, as the DevStack plugin does; ``driver='stock'`` keeps
    Nova as it is.
    """
    if driver == 'stock':
        return
    devstack_lib.run(conf, [
        'configure_sparc_nova', 'configure_sparc_nova_api',
        'init_sparc_nova'], {
            'SPARC_NOVA_CONF': compute_conf_file(conf),
            'SPARC_NOVA_API_CONF': conf_file(conf),
            'SPARC_NOVA_API_PASTE_INI': paste_ini(conf),
            'SPARC_MANAGED_SAVE_DIR': managed_save_dir(conf),
            'SPARC_SEND_NOTIFICATIONS': 'true',
            'SPARC_PRIVSEP_HELPER_COMMAND': _privsep_helper(conf)})


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
    os.makedirs(libvirt_root(conf), exist_ok=True)
    os.makedirs(conf.path('nova', 'instances'), exist_ok=True)
    apis.serve(conf, sup, 'nova', 'nova.wsgi.osapi_compute',
               {'OS_NOVA_CONFIG_DIR': etc,
                'OS_NOVA_CONFIG_FILES': 'api-paste.ini;nova.conf'})
    for name in SERVICES:
        conf_path = (compute_conf_file(conf) if name == 'nova-compute'
                     else conf_file(conf))
        sup.start(name, [conf.bin(name), '--config-file', conf_path])
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
    """Stop Nova's services, then any QEMU process the embedded driver
    left (they run in sessions of their own).
    """
    for name in reversed(SERVICES + ('nova-api',)):
        sup.stop(name)
    for pid in qemu_pids(conf):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def qemu_pids(conf: Settings) -> list[int]:
    """QEMU processes started by this cloud's embedded libvirt (their
    command lines name files under its root).
    """
    root = libvirt_root(conf).encode()
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
