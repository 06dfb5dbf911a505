"""The test cloud's guest: an AMI-style triple for Glance.

* kernel (``aki``): the host's Debian kernel;
* ramdisk (``ari``): the test bed's busybox initramfs with its workloads,
  plus the kernel modules needed to mount an ext4 virtio disk; its /init
  mounts the root disk on /mnt/root and runs ``/mnt/root/sparc/boot.sh``;
* root disk (``ami``): a small raw ext4 filesystem made with
  ``mkfs.ext4 -d``, holding marker files to exclude (``/secrets``) and to
  keep (``/keep``), and ``boot.sh``, which starts the excluded process
  ``vault`` (marker :data:`VAULT_MARKER`) and the control process
  ``webapp`` (marker :data:`WEBAPP_MARKER`) and reports both on the serial
  console every two seconds (``SPARC-PS beat=N vault=PID|none
  webapp=PID|none``), which ``openstack console log show`` returns.

A second root disk, ``root_luks``, holds the same filesystem in its first
partition and a LUKS volume (whose key nobody is given) in its second:
a disk scrub of it must refuse to report "nothing found" in what it cannot
open.

The guest has no network: the console log is the only way it talks.
"""

import dataclasses
import os
import shutil
import subprocess

from tests.functional.testbed import build

#: Index of the marker the excluded process holds, and of the control's.
VAULT_MARKER = 0
WEBAPP_MARKER = 1

#: Kernel modules for an ext4 root on virtio-blk (dependencies added).
ROOT_MODULES = ('virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4')

KERNEL_CMDLINE = 'console=ttyS0 panic=-1 loglevel=4'

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /mnt/root
mount -t tmpfs tmp /tmp
echo "SPARC-GUEST-BOOTED release=$(uname -r)" > /dev/ttyS0
for m in $(cat /lib/modules/load-order); do
    insmod /lib/modules/$m.ko
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
root=/dev/vda
[ -b /dev/vda1 ] && root=/dev/vda1
if mount -t ext4 $root /mnt/root; then
    echo "SPARC-ROOT-MOUNTED" > /dev/ttyS0
    [ -f /mnt/root/sparc/boot.sh ] && \
        sh /mnt/root/sparc/boot.sh > /dev/ttyS0 2>&1 &
else
    echo "SPARC-ROOT-FAILED" > /dev/ttyS0
fi
while true; do sleep 3600; done
"""

BOOT_SCRIPT = r"""#!/bin/sh
echo "SPARC-FILES secrets=$(ls /mnt/root/secrets 2>/dev/null | wc -l)" \
     "keep=$(ls /mnt/root/keep 2>/dev/null | wc -l)"
vault hold {vault} --pages {vault_pages} &
webapp hold {webapp} --pages {webapp_pages} &
i=0
while true; do
    i=$((i+1))
    echo "SPARC-PS beat=$i vault=$(pidof vault || echo none)" \
         "webapp=$(pidof webapp || echo none)"
    if [ -f /mnt/root/secrets/api-token ]; then
        echo "SPARC-SECRET beat=$i" \
             "md5=$(md5sum < /mnt/root/secrets/api-token | cut -c1-32)"
    fi
    sleep 2
