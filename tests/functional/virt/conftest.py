"""Fixtures of the driver tests on this host's libvirt: Nova's
configuration, the driver loaded through the ``sparc_libvirt`` shim, an
admin context.
"""

from unittest import mock

import pytest

from tests.functional.virt import instances


@pytest.fixture(scope='module')
def nova(module_dir, libvirt_daemons):
    """Nova's configuration (see :func:`instances.nova_overrides`); the
    scrub daemon is stopped at the end.
    """
    from sparc_nova import privsep

    overrides = instances.nova_overrides(module_dir)
    conf = instances.apply_overrides(overrides)
    yield conf
    privsep.scrub_pctxt.stop()
    for name, _, group in overrides:
        conf.clear_override(name, group=group)


@pytest.fixture(scope='module')
def driver(nova):
    from nova.virt import driver as virt_driver
    drv = virt_driver.load_compute_driver(
        mock.Mock(), 'sparc_libvirt.SparcLibvirtDriver')
    assert type(drv).__name__ == 'SparcLibvirtDriver'
    return drv


@pytest.fixture
def context():
    from nova import context as nova_context
    return nova_context.get_admin_context()
