"""The appliance booting the host's kernel uncompressed, without QEMU:
the bzImage taken apart, and the cached build with a fake supermin.
"""

import gzip
import lzma
import os
import struct

import pytest

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import fast_boot
from sparc_nova import exception

VMLINUX = b'\x7fELF' + bytes(range(256)) * 64


def _bzimage(payload, protocol=0x20f, setup_sects=1, length=None):
    """A bzImage header with ``payload`` where the protocol says."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1f1] = setup_sects
    setup[0x202:0x206] = b'HdrS'
    struct.pack_into('<H', setup, 0x206, protocol)
    pm_code = b'\x90' * 100
    struct.pack_into('<II', setup, 0x248, len(pm_code),
                     len(payload) if length is None else length)
    return bytes(setup) + pm_code + payload + b'\0' * 16


@pytest.mark.parametrize('compress', [
    lambda b: lzma.compress(b, format=lzma.FORMAT_XZ), gzip.compress])
def test_vmlinux_comes_out_of_the_payload(tmp_path, compress):
    path = tmp_path / 'vmlinuz'
    path.write_bytes(_bzimage(compress(VMLINUX)))
    assert fast_boot.uncompressed_kernel(str(path)) == VMLINUX


@pytest.mark.parametrize('image, error', [
    (b'MZ' + bytes(2000), 'no bzImage setup header'),
    (_bzimage(b'', protocol=0x207), 'boot protocol 0x207'),
    (_bzimage(b'x' * 10, length=1 << 20), 'outside the file'),
    (_bzimage(b'(\xb5/\xfd' + bytes(20)), 'compression'),
    (_bzimage(lzma.compress(b'not an elf', format=lzma.FORMAT_XZ)),
     'not an ELF file'),
    (_bzimage(b'\xfd7zXZ\x00' + bytes(40)), 'does not decompress'),
])
def test_bad_kernel_images_are_refused(tmp_path, image, error):
    path = tmp_path / 'vmlinuz'
    path.write_bytes(image)
    with pytest.raises(fast_boot.KernelImageError, match=error) as e:
        fast_boot.uncompressed_kernel(str(path))
    assert str(path) in str(e.value)


def test_output_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(fast_boot, 'MAX_VMLINUX', 1000)
    path = tmp_path / 'vmlinuz'
    path.write_bytes(_bzimage(lzma.compress(VMLINUX)))
    with pytest.raises(fast_boot.KernelImageError, match='larger than'):
        fast_boot.uncompressed_kernel(str(path))


def test_host_kernel_is_the_newest_with_modules(tmp_path):
    boot, modules = tmp_path / 'boot', tmp_path / 'modules'
    boot.mkdir()
    modules.mkdir()
    assert fast_boot.host_kernel(str(boot), str(modules)) is None
    for version in ('6.1.0-9-amd64', '6.1.0-10-amd64', '6.1.0-11-amd64'):
        (boot / ('vmlinuz-' + version)).write_bytes(b'k')
    for version in ('6.1.0-9-amd64', '6.1.0-10-amd64'):
        (modules / version).mkdir()
    assert fast_boot.host_kernel(str(boot), str(modules)) == (
        str(boot / 'vmlinuz-6.1.0-10-amd64'), '6.1.0-10-amd64')


def test_pvh_entry_is_read_from_the_config(tmp_path):
    config = tmp_path / 'config'
    config.write_text('CONFIG_XEN_PVH=y\n# CONFIG_PVH is not set\n')
    assert not fast_boot.has_pvh_entry(str(config))
    config.write_text('CONFIG_XEN_PVH=y\nCONFIG_PVH=y\n')
    assert fast_boot.has_pvh_entry(str(config))
    assert not fast_boot.has_pvh_entry(str(tmp_path / 'none'))


_FAKE_SUPERMIN = '''#!/bin/sh
# Records its run and makes an appliance of the kernel it was given.
echo run >> "%(log)s"
[ -n "%(fail)s" ] && { echo "supermin: no packages" >&2; exit 1; }
while [ "$1" != "-o" ]; do shift; done
mkdir "$2"
cp "$SUPERMIN_KERNEL" "$2/kernel"
echo "$SUPERMIN_KERNEL_VERSION $SUPERMIN_MODULES" > "$2/initrd"
: > "$2/root"
'''


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A host with a PVH kernel, a supermin.d and a fake supermin."""
    vmlinuz = tmp_path / 'vmlinuz-6.1.0-1-amd64'
    vmlinuz.write_bytes(_bzimage(lzma.compress(VMLINUX)))
    monkeypatch.setattr(fast_boot, 'host_kernel',
                        lambda: (str(vmlinuz), '6.1.0-1-amd64'))
    monkeypatch.setattr(fast_boot, 'has_pvh_entry', lambda config: True)
    supermin_d = tmp_path / 'supermin.d'
    supermin_d.mkdir()
    (supermin_d / 'packages').write_text('e2fsprogs\n')
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    monkeypatch.setenv('PATH', '%s:%s' % (bin_dir, os.environ['PATH']))

    class Host:
        cache = tmp_path / 'cache'
        log = tmp_path / 'supermin.log'

        def supermin(self, fail=False):
            script = bin_dir / 'supermin'
            script.write_text(_FAKE_SUPERMIN % {
                'log': self.log, 'fail': 'yes' if fail else ''})
            script.chmod(0o755)

        def runs(self):
            return len(self.log.read_text().split()) if \
                self.log.exists() else 0

        def prepare(self):
            return fast_boot.prepare(str(self.cache), str(supermin_d))
    h = Host()
    h.supermin_d = supermin_d
    h.supermin()
    return h


