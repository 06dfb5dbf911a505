"""Other Debian kernels for the test bed, from Debian's own packages.

``debian_kernel('6.12')`` returns the path of a ``vmlinuz`` of the newest
``linux-image-6.12.*+deb12-amd64-unsigned`` package apt knows (bookworm
security / backports), downloaded with ``apt-get download`` and unpacked
with ``dpkg-deb`` into a cache directory; nothing is installed on the
host. ``SPARC_TEST_KERNEL_<MAJOR>_<MINOR>`` (e.g. SPARC_TEST_KERNEL_6_12)
overrides it with a path. The packages and the unpacked kernels stay in
the cache (``SPARC_TEST_KERNEL_CACHE``, default /var/tmp/sparc-kernels)
between runs. A kernel that cannot be had raises
:class:`KernelUnavailable` naming the command that failed and its error
output: the tests that need it fail, they are not skipped.
"""

import glob
import os
import re
import subprocess

CACHE = os.environ.get('SPARC_TEST_KERNEL_CACHE', '/var/tmp/sparc-kernels')


class KernelUnavailable(Exception):
    pass


def _run(cmd, **kw) -> str:
    """stdout of ``cmd``; KernelUnavailable with its stderr when it
    fails.
    """
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        raise KernelUnavailable('%s: %s' % (cmd[0], e))
    if proc.returncode != 0:
        raise KernelUnavailable('%s exited %d: %s' % (
            ' '.join(cmd), proc.returncode, proc.stderr.strip()[-2000:]))
    return proc.stdout


def _unpack_vmlinuz(deb: str) -> None:
    """Unpack ./boot/vmlinuz-* of package file ``deb`` into the cache."""
    unpack = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', deb],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tar = subprocess.run(['tar', '-x', '--wildcards', './boot/vmlinuz-*'],
                         stdin=unpack.stdout, cwd=CACHE, capture_output=True,
                         text=True)
    unpack.stdout.close()
    err = unpack.stderr.read().decode(errors='replace')
    unpack.stderr.close()
    if unpack.wait() != 0:
        raise KernelUnavailable('dpkg-deb --fsys-tarfile %s exited %d: %s'
                                % (deb, unpack.returncode, err.strip()))
    if tar.returncode != 0:
        raise KernelUnavailable('tar -x of %s exited %d: %s'
                                % (deb, tar.returncode, tar.stderr.strip()))


def debian_kernel(series: str) -> str:
    """Path of a vmlinuz of Debian kernel ``series`` (e.g. ``6.12``)."""
    env = os.environ.get('SPARC_TEST_KERNEL_' + series.replace('.', '_'))
    if env:
        return env
    found = sorted(glob.glob(os.path.join(
        CACHE, 'boot', 'vmlinuz-%s.*+deb12-amd64' % series)))
    if found:
        return found[-1]
    rx = re.compile(r'^linux-image-(%s\.\d+)\+deb12-amd64-unsigned$'
                    % re.escape(series))
    names = _run(['apt-cache', 'pkgnames', 'linux-image-%s.' % series])
    cands = sorted((tuple(int(x) for x in m.group(1).split('.')), n)
                   for n in names.split() for m in [rx.match(n)] if m)
    if not cands:
        raise KernelUnavailable(
            'apt knows no linux-image-%s.*+deb12-amd64-unsigned package '
            '(enable bookworm-security or bookworm-backports and run '
            'apt-get update)' % series)
    pkg = cands[-1][1]
    os.makedirs(CACHE, exist_ok=True)
    debs = sorted(glob.glob(os.path.join(CACHE, pkg + '_*.deb')))
    if not debs:
        _run(['apt-get', 'download', pkg], cwd=CACHE)
        debs = sorted(glob.glob(os.path.join(CACHE, pkg + '_*.deb')))
    if not debs:
        raise KernelUnavailable('apt-get download %s left no %s_*.deb in %s'
                                % (pkg, pkg, CACHE))
    _unpack_vmlinuz(debs[-1])
    found = sorted(glob.glob(os.path.join(
        CACHE, 'boot', 'vmlinuz-%s.*+deb12-amd64' % series)))
    if not found:
        raise KernelUnavailable('%s has no /boot/vmlinuz-*' % pkg)
    os.chmod(found[-1], 0o644)
    return found[-1]
