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

``debian_kernel('5.10')`` takes Debian 11's kernel (``flavour='cloud'``
for its cloud build) from the Debian archive's ``bullseye`` suite through
a private apt state under the cache directory, so the host's apt sources
and lists are not touched.
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


#: Debian releases whose kernels come from their own archive suite.
ARCHIVE_SUITES = {'5.10': 'bullseye'}
ARCHIVE_MIRROR = 'http://deb.debian.org/debian'


def _archive_kernel(series: str, flavour: str) -> str:
    """A vmlinuz of ``linux-image-<series>.0-N-<flavour>amd64-unsigned``
    from the suite :data:`ARCHIVE_SUITES` names, newest N.
    """
    suite = ARCHIVE_SUITES[series]
    state = os.path.join(CACHE, 'apt-' + suite)
    for sub in ('lists/partial', 'cache/archives/partial', 'debs'):
        os.makedirs(os.path.join(state, sub), exist_ok=True)
    sources = os.path.join(state, 'sources.list')
    with open(sources, 'w') as f:
        f.write('deb %s %s main\n' % (ARCHIVE_MIRROR, suite))
    status = os.path.join(state, 'status')
    open(status, 'a').close()
    opts = ['-o', 'Dir::Etc::sourcelist=' + sources,
            '-o', 'Dir::Etc::sourceparts=-',
            '-o', 'Dir::State::lists=' + os.path.join(state, 'lists'),
            '-o', 'Dir::Cache=' + os.path.join(state, 'cache'),
            '-o', 'Dir::State::status=' + status]
    suffix = '%samd64' % (flavour + '-' if flavour else '')
    pattern = re.compile(r'vmlinuz-%s\.0-\d+-%s$' % (re.escape(series),
                                                     re.escape(suffix)))
    found = _cached(pattern)
    if found:
        return found
    _run(['apt-get'] + opts + ['update'])
    names = _run(['apt-cache'] + opts + ['pkgnames',
                                         'linux-image-%s.' % series])
    rx = re.compile(r'^linux-image-%s\.0-(\d+)-%s-unsigned$'
                    % (re.escape(series), re.escape(suffix)))
    cands = sorted((int(m.group(1)), n) for n in names.split()
                   for m in [rx.match(n)] if m)
    if not cands:
        raise KernelUnavailable('the %s suite has no linux-image-%s.0-N-%s'
                                '-unsigned package' % (suite, series, suffix))
    return _unpack(cands[-1][1], os.path.join(state, 'debs'), opts, pattern)


def _unpack(pkg: str, where: str, opts: list[str], pattern: re.Pattern
            ) -> str:
    """Download ``pkg`` into ``where`` (unless a previous run did) and
    unpack its vmlinuz into the cache; the path of the vmlinuz matching
    ``pattern``.
    """
    debs = sorted(glob.glob(os.path.join(where, pkg + '_*.deb')))
    if not debs:
        _run(['apt-get'] + opts + ['download', pkg], cwd=where)
        debs = sorted(glob.glob(os.path.join(where, pkg + '_*.deb')))
    if not debs:
        raise KernelUnavailable('apt-get download %s left no %s_*.deb in %s'
                                % (pkg, pkg, where))
    _unpack_vmlinuz(debs[-1])
    found = _cached(pattern)
    if not found:
        raise KernelUnavailable('%s has no /boot/vmlinuz-*' % pkg)
    os.chmod(found, 0o644)
    return found


def _cached(pattern: re.Pattern) -> str | None:
    """The newest cached vmlinuz whose name matches ``pattern``."""
    names = sorted(n for n in os.listdir(os.path.join(CACHE, 'boot'))
                   if pattern.match(n))
    return os.path.join(CACHE, 'boot', names[-1]) if names else None


def debian_kernel(series: str, flavour: str = '') -> str:
    """Path of a vmlinuz of Debian kernel ``series`` (e.g. ``6.12``;
    ``flavour`` ``'cloud'`` for the cloud build where the series comes
    from an archive suite).

    :raises KernelUnavailable: apt cannot get it.
    """
    env = os.environ.get('SPARC_TEST_KERNEL_' + series.replace('.', '_')
                         + ('_' + flavour.upper() if flavour else ''))
    if env:
        return env
    if series in ARCHIVE_SUITES:
        os.makedirs(os.path.join(CACHE, 'boot'), exist_ok=True)
        return _archive_kernel(series, flavour)
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
