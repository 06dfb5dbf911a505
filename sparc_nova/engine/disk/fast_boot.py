"""A libguestfs appliance that boots the host's kernel uncompressed.

Under TCG a libguestfs launch takes 11-13 s, and about 3 s of it are
the emulated CPU decompressing the kernel (Debian's is xz-compressed).
QEMU boots an uncompressed ELF kernel (``vmlinux``) directly when the
kernel has a PVH entry point (``CONFIG_PVH``, on in Debian's and most
distributions' x86-64 kernels): 8.7 s instead of 11.8 s measured here.

This module builds, once per host and again whenever the kernel or the
packages the appliance is made of change, a *fixed appliance* (as
libguestfs calls a directory holding ``kernel``, ``initrd``, ``root``
and ``README.fixed``) with supermin from libguestfs' own ``supermin.d``,
the same way libguestfs builds its cached one, except that the kernel is
the ``vmlinux`` inside the host's ``vmlinuz``. A scrub then points its
handle at it (``set_path``). Anything this module cannot do (no PVH
kernel, a compression it does not read, supermin failing, a cache
directory it cannot trust) means None: the scrub boots libguestfs' own
appliance, as it would without this module.

The host's kernel, modules and packages are the operator's; nothing
here reads guest data. The cache directory must belong to this user and
be writable by no one else, since its kernel runs every scrub.
"""

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import zlib

__all__ = ['BUILD_TIMEOUT', 'KernelImageError', 'host_kernel',
           'has_pvh_entry', 'uncompressed_kernel', 'prepare']

LOG = logging.getLogger(__name__)

#: Seconds supermin may take to build the appliance (4-5 s measured).
BUILD_TIMEOUT = 300
#: Bounds of the kernel files read (bytes): a vmlinuz is 5-15 MiB, its
#: vmlinux 30-100 MiB.
MAX_VMLINUZ = 64 << 20
MAX_VMLINUX = 512 << 20

_MARK = 'README.fixed'
_FILES = ('kernel', 'initrd', 'root')
#: Package databases whose change means the appliance's files changed
#: (supermin rebuilds libguestfs' appliance on the same signal).
_PACKAGE_DBS = ('/var/lib/dpkg/status', '/var/lib/rpm')
_ELF_MAGIC = b'\x7fELF'
_XZ_MAGIC = b'\xfd7zXZ\x00'
_GZIP_MAGIC = b'\x1f\x8b\x08'


class KernelImageError(Exception):
    """A kernel file is not a bzImage this module can take apart."""


def host_kernel(boot: str = '/boot', modules: str = '/lib/modules'
                ) -> tuple[str, str] | None:
    """``(vmlinuz path, version)`` of the kernel supermin would choose:
    the newest ``vmlinuz-<version>`` in ``boot`` that has a modules
    directory; None if there is none.
    """
    found = []
    for path in glob.glob(os.path.join(boot, 'vmlinuz-*')):
        version = os.path.basename(path)[len('vmlinuz-'):]
        if os.path.isdir(os.path.join(modules, version)) and \
                os.access(path, os.R_OK):
            found.append((_version_key(version), path, version))
    if not found:
        return None
    _, path, version = max(found)
    return path, version


def _version_key(version: str) -> list:
    """Sort key of a kernel version: numbers compare as numbers."""
    return [(0, int(p), '') if p.isdigit() else (1, 0, p)
            for p in re.findall(r'\d+|[^\d]+', version)]


def has_pvh_entry(config: str) -> bool:
    """Whether the kernel configuration file ``config`` has
    ``CONFIG_PVH=y`` (QEMU refuses to boot a vmlinux without a PVH entry
    point). A missing file means False.
    """
    try:
        with open(config, 'rb') as f:
            return any(line.strip() == b'CONFIG_PVH=y' for line in f)
    except OSError:
        return False


