"""Phase 1 in the appliance: what the image holds.

LUKS volumes are opened with the caller's keys, every volume is
classified (filesystem with a backend, swap, unknown...) and grouped into
trees (an OS root with its mounts, or a lone filesystem); the findings go
into the session and its report (:mod:`.volumes` does the work).
"""

from sparc_nova.engine.disk import layout as layout_mod
from sparc_nova.engine.disk import session as session_mod
from sparc_nova.engine.disk import volumes as volumes_mod

__all__ = ['open_volumes', 'operating_system']

#: Largest os-release file read (the format's files are a few hundred
#: bytes; the guest's content is hostile).
_OS_RELEASE_MAX = 16384
#: Longest operating system name reported.
_NAME_MAX = 200


def open_volumes(session: session_mod.Session,
                 disks: layout_mod.Layout) -> None:
    """Fill ``session.luks``, ``session.volumes`` and ``session.trees``
    and report the volumes and the operating system found.

    :param disks: the disks' layout (:func:`.layout.read`). Its
        filesystems are listed once LUKS volumes are opened (by libguestfs
        when one was: their content appears only then).
    :raises DiskScrubError: a volume cannot be opened or classified (and
        the options do not allow it unverified), or the image holds
        neither a filesystem nor a swap area.
    """
    g = session.g
    options = session.options
    try:
        session.luks = volumes_mod.open_luks(
            g, session.image, dict(options.luks_keys),
            options.allow_unverified, disks)
        filesystems = None if any(v.encrypted_by for v in session.luks) \
            else disks.filesystems(g)
        found = volumes_mod.classify(
            g, session.image, session.luks, disks.no_filesystem,
            set(session.backend_classes), options.allow_unverified,
            filesystems)
        session.volumes = {v.device: v for v in found}
        session.trees = volumes_mod.trees(g, found)
    except RuntimeError as e:
        session.fail('inspecting the image failed: %s'
                     % session.detail(e), cause=e)
    session.report.volumes = [v.report for v in session.luks + found]
    if session.trees and session.trees[0].os_root:
        root = session.trees[0].os_root
        session.report.operating_system = '%s %s' % (
            g.inspect_get_distro(root), g.inspect_get_product_name(root))
    if not session.trees and not any(
            v.role == volumes_mod.ROLE_SWAP for v in found):
        session.fail('no filesystem could be found in the image')


def operating_system(g, paths: list[str]) -> str:
    """The operating system of the tree mounted at ``/`` whose paths are
    ``paths``, named as libguestfs inspection names it (``ID``, then
    ``PRETTY_NAME``, of ``/etc/os-release``, which inspection reads
    first on Linux too), for a tree that was not inspected
    (:func:`.volumes.trees`); '' when there is none. The file is the
    guest's: read only when it is a regular file (links followed inside
    the guest's tree) of at most 16 KiB, and the name cut to 200
    characters.
    """
    text = None
    for candidate in ('/etc/os-release', '/usr/lib/os-release'):
        if candidate not in paths:
            continue
        try:
            if g.is_file(candidate, followsymlinks=True) and \
                    g.filesize(candidate) <= _OS_RELEASE_MAX:
                text = g.read_file(candidate).decode('utf-8', 'replace')
                break
        except RuntimeError:
            continue
    if text is None:
        return ''
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition('=')
        if sep and key.strip() in ('ID', 'PRETTY_NAME'):
            fields[key.strip()] = value.strip().strip('"\'')
    name = ' '.join(fields[k] for k in ('ID', 'PRETTY_NAME') if k in fields)
    return name[:_NAME_MAX]
