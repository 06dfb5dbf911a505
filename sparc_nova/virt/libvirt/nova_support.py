"""The Nova internals SparcLibvirtDriver relies on, checked at start.

The driver hooks into Nova's libvirt driver below its public interface
(where the snapshot bytes pass, how a saved guest is restarted, ...). If a
Nova release moved one of these, the policy could silently stop applying,
so ``init_host`` refuses to start on such a Nova: :func:`problems` lists
what is missing, :func:`check` raises :class:`UnsupportedNova`.

``doc/nova.md`` lists the same internals (section "Nova internals the
driver relies on"); keep both in step.
"""

import inspect

from nova.compute import power_state
from nova.compute import task_states
from nova import exception as nova_exception
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import imagebackend

__all__ = ['SUPPORTED_NOVA_MAJOR', 'UnsupportedNova', 'problems', 'check']

#: Nova major versions (release series) the driver was checked against.
SUPPORTED_NOVA_MAJOR = (34,)


class UnsupportedNova(nova_exception.NovaException):
    msg_fmt = ('sparc-nova cannot enforce privacy policies on this Nova '
               '(%(version)s); refusing to start: %(problems)s')


def _parameters(func) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p != 'self']


#: (what, the parameters it must take) of LibvirtDriver methods the
#: driver overrides or calls.
METHODS = (
    ('snapshot', ['context', 'instance', 'image_id', 'update_task_state']),
    ('suspend', ['context', 'instance']),
    ('trigger_crash_dump', ['instance']),
    ('update_provider_tree', ['provider_tree', 'nodename', 'allocations']),
    ('check_can_live_migrate_source',
     ['context', 'instance', 'dest_check_data', 'block_device_info']),
    ('live_migration', ['context', 'instance', 'dest', 'post_method',
                        'recover_method', 'block_migration',
                        'migrate_data']),
    ('migrate_disk_and_power_off',
     ['context', 'instance', 'dest', 'flavor', 'network_info',
      'block_device_info', 'timeout', 'retry_interval']),
    ('_resume_guest_after_snapshot',
     ['context', 'live_snapshot', 'original_power_state', 'instance',
      'guest']),
    ('init_host', ['host']),
    ('get_host_ip_addr', []),
    # Sealed suspends: unsealed before resume, dropped with the managed
    # save in cleanup (which destroy, hence hard reboot, calls).
    ('resume', ['context', 'instance', 'network_info', 'block_device_info',
                'share_info']),
    ('cleanup', ['context', 'instance', 'network_info', 'block_device_info',
                 'destroy_disks', 'migrate_data', 'destroy_vifs',
                 'destroy_secrets']),
)


def _source(func) -> str:
    """The source of ``func``; empty when there is none to read."""
    try:
        return inspect.getsource(func)
    except (TypeError, OSError):
        return ''


def _nova_version() -> str:
    from nova import version
    return version.version_string()


def problems(version: str | None = None) -> list[str]:
    """What this Nova lacks of what the driver relies on (empty: all
    there). ``version`` defaults to the installed Nova's.
    """
    found = []
    version = version or _nova_version()
    # nova-compute has registered them; a check run alone has not.
    objects.register_all()
    try:
        major = int(version.split('.')[0])
    except ValueError:
        major = None
    if major not in SUPPORTED_NOVA_MAJOR:
        found.append('Nova %s is not a supported release (supported: %s)'
                     % (version, ', '.join('%d.x' % m
                                           for m in SUPPORTED_NOVA_MAJOR)))
    cls = libvirt_driver.LibvirtDriver
    for name, params in METHODS:
        method = getattr(cls, name, None)
        if not callable(method):
            found.append('LibvirtDriver.%s is missing' % name)
        elif _parameters(method) != params:
            found.append('LibvirtDriver.%s(%s) takes (%s)' % (
                name, ', '.join(params),
                ', '.join(_parameters(method))))
    # The snapshot upload goes through self._image_api.update(context,
    # image_id, metadata, data) and the disks through
    # self.image_backend.by_libvirt_path(); both are set in __init__.
    init_source = _source(cls.__init__)
    for attribute in ('self._image_api = ', 'self.image_backend = '):
        if attribute not in init_source:
            found.append('LibvirtDriver.__init__ no longer sets %s'
                         % attribute.split(' ')[0])
    # A cold snapshot saves a running guest with self.suspend() (which
    # the driver must tell from a real suspend) and restarts it with
    # guest.launch().
    snapshot_source = ''.join(
        _source(getattr(cls, name, None))
        for name in ('snapshot', '_suspend_guest_for_snapshot',
                     '_resume_guest_after_snapshot'))
    for call in ('self._image_api.update(', 'direct_snapshot(',
                 'self.image_backend.by_libvirt_path(',
                 'snapshot_extract(', 'self.suspend(', 'guest.launch('):
        if call not in snapshot_source:
            found.append('LibvirtDriver.snapshot no longer calls %s...)'
                         % call)
    # The sealed pages and secret of a dropped managed save are deleted in
    # cleanup(), which destroy() must call (delete, hard reboot, power on).
    if 'self.cleanup(' not in _source(getattr(cls, 'destroy', None)):
        found.append('LibvirtDriver.destroy no longer calls self.cleanup(')
    for cls_, name in ((imagebackend.Backend, 'by_libvirt_path'),
                       (imagebackend.Image, 'direct_snapshot'),
                       (libvirt_guest.Guest, 'launch')):
        if not callable(getattr(cls_, name, None)):
            found.append('%s.%s is missing' % (cls_.__name__, name))
    for module, names in (
            (task_states, ('SHELVING', 'SHELVING_IMAGE_PENDING_UPLOAD',
                           'SHELVING_IMAGE_UPLOADING', 'RESIZE_MIGRATING')),
            (power_state, ('RUNNING', 'PAUSED')),
            (objects, ('InstanceActionEvent', 'Migration', 'InstanceList',
                       'ComputeNodeList'))):
        for name in names:
            if not hasattr(module, name):
                found.append('%s.%s is missing' % (module.__name__, name))
    return found


def check() -> None:
    """Raise :class:`UnsupportedNova` if :func:`problems` finds any."""
    found = problems()
    if found:
        raise UnsupportedNova(version=_nova_version(),
                              problems='; '.join(found))
