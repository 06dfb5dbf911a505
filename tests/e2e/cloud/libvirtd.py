"""The cloud's own libvirtd: the system QEMU driver (guests run as
libvirt-qemu, managed saves are root's), in a mount namespace of its own.

libvirtd as root keeps its state in fixed places (``/run/libvirt``,
``/var/lib/libvirt``, ``/var/cache/libvirt``, ``/var/log/libvirt``) and
reads ``/etc/libvirt``. Here each is a bind mount of a directory under
``<state>/libvirt``, visible only inside the daemon's namespace: the
machine's own libvirt (and its domains) stays out of sight, and the
cloud's files sit under its state directory. nova-compute, as the
unprivileged ``nova`` user, reaches the read-write socket through its
group (``unix_sock_group``), as on a deployed compute node.
"""

import os
import shlex

from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

__all__ = ['root', 'host_path', 'socket_path', 'connection_uri', 'start']

Settings = settings_mod.CloudSettings

#: The daemon's directories: inside its namespace -> under <state>/libvirt.
MOUNTS = {
    '/run/libvirt': 'run',
    '/var/lib/libvirt': 'lib',
    '/var/cache/libvirt': 'cache',
    '/var/log/libvirt': 'log',
    '/etc/libvirt': 'etc',
}


def root(conf: Settings) -> str:
    return conf.path('libvirt')


def host_path(conf: Settings, path: str) -> str:
    """Where ``path`` (as the daemon sees it) is outside its namespace."""
    for inside, below in MOUNTS.items():
        if path == inside or path.startswith(inside + '/'):
            return os.path.join(root(conf), below,
                                os.path.relpath(path, inside))
    return path


def socket_path(conf: Settings) -> str:
    return host_path(conf, '/run/libvirt/libvirt-sock')


def connection_uri(conf: Settings) -> str:
    return 'qemu+unix:///system?socket=%s' % socket_path(conf)


def _write_config(conf: Settings) -> None:
    etc = os.path.join(root(conf), 'etc')
    with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
        f.write('unix_sock_group = "%s"\n'
                'unix_sock_ro_perms = "0770"\n'
                'unix_sock_rw_perms = "0770"\n'
                # No polkit here: the socket's group is the access check.
                'auth_unix_ro = "none"\n'
                'auth_unix_rw = "none"\n'
                'log_outputs = "3:stderr"\n' % settings_mod.LIBVIRT_GROUP)
    with open(os.path.join(etc, 'qemu.conf'), 'w') as f:
        # No virtlogd: QEMU's output goes to files under /var/log/libvirt.
        f.write('stdio_handler = "file"\n')


def start(conf: Settings, sup: processes.Supervisor) -> None:
    """Start the daemon; return once its read-write socket exists."""
    for below in MOUNTS.values():
        os.makedirs(os.path.join(root(conf), below), exist_ok=True)
    os.makedirs(host_path(conf, '/var/lib/libvirt/qemu/save'),
                exist_ok=True)
    _write_config(conf)
    script = ['set -e']
    for inside, below in MOUNTS.items():
        # The mount points exist wherever libvirt is installed; make them
        # if not (on the machine's file system, empty).
        script.append('mkdir -p %s' % shlex.quote(inside))
        script.append('mount --bind %s %s' % (
            shlex.quote(os.path.join(root(conf), below)),
            shlex.quote(inside)))
    script.append('exec /usr/sbin/libvirtd -f /etc/libvirt/libvirtd.conf '
                  '-p /run/libvirt/libvirtd.pid')
    sup.start('libvirtd', ['unshare', '--mount', '--propagation', 'private',
                           'sh', '-c', '\n'.join(script)])
    sup.wait_until('libvirtd', lambda: os.path.exists(socket_path(conf)),
                   'listening on %s' % socket_path(conf), timeout=60)
