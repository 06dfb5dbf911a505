"""File operations on many guest paths at once.

Each libguestfs call is one round trip to the appliance (about 35 ms
under TCG), so per-file calls dominate a scrub of many small files.
These helpers run one appliance shell command per batch instead, with
paths passed as separate arguments (never interpolated into the script)
and batches kept well under the kernel's 128 KiB limit for one argument.
Paths are guest paths of mounted trees (the appliance sees them below
/sysroot).
"""

import base64
import io
import re
import tarfile

from sparc_nova.engine.disk import appliance

__all__ = ['SYSROOT', 'sha256_files', 'read_files', 'read_windows',
           'overwrite_with_zeros', 'unlink', 'rebuild_directory']

SYSROOT = '/sysroot'
_ARG_BYTES = 60 * 1024
#: Output of one call: base64 of this must fit libguestfs' 4 MiB message.
_PAYLOAD_BYTES = 2 * 1024 * 1024


def _batches(items: list, arg_bytes, payload_bytes=lambda item: 0):
    """Split ``items`` so that each batch's arguments stay under
    _ARG_BYTES and its expected output under _PAYLOAD_BYTES.
    """
    batch, args, payload = [], 0, 0
    for item in items:
        a, p = arg_bytes(item) + 16, payload_bytes(item)
        if batch and (args + a > _ARG_BYTES
                      or payload + p > _PAYLOAD_BYTES):
            yield batch
            batch, args, payload = [], 0, 0
        batch.append(item)
        args += a
        payload += p
    if batch:
        yield batch


def _sh(g, script: str, args: list[str]) -> str:
    return appliance.run(g, ['sh', '-c', script, 'sh'] + args)


def sha256_files(g, paths: list[str]) -> list[str]:
    """SHA-256 hex digests of regular files, in order (``'missing'`` for
    a path that cannot be read).
    """
    digests = []
    for chunk in _batches(paths, len):
        # No -z: the debug channel is a C string and would stop at NUL.
        out = _sh(g, 'sha256sum -- "$@" 2>/dev/null; exit 0',
                  [SYSROOT + p for p in chunk])
        found = {}
        for line in out.splitlines():
            escaped = line.startswith('\\')
            digest, _, name = line.lstrip('\\').partition('  ')
            if escaped:
                name = _unescape(name)
            found[name] = digest
        digests.extend(found.get(SYSROOT + p, 'missing') for p in chunk)
    return digests


def _unescape(name: str) -> str:
    """Undo sha256sum's escaping of backslash, newline and CR in names."""
    return re.sub(r'\\(.)', lambda m: {'n': '\n', 'r': '\r'}.get(
        m.group(1), m.group(1)), name)


def read_files(g, files: list[tuple[str, int]]) -> dict[str, bytes]:
    """The whole content of regular files given as ``(path, size)``
    (sizes in bytes; each file must be well under 2 MiB), through one tar
    stream per batch.
    """
    prefix = SYSROOT.lstrip('/') + '/'
    contents = {}
    for chunk in _batches(files, lambda f: len(f[0]),
                          lambda f: f[1] + 1024):
        out = _sh(g, 'tar -cf - -- "$@" 2>/dev/null | base64 -w0',
                  [SYSROOT + path for path, _ in chunk])
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(out.strip())),
                          mode='r:') as tar:
            for member in tar:
                if member.isfile() and member.name.startswith(prefix):
                    path = '/' + member.name[len(prefix):]
                    contents[path] = tar.extractfile(member).read()
    return contents


def read_windows(g, windows: list[tuple[str, int, int]]) -> list[bytes]:
    """The bytes at ``(path, offset, length)`` of each window (guest
    path, offset and length in bytes), in order.

    :raises RuntimeError: libguestfs reports the command failed, or a
        window could not be read
    """
    script = ('while [ $# -gt 0 ]; do dd if="$1" iflag=skip_bytes,'
              'count_bytes skip="$2" count="$3" status=none | base64 -w0; '
              'echo; shift 3; done')
    found = []
    for chunk in _batches(windows, lambda w: len(w[0]) + 24,
                          lambda w: w[2] * 2):
        args = []
        for path, offset, length in chunk:
            args += [SYSROOT + path, str(offset), str(length)]
        lines = _sh(g, script, args).splitlines()
        if len(lines) != len(chunk):
            raise RuntimeError('read %d windows of %d'
                               % (len(lines), len(chunk)))
        found.extend(base64.b64decode(line) for line in lines)
    return found


def overwrite_with_zeros(g, paths: list[str]) -> None:
    """Overwrite each file's bytes with zeros in place (same length, no
    truncation, so the same blocks are written) and flush them.
    """
    for chunk in _batches(paths, len):
        _sh(g, 'exec shred -n 0 -z -x -- "$@"',
            [SYSROOT + p for p in chunk])


def unlink(g, paths: list[str]) -> None:
    """Unlink the non-directories ``paths`` (guest paths, below
    :data:`SYSROOT` in the appliance), in batches; a missing one is no
    error.

    :raises RuntimeError: libguestfs reports the command failed
    """
    for chunk in _batches(paths, len):
        _sh(g, 'exec rm -f -- "$@"', [SYSROOT + p for p in chunk])


_REBUILD = r'''set -e
d="$1"; parent="$2"; name="$3"; tmp="$4"; meta=/tmp/sparc-dir.tar
tar --xattrs --xattrs-include='*' --acls --selinux --numeric-owner \
    --no-recursion -C "$parent" -cf "$meta" -- "$name"
mkdir -- "$tmp"
find "$d" -mindepth 1 -maxdepth 1 -exec mv -t "$tmp" -- {} +
rmdir -- "$d"
tar --xattrs --xattrs-include='*' --acls --selinux --numeric-owner \
    -C "$parent" -xpf "$meta"
find "$tmp" -mindepth 1 -maxdepth 1 -exec mv -t "$d" -- {} +
rmdir -- "$tmp"
rm -f -- "$meta"
'''


def rebuild_directory(g, path: str, stat: dict) -> None:
    """Give a directory fresh blocks: its entries move to a new sibling,
    the old directory (whose blocks keep the bytes of removed names) is
    removed and re-created with the same mode, owner, xattrs, ACLs and
    SELinux label, and the entries move back. ``stat`` is the lstatns
    taken before; its atime and mtime are restored. Refuses ``/``.
    """
    parent, name = path.rsplit('/', 1)
    if not name:
        raise RuntimeError('cannot rebuild the root directory')
    parent = parent or '/'
    tmp = '%s/.sparc-rebuild-%d' % (parent.rstrip('/'), stat['st_ino'])
    _sh(g, _REBUILD, [SYSROOT + path, SYSROOT + parent, name, SYSROOT + tmp])
    g.utimens(path, stat['st_atime_sec'], stat['st_atime_nsec'],
              stat['st_mtime_sec'], stat['st_mtime_nsec'])
