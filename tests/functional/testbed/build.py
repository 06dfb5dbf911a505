"""Build the test bed's guest: markers, static workloads, busybox initramfs.

Everything is built at test time from what Debian ships: the host's Debian
kernel (``/boot/vmlinuz-*``, or ``SPARC_TEST_KERNEL``), ``busybox-static``
and gcc. Markers are random per build and compiled into the workload XORed
with a random key, so every plain copy of a marker in guest memory was made
by a workload at run time.
"""

import dataclasses
import glob
import gzip
import os
import secrets
import shutil
import subprocess

WORKLOAD_DIR = os.path.join(os.path.dirname(__file__), 'workloads')

#: How many distinct markers each build carries.
MARKER_COUNT = 16
#: Marker length in bytes (printable, starts with a fixed tag).
MARKER_LEN = 32

#: The static programs built from ``workloads/NAME.c`` into /bin/NAME.
WORKLOADS = ('workload', 'pagemap', 'ipc', 'fdlist')

#: Extra names for the workload binary, so that a guest can run processes
#: that differ by comm (the excluded "vault" and a "webapp" control).
WORKLOAD_ALIASES = ('vault', 'webapp')

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp
echo "SPARC-GUEST-BOOTED release=$(uname -r)" > /dev/ttyS0
(i=0; while true; do i=$((i+1)); echo "HEARTBEAT $i"; sleep 1; done) \
    > /dev/ttyS0 2>&1 &
echo "SPARC-GUEST-SHELL" > /dev/ttyS0
while true; do
    setsid -c sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'
done
"""


@dataclasses.dataclass
class GuestImage:
    """A bootable test guest: kernel, initramfs and the markers it holds."""

    kernel: str
    initrd: str
    markers: list[str]
    workdir: str

    def marker(self, idx: int) -> str:
        return self.markers[idx]


def default_kernel() -> str:
    """The kernel the guests boot: ``SPARC_TEST_KERNEL`` or the newest
    ``/boot/vmlinuz-*`` of the host.
    """
    env = os.environ.get('SPARC_TEST_KERNEL')
    if env:
        return env
    kernels = sorted(glob.glob('/boot/vmlinuz-*'))
    if not kernels:
        raise RuntimeError('no /boot/vmlinuz-* on this host: install '
                           'linux-image-amd64 or set SPARC_TEST_KERNEL')
    return kernels[-1]


def make_markers(count: int = MARKER_COUNT) -> list[str]:
    """Random printable markers, unique per build."""
    return ['SPARCMK-%s' % secrets.token_hex(MARKER_LEN)[:MARKER_LEN - 8]
            for _ in range(count)]


def _markers_header(markers: list[str], key: int) -> str:
    rows = []
    for m in markers:
        assert len(m) == MARKER_LEN
        rows.append('{%s}' % ','.join(str(ord(c) ^ key) for c in m))
    return ('#define MARKER_COUNT %d\n#define MARKER_LEN %d\n'
            '#define MARKER_KEY %d\n'
            'static const unsigned char MARKERS[MARKER_COUNT][MARKER_LEN]'
            ' = {\n%s};\n' % (len(markers), MARKER_LEN, key,
                              ',\n'.join(rows)))


def compile_workloads(outdir: str, markers: list[str]) -> dict[str, str]:
    """Compile the static C workloads with the given markers."""
    key = 0x80 | secrets.randbelow(0x7f)
    src = os.path.join(outdir, 'src')
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, 'markers.h'), 'w') as f:
        f.write(_markers_header(markers, key))
    shutil.copy(os.path.join(WORKLOAD_DIR, 'decode.h'), src)
    built = {}
    for name in WORKLOADS:
        shutil.copy(os.path.join(WORKLOAD_DIR, name + '.c'), src)
        out = os.path.join(outdir, name)
        subprocess.run(['gcc', '-static', '-O1', '-pthread', '-o', out,
                        os.path.join(src, name + '.c')], check=True)
        built[name] = out
    return built


def build_initramfs(outdir: str, binaries: dict[str, str],
                    init_script: str = INIT_SCRIPT,
                    files: dict[str, str] | None = None) -> str:
    """A gzip'd newc cpio with busybox-static, the workloads (and their
    aliases) in /bin, ``init_script`` as /init, and ``files`` (``{path in
    the initramfs: path on the host}``).
    """
    root = os.path.join(outdir, 'root')
    shutil.rmtree(root, ignore_errors=True)
    for d in ('bin', 'proc', 'sys', 'dev', 'tmp', 'etc'):
        os.makedirs(os.path.join(root, d))
    busybox = shutil.which('busybox') or '/bin/busybox'
    shutil.copy(busybox, os.path.join(root, 'bin', 'busybox'))
    for name, path in binaries.items():
        shutil.copy(path, os.path.join(root, 'bin', name))
    for alias in WORKLOAD_ALIASES:
        shutil.copy(binaries['workload'], os.path.join(root, 'bin', alias))
    for dest, path in (files or {}).items():
        target = os.path.join(root, dest.lstrip('/'))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(path, target)
    init = os.path.join(root, 'init')
    with open(init, 'w') as f:
        f.write(init_script)
    os.chmod(init, 0o755)
    files = subprocess.run(['find', '.', '-print0'], cwd=root, check=True,
                           capture_output=True).stdout
    cpio = subprocess.run(['cpio', '--null', '-o', '-H', 'newc', '--quiet'],
                          cwd=root, input=files, check=True,
                          capture_output=True).stdout
    out = os.path.join(outdir, 'initrd.gz')
    with gzip.open(out, 'wb', compresslevel=1) as f:
        f.write(cpio)
    return out


def build_guest(workdir: str, kernel: str | None = None) -> GuestImage:
    """Build a complete guest image under ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)
    markers = make_markers()
    binaries = compile_workloads(workdir, markers)
    initrd = build_initramfs(workdir, binaries)
    kernel_src = kernel or default_kernel()
    kernel_copy = os.path.join(workdir, 'vmlinuz')
    shutil.copy(kernel_src, kernel_copy)
    for p in (initrd, kernel_copy):
        os.chmod(p, 0o644)
    return GuestImage(kernel=kernel_copy, initrd=initrd, markers=markers,
                      workdir=workdir)