def uncompressed_kernel(vmlinuz: str) -> bytes:
    """The ELF ``vmlinux`` inside the x86 bzImage ``vmlinuz``.

    The payload is found from the boot protocol's setup header
    (``payload_offset`` and ``payload_length``, protocol 2.08 and later),
    not by scanning for compression magic as the kernel's own
    ``extract-vmlinux`` script does; that script is not packaged by
    Debian, and no library does this. xz and gzip payloads are read
    (what the major distributions ship); the output is bounded by
    :data:`MAX_VMLINUX`.

    :raises KernelImageError: not a bzImage, an unknown compression, or
        a payload that does not decompress to an ELF file.
    """
    with open(vmlinuz, 'rb') as f:
        image = f.read(MAX_VMLINUZ + 1)
    if len(image) > MAX_VMLINUZ:
        raise KernelImageError('%s: larger than %d bytes'
                               % (vmlinuz, MAX_VMLINUZ))
    if len(image) < 0x250 or image[0x202:0x206] != b'HdrS':
        raise KernelImageError('%s: no bzImage setup header' % vmlinuz)
    protocol, = struct.unpack_from('<H', image, 0x206)
    if protocol < 0x208:
        raise KernelImageError('%s: boot protocol %#x has no payload '
                               'fields' % (vmlinuz, protocol))
    setup_sects = image[0x1f1] or 4
    offset, length = struct.unpack_from('<II', image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if length == 0 or start + length > len(image):
        raise KernelImageError('%s: payload %d+%d outside the file'
                               % (vmlinuz, start, length))
    payload = image[start:start + length]
    if payload.startswith(_XZ_MAGIC):
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    elif payload.startswith(_GZIP_MAGIC):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        raise KernelImageError('%s: payload compression %r is not read'
                               % (vmlinuz, payload[:6]))
    try:
        out = decompressor.decompress(payload, MAX_VMLINUX + 1)
    except (lzma.LZMAError, zlib.error) as e:
        raise KernelImageError('%s: payload does not decompress: %s'
                               % (vmlinuz, e))
    if len(out) > MAX_VMLINUX:
        raise KernelImageError('%s: vmlinux larger than %d bytes'
                               % (vmlinuz, MAX_VMLINUX))
    if not out.startswith(_ELF_MAGIC):
        raise KernelImageError('%s: payload is not an ELF file' % vmlinuz)
    return out


def prepare(cache_dir: str, supermin_d: str,
            timeout: float = BUILD_TIMEOUT) -> str | None:
    """The directory of a fixed appliance booting the host's kernel
    uncompressed, built under ``cache_dir`` if it is not there yet for
    the current kernel and packages; None (with the reason logged) when
    it cannot be had.

    ``supermin_d`` is libguestfs' supermin input directory
    (``<libguestfs path>/supermin.d``). Concurrent callers build once:
    the build holds a lock in ``cache_dir``, and an appliance is built
    in a directory of its own and renamed into place whole. Appliances of an
    earlier kernel or package set are removed after a build.
    """
    try:
        return _prepare(cache_dir, supermin_d, timeout)
    except (OSError, KernelImageError, subprocess.SubprocessError,
            _Untrusted) as e:
        LOG.warning('Booting the libguestfs appliance from the compressed '
                    'kernel: the uncompressed one could not be prepared '
                    'in %s: %s', cache_dir, e)
        return None


class _Untrusted(Exception):
    pass


def _prepare(cache_dir, supermin_d, timeout):
    kernel = host_kernel()
    if kernel is None:
        raise KernelImageError('no kernel in /boot with its modules')
    vmlinuz, version = kernel
    if not has_pvh_entry('/boot/config-%s' % version):
        raise KernelImageError('%s has no PVH entry point (CONFIG_PVH)'
                               % vmlinuz)
    _trusted_directory(cache_dir)
    key = _inputs_key(vmlinuz, version, supermin_d)
    target = os.path.join(cache_dir, key)
    if _complete(target):
        return target
    with _locked(os.path.join(cache_dir, 'lock')):
        if not _complete(target):
            _build(cache_dir, target, vmlinuz, version, supermin_d,
                   timeout)
        _remove_others(cache_dir, key)
    return target


def _trusted_directory(path):
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)     # a symbolic link is not a directory here
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or \
            st.st_mode & 0o022:
        raise _Untrusted('%s is not a directory of uid %d that only it '
                         'can write' % (path, os.geteuid()))


def _inputs_key(vmlinuz, version, supermin_d):
    """A name for the appliance the current inputs make: the kernel file,
    its modules directory, supermin's input files and the package
    databases, by path, size and modification time.
    """
    paths = [vmlinuz, '/lib/modules/%s' % version] + sorted(
        glob.glob(os.path.join(supermin_d, '*'))) + list(_PACKAGE_DBS)
    inputs = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        inputs.append([path, st.st_size, st.st_mtime_ns])
    if not any(p == supermin_d or p.startswith(supermin_d + os.sep)
               for p, _, _ in inputs):
        raise KernelImageError('%s holds no supermin input' % supermin_d)
    digest = hashlib.sha256(json.dumps(
        [version, os.uname().machine, inputs]).encode()).hexdigest()
    return 'appliance-%s' % digest[:24]


def _complete(directory):
    return all(os.path.isfile(os.path.join(directory, name))
               for name in _FILES + (_MARK,))


@contextlib.contextmanager
def _locked(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build(cache_dir, target, vmlinuz, version, supermin_d, timeout):
    work = tempfile.mkdtemp(prefix='build-', dir=cache_dir)
    try:
        vmlinux = os.path.join(work, 'vmlinux')
        with open(vmlinux, 'wb') as f:
            f.write(uncompressed_kernel(vmlinuz))
        out = os.path.join(work, 'appliance')
        # supermin takes the kernel from its environment; the version
        # and modules must be named since it cannot read them from an
        # ELF file.
        env = dict(os.environ, SUPERMIN_KERNEL=vmlinux,
                   SUPERMIN_KERNEL_VERSION=version,
                   SUPERMIN_MODULES='/lib/modules/%s' % version)
        proc = subprocess.run(
            ['supermin', '--build', '--format', 'ext2', '--copy-kernel',
             '--host-cpu', os.uname().machine, '-o', out, supermin_d],
            env=env, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=timeout, check=False)
        if proc.returncode != 0:
            raise KernelImageError(
                'supermin exited %d: %s' % (proc.returncode,
                                            proc.stderr.decode(
                                                'utf-8', 'replace')[-400:]))
        with open(os.path.join(out, _MARK), 'w') as f:
            f.write('A libguestfs fixed appliance booting %s uncompressed '
                    '(made by sparc-nova).\n' % vmlinuz)
        shutil.rmtree(target, ignore_errors=True)   # a partial one
        os.rename(out, target)
        LOG.info('Built the libguestfs appliance booting %s uncompressed '
                 'in %s', vmlinuz, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_others(cache_dir, key):
    for name in os.listdir(cache_dir):
        if name != key and name.startswith(('appliance-', 'build-')):
            shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)