def test_appliance_is_built_once(host):
    built = host.prepare()
    assert built is not None and host.runs() == 1
    assert sorted(os.listdir(built)) == ['README.fixed', 'initrd', 'kernel',
                                         'root']
    with open(os.path.join(built, 'kernel'), 'rb') as f:
        assert f.read() == VMLINUX
    with open(os.path.join(built, 'initrd')) as f:
        assert f.read().split() == ['6.1.0-1-amd64',
                                    '/lib/modules/6.1.0-1-amd64']
    assert host.prepare() == built and host.runs() == 1
    assert os.stat(host.cache).st_mode & 0o777 == 0o700


def test_changed_inputs_rebuild_and_drop_the_old_one(host):
    old = host.prepare()
    packages = host.supermin_d / 'packages'
    st = packages.stat()
    os.utime(packages, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    new = host.prepare()
    assert new != old and host.runs() == 2
    assert not os.path.exists(old)
    assert sorted(os.listdir(host.cache)) == [os.path.basename(new), 'lock']


def test_a_failed_build_leaves_nothing(host, caplog):
    host.supermin(fail=True)
    assert host.prepare() is None
    assert 'supermin exited 1: supermin: no packages' in caplog.text
    assert os.listdir(host.cache) == ['lock']


@pytest.mark.parametrize('mode', [0o777, 0o720])
def test_a_cache_others_can_write_is_not_used(host, mode):
    host.cache.mkdir(mode=0o700)
    host.cache.chmod(mode)
    assert host.prepare() is None and host.runs() == 0


def test_a_cache_behind_a_symlink_is_not_used(host, tmp_path):
    real = tmp_path / 'elsewhere'
    real.mkdir(mode=0o700)
    host.cache.symlink_to(real)
    assert host.prepare() is None and host.runs() == 0


def test_no_pvh_entry_means_no_build(host, monkeypatch, caplog):
    monkeypatch.setattr(fast_boot, 'has_pvh_entry', lambda config: False)
    assert host.prepare() is None and host.runs() == 0
    assert 'no PVH entry point' in caplog.text


class _Launches:
    """appliance._launch recorded; fails as ``fail(settings, dir)`` says."""

    def __init__(self, fail):
        self.calls = []
        self.fail = fail

    def __call__(self, path, drives, settings, memsize_mib, timeout,
                 appliance_dir):
        self.calls.append((settings, appliance_dir))
        error = self.fail(settings, appliance_dir)
        if error:
            raise error
        return 'handle'


def test_a_fixed_appliance_that_fails_falls_back_to_libguestfs(monkeypatch):
    launches = _Launches(lambda settings, d: d and exception.DiskScrubError(
        'img', 'kernel panic'))
    monkeypatch.setattr(appliance, '_launch', launches)
    notes = []
    assert appliance.launch('img', [], accel='tcg', notes=notes,
                            appliance_dir='/c/a') == 'handle'
    assert launches.calls == [(['force_tcg'], '/c/a'), (['force_tcg'], None)]
    assert notes == ['the libguestfs appliance in /c/a did not start '
                     "(kernel panic); libguestfs' own appliance was booted"]


def test_a_hung_kvm_retries_the_fixed_appliance_on_tcg(monkeypatch):
    launches = _Launches(lambda settings, d: not settings and
                         appliance.ApplianceTimeout('no answer'))
    monkeypatch.setattr(appliance, '_launch', launches)
    notes = []
    assert appliance.launch('img', [], accel='kvm', notes=notes,
                            appliance_dir='/c/a') == 'handle'
    assert launches.calls == [([], '/c/a'), (['force_tcg'], '/c/a')]
    assert len(notes) == 1 and 'started on TCG' in notes[0]