done
"""


@dataclasses.dataclass
class CloudGuest:
    """Files of the guest and the markers it holds.

    ``markers`` are the workloads' (in memory only); ``secret_files`` and
    ``kept_files`` map a path on the root disk to the marker it contains.
    """

    kernel: str
    ramdisk: str
    root: str
    root_luks: str
    markers: list[str]
    secret_files: dict[str, str]
    kept_files: dict[str, str]

    @property
    def vault_marker(self) -> str:
        return self.markers[VAULT_MARKER]

    @property
    def webapp_marker(self) -> str:
        return self.markers[WEBAPP_MARKER]


def kernel_release(kernel: str) -> str:
    """``/boot/vmlinuz-6.1.0-56-amd64`` -> ``6.1.0-56-amd64``."""
    return os.path.basename(kernel).split('-', 1)[1]


def module_load_order(release: str, names: tuple[str, ...]) -> list[str]:
    """Files of ``names`` and everything they depend on, dependencies
    first (as ``modinfo`` of the installed kernel reports them).
    """
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        deps = subprocess.run(
            ['modinfo', '-k', release, '-F', 'depends', name], check=True,
            capture_output=True, text=True).stdout.strip()
        for dep in filter(None, deps.split(',')):
            visit(dep)
        order.append(name)

    for name in names:
        visit(name)
    return order


def _module_file(release: str, name: str) -> str:
    path = subprocess.run(['modinfo', '-k', release, '-n', name],
                          check=True, capture_output=True,
                          text=True).stdout.strip()
    if not path.endswith('.ko'):
        raise RuntimeError('%s is compressed (%s): the guest loads plain '
                           '.ko files' % (name, path))
    return path


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def build_root_disk(workdir: str, secret_files: dict[str, str],
                    kept_files: dict[str, str], size_mib: int = 32,
                    vault_pages: int = 64, webapp_pages: int = 16) -> str:
    """A raw ext4 filesystem holding the marker files and boot.sh (whose
    vault and webapp hold their markers in ``vault_pages`` and
    ``webapp_pages`` anonymous pages).
    """
    tree = os.path.join(workdir, 'rootfs')
    for path, marker in list(secret_files.items()) + list(
            kept_files.items()):
        _write(os.path.join(tree, path.lstrip('/')), marker + '\n')
    _write(os.path.join(tree, 'sparc', 'boot.sh'), BOOT_SCRIPT.format(
        vault=VAULT_MARKER, webapp=WEBAPP_MARKER, vault_pages=vault_pages,
        webapp_pages=webapp_pages))
    disk = os.path.join(workdir, 'root.raw')
    subprocess.run(['mkfs.ext4', '-q', '-F', '-L', 'sparcroot', '-d', tree,
                    disk, '%dM' % size_mib], check=True, capture_output=True)
    return disk


def build_luks_disk(workdir: str, root_fs: str,
                    luks_mib: int = 32) -> str:
    """A partitioned raw disk: ``root_fs`` in partition 1, a LUKS2
    volume (random key, thrown away) in partition 2.
    """
    luks = os.path.join(workdir, 'luks.raw')
    with open(luks, 'wb') as f:
        f.truncate(luks_mib << 20)
    key = os.path.join(workdir, 'luks.key')
    with open(key, 'wb') as f:
        f.write(os.urandom(32))
    subprocess.run(['cryptsetup', 'luksFormat', '--batch-mode', '--type',
                    'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations',
                    '1000', '--key-file', key, luks], check=True,
                   capture_output=True)
    os.unlink(key)
    sector = 512
    start1 = 1 << 20
    parts = [(start1, os.path.getsize(root_fs), root_fs)]
    parts.append((start1 + parts[0][1], luks_mib << 20, luks))
    disk = os.path.join(workdir, 'root-luks.raw')
    with open(disk, 'wb') as f:
        f.truncate(parts[-1][0] + parts[-1][1] + start1)
    table = 'label: dos\n' + ''.join(
        'start=%d, size=%d, type=83\n' % (off // sector, size // sector)
        for off, size, _ in parts)
    subprocess.run(['sfdisk', '--quiet', disk], input=table.encode(),
                   check=True, capture_output=True)
    with open(disk, 'r+b') as out:
        for offset, _, path in parts:
            out.seek(offset)
            with open(path, 'rb') as src:
                shutil.copyfileobj(src, out)
    os.unlink(luks)
    return disk


def build_guest(workdir: str, kernel: str | None = None,
                vault_pages: int = 64, webapp_pages: int = 16
                ) -> CloudGuest:
    """Build the kernel, ramdisk and root disk under ``workdir`` (the
    vault and webapp workloads holding ``vault_pages`` and
    ``webapp_pages`` pages of memory).
    """
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)
    kernel = kernel or build.default_kernel()
    release = kernel_release(kernel)
    markers = build.make_markers()
    binaries = build.compile_workloads(workdir, markers)
    order = module_load_order(release, ROOT_MODULES)
    files = {'/lib/modules/%s.ko' % m: _module_file(release, m)
             for m in order}
    load_order = os.path.join(workdir, 'load-order')
    _write(load_order, '\n'.join(order) + '\n')
    files['/lib/modules/load-order'] = load_order
    ramdisk = build.build_initramfs(workdir, binaries, INIT_SCRIPT, files)
    file_markers = build.make_markers(4)
    secret_files = {'/secrets/api-token': file_markers[0],
                    '/secrets/db/password': file_markers[1]}
    kept_files = {'/keep/readme': file_markers[2],
                  '/keep/config/app.conf': file_markers[3]}
    root = build_root_disk(workdir, secret_files, kept_files,
                           vault_pages=vault_pages,
                           webapp_pages=webapp_pages)
    root_luks = build_luks_disk(workdir, root)
    return CloudGuest(kernel=kernel, ramdisk=ramdisk, root=root,
                      root_luks=root_luks, markers=markers,
                      secret_files=secret_files,
                      kept_files=kept_files)
