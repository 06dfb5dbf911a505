"""Nova's view of a test bed guest: its configuration and its instance
object. Uses only what every sparc-nova release has (Nova, and the
``sparc_nova.privsep`` options), so that a run of another release
(:mod:`.suspend_with`) can use it too.
"""

import os
import sys

from tests.functional.testbed import guest as guest_mod

__all__ = ['nova_overrides', 'apply_overrides', 'nova_instance']


def nova_overrides(module_dir: str) -> list[tuple]:
    """``(name, value, group)`` settings of Nova's configuration for a
    driver on this host's libvirt, with the privsep daemons' helper
    commands (the virtualenv's privsep-helper; no sudo here). Writes the
    scrub daemon's configuration file into ``module_dir``; its journal
    directory is :func:`journal_dir` (libvirt's managed-save directory
    is the QEMU user's here, as on Debian).
    """
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    daemon_conf = os.path.join(module_dir, 'privsep.conf')
    with open(daemon_conf, 'w') as f:
        f.write('[sparc]\nmanaged_save_dir = /var/lib/libvirt/qemu/save\n'
                'journal_dir = %s\n' % journal_dir(module_dir))
    os.makedirs(os.path.join(module_dir, 'instances'), exist_ok=True)
    return [
        ('virt_type', 'qemu', 'libvirt'),
        ('connection_uri', guest_mod.URI, 'libvirt'),
        ('instances_path', os.path.join(module_dir, 'instances'), None),
        ('lock_path', os.path.join(module_dir, 'locks'), 'oslo_concurrency'),
        ('disable_libvirt_livesnapshot', True, 'workarounds'),
        ('helper_command', '%s --config-file %s' % (helper, daemon_conf),
         'sparc_privsep'),
        ('helper_command', helper, 'nova_sys_admin'),
    ]


def journal_dir(module_dir: str) -> str:
    """The scrub daemon's ``[sparc] journal_dir`` (made by the daemon)."""
    return os.path.join(module_dir, 'journals')


def apply_overrides(overrides) -> object:
    """Register Nova's objects and options and set ``overrides``; Nova's
    configuration object.
    """
    from nova import conf as nova_conf
    from nova import objects
    import nova.privsep  # noqa: F401  (registers [nova_sys_admin])
    import sparc_nova.privsep  # noqa: F401  (registers [sparc_privsep])

    objects.register_all()
    conf = nova_conf.CONF
    for name, value, group in overrides:
        conf.set_override(name, value, group=group)
    return conf


def nova_instance(instance_id: int, uuid: str, metadata: dict,
                  disk_format: str = 'qcow2'):
    """The instance object of the guest whose libvirt domain is
    ``instance_name_template % instance_id`` and has ``uuid``.
    """
    from nova.network import model as network_model
    from nova import objects

    return objects.Instance(
        id=instance_id, uuid=uuid, project_id='project',
        user_id='user', task_state=None, vm_state='active',
        kernel_id='', ramdisk_id='', os_type=None, image_ref='',
        numa_topology=None,
        flavor=objects.Flavor(extra_specs={}),
        metadata=metadata,
        system_metadata={'image_disk_format': disk_format,
                         'image_container_format': 'bare'},
        pci_devices=objects.PciDeviceList(objects=[]),
        info_cache=objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo([])))
