"""Other Debian kernels for the test bed, from Debian's own packages.

``debian_kernel('6.12')`` returns the path of a ``vmlinuz`` of the newest
``linux-image-6.12.*+deb12-amd64-unsigned`` package apt knows (bookworm
security / backports), downloaded with ``apt-get download`` and unpacked
with ``dpkg-deb`` into a cache directory; nothing is installed on the
host. ``SPARC_TEST_KERNEL_<MAJOR>_<MINOR>`` (e.g. SPARC_TEST_KERNEL_6_12)
overrides it with a path.
"""

import glob
import os
import re
import subprocess

CACHE = os.environ.get('SPARC_TEST_KERNEL_CACHE', '/var/tmp/sparc-kernels')


class KernelUnavailable(Exception):
    pass


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          **kw).stdout


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
    try:
        names = _run(['apt-cache', 'pkgnames', 'linux-image-%s.' % series])
    except (OSError, subprocess.CalledProcessError) as e:
        raise KernelUnavailable('apt-cache failed: %s' % e)
    cands = sorted((tuple(int(x) for x in m.group(1).split('.')), n)
                   for n in names.split() for m in [rx.match(n)] if m)
    if not cands:
        raise KernelUnavailable(
            'apt knows no linux-image-%s.*+deb12-amd64-unsigned package '
            '(enable bookworm-security or bookworm-backports and run '
            'apt-get update)' % series)
    pkg = cands[-1][1]
    os.makedirs(CACHE, exist_ok=True)
    try:
        _run(['apt-get', 'download', pkg], cwd=CACHE)
        debs = sorted(glob.glob(os.path.join(CACHE, pkg + '_*.deb')))
        tar = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', debs[-1]],
                               stdout=subprocess.PIPE)
        subprocess.run(['tar', '-x', '--wildcards', './boot/vmlinuz-*'],
                       stdin=tar.stdout, cwd=CACHE, check=True)
        tar.wait()
    except (OSError, IndexError, subprocess.CalledProcessError) as e:
        raise KernelUnavailable('could not fetch %s: %s' % (pkg, e))
    found = sorted(glob.glob(os.path.join(
        CACHE, 'boot', 'vmlinuz-%s.*+deb12-amd64' % series)))
    if not found:
        raise KernelUnavailable('%s has no /boot/vmlinuz-*' % pkg)
    os.chmod(found[-1], 0o644)
    return found[-1]
