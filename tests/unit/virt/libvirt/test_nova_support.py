"""The check of the Nova internals the driver relies on."""

from unittest import mock

from nova.virt.libvirt import driver as libvirt_driver
import pytest

from sparc_nova.virt.libvirt import nova_support


def test_the_installed_nova_is_supported():
    assert nova_support.problems() == []
    nova_support.check()


def test_another_release_is_refused():
    assert nova_support.problems('35.0.0') == [
        'Nova 35.0.0 is not a supported release (supported: 34.x)']
    assert nova_support.problems('unknown')[0].startswith(
        'Nova unknown is not a supported release')


def test_a_changed_signature_is_found():
    def snapshot(self, context, instance, image_id):
        pass
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'snapshot',
                           snapshot):
        found = nova_support.problems('34.0.0')
    assert ('LibvirtDriver.snapshot(context, instance, image_id, '
            'update_task_state) takes (context, instance, image_id)'
            in found)
    # Its body no longer goes through the hooked calls either.
    assert 'LibvirtDriver.snapshot no longer calls ' \
        'self._image_api.update(...)' in found


def test_a_missing_method_is_found():
    with mock.patch.object(libvirt_driver.LibvirtDriver,
                           '_resume_guest_after_snapshot', None):
        found = nova_support.problems('34.0.0')
    assert 'LibvirtDriver._resume_guest_after_snapshot is missing' in found


def test_check_raises_with_every_problem():
    with mock.patch.object(nova_support, '_nova_version',
                           return_value='36.0.0'), \
            mock.patch.object(libvirt_driver.LibvirtDriver,
                              'trigger_crash_dump', None):
        with pytest.raises(nova_support.UnsupportedNova) as e:
            nova_support.check()
    assert e.value.format_message() == (
        'sparc-nova cannot enforce privacy policies on this Nova (36.0.0); '
        'refusing to start: Nova 36.0.0 is not a supported release '
        '(supported: 34.x); LibvirtDriver.trigger_crash_dump is missing')


def test_a_destroy_that_skips_cleanup_is_found():
    def destroy(self, context, instance, network_info,
                block_device_info=None, destroy_disks=True,
                destroy_secrets=True):
        self._destroy(instance)
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'destroy',
                           destroy):
        found = nova_support.problems('34.0.0')
    assert 'LibvirtDriver.destroy no longer calls self.cleanup(' in found
