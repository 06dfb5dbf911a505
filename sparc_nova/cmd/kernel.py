"""``sparc kernel add-debuginfo``: fill the BUILD-ID cache.

Guest kernels with BTF in memory need nothing from the operator (their
symbols are found in their own memory, see doc/memory.md). A kernel built
without BTF (e.g. RHEL 7's 3.10) needs its debug image in the cache; this
command files one under its BUILD-ID, from:

* a Debian/Ubuntu ``linux-image-*-dbg`` package (``.deb``: its
  ``/usr/lib/debug/boot/vmlinux-*``, or ``.../lib/modules/*/vmlinux``);
* an ELF ``vmlinux`` with debug information (e.g. taken out of a RHEL
  ``kernel-debuginfo`` RPM with ``rpm2cpio PKG | cpio -idm``).

The cache directory is ``[sparc] buildid_cache_dir`` unless
``--cache-dir`` names one. Files here are trusted: only the operator runs
this command.
"""

import fnmatch
import subprocess
import tarfile

from sparc_nova import conf
from sparc_nova import exception
from sparc_nova.introspect import buildid_cache

__all__ = ['register']

#: Where a debug package keeps the kernel image (tar member names).
DEB_VMLINUX = ('./usr/lib/debug/boot/vmlinux-*',
               './usr/lib/debug/lib/modules/*/vmlinux')


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'kernel', help='Guest kernels: the BUILD-ID cache of debug images.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True
    add = commands.add_parser(
        'add-debuginfo',
        help='File a kernel debug image under its BUILD-ID.',
        description='File the vmlinux of a -dbg package (.deb) or an ELF '
                    'vmlinux under its BUILD-ID in the cache, for guest '
                    'kernels that carry no BTF. Prints the BUILD-ID and '
                    'the path written.')
    add.add_argument('path', metavar='PATH',
                     help='A Debian kernel debug package (.deb) or a vmlinux.')
    add.add_argument('--cache-dir', metavar='DIR',
                     help='The BUILD-ID cache (default: [sparc] '
                          'buildid_cache_dir).')
    add.set_defaults(func=_add_debuginfo)


def _add_debuginfo(args) -> int:
    directory = args.cache_dir or conf.CONF.sparc.buildid_cache_dir
    cache = buildid_cache.BuildIdCache(directory or None)
    if args.path.endswith('.deb'):
        build_id, path = _add_from_deb(cache, args.path)
    else:
        build_id, path = cache.add_vmlinux(args.path)
    print('%s %s' % (build_id, path))
    return 0


def _add_from_deb(cache: buildid_cache.BuildIdCache, deb: str
                  ) -> tuple[str, str]:
    """Stream the package's data archive (``dpkg-deb --fsys-tarfile``)
    and file the first kernel image in it.
    """
    try:
        proc = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', deb],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as e:
        raise exception.SparcError('%s: cannot run dpkg-deb: %s' % (deb, e))
    found = None
    try:
        with tarfile.open(fileobj=proc.stdout, mode='r|') as tar:
            for member in tar:
                if member.isfile() and any(
                        fnmatch.fnmatch(member.name, p) for p in DEB_VMLINUX):
                    found = cache.add_vmlinux(tar.extractfile(member))
                    break
    except tarfile.TarError as e:
        raise exception.SparcError('%s: unreadable package data: %s'
                                   % (deb, e))
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode('utf-8', 'replace').strip()
        proc.stderr.close()
        code = proc.wait()
    if found is None:
        if code and code != -13:        # SIGPIPE once we stop reading
            raise exception.SparcError('%s: dpkg-deb failed: %s'
                                       % (deb, err or 'exit %d' % code))
        raise exception.SparcError(
            '%s holds no kernel debug image (%s)'
            % (deb, ', '.join(p[1:] for p in DEB_VMLINUX)))
    return found
