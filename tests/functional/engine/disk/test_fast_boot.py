"""The appliance booting the host's kernel uncompressed, built by the
real supermin and booted by the real QEMU (TCG); and the fallback to
libguestfs' own appliance when it does not start.
"""

import os

import pytest

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import fast_boot
from tests.functional.engine.disk import images

pytestmark = pytest.mark.slow

CACHE = images.APPLIANCE_CACHE


@pytest.fixture(scope='module')
def fixed():
    built = fast_boot.prepare(CACHE, appliance.supermin_dir())
    assert built is not None, 'see the warning logged by fast_boot'
    return built


def _qemu_argv(g) -> list[str]:
    with open('/proc/%d/cmdline' % g.get_pid(), 'rb') as f:
        return f.read().decode().split('\0')


def test_the_appliance_boots_the_uncompressed_kernel(fixed, tmp_path):
    vmlinuz, version = fast_boot.host_kernel()
    with open(os.path.join(fixed, 'kernel'), 'rb') as f:
        assert f.read(4) == b'\x7fELF'
    disk = tmp_path / 'disk.raw'
    disk.write_bytes(b'\0' * (1 << 20))
    notes = []
    g = appliance.launch(str(disk), [(str(disk), True)], accel='tcg',
                         notes=notes, appliance_dir=fixed)
    try:
        argv = _qemu_argv(g)
        assert argv[argv.index('-kernel') + 1] == os.path.join(fixed,
                                                               'kernel')
        # The modules of the same kernel loaded: the drive is there.
        assert appliance.run(g, ['uname', '-r']).strip() == version
        assert g.list_devices() == ['/dev/sda']
    finally:
        g.close()
    assert notes == []
    assert fast_boot.prepare(CACHE, appliance.supermin_dir()) == fixed


def test_a_fixed_appliance_that_does_not_boot_falls_back(fixed, tmp_path):
    broken = tmp_path / 'broken'
    broken.mkdir()
    for name in ('initrd', 'root', 'README.fixed'):
        os.symlink(os.path.join(fixed, name), broken / name)
    (broken / 'kernel').write_bytes(b'\x7fELF' + b'\0' * 4096)
    disk = tmp_path / 'disk.raw'
    disk.write_bytes(b'\0' * (1 << 20))
    notes = []
    g = appliance.launch(str(disk), [(str(disk), True)], accel='tcg',
                         notes=notes, appliance_dir=str(broken))
    try:
        argv = _qemu_argv(g)
        assert not argv[argv.index('-kernel') + 1].startswith(str(broken))
        assert g.list_devices() == ['/dev/sda']
    finally:
        g.close()
    assert len(notes) == 1
    assert notes[0].startswith('the libguestfs appliance in %s did not '
                               'start' % broken)
    assert "libguestfs' own appliance was booted" in notes[0]
