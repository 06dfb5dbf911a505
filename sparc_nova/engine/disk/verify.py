"""Phase 4 in the appliance, and the last host-side check: prove the
result.

In the appliance (:func:`verify_in_appliance`): no path matches the
rules any more, kept files are byte-identical (:func:`verify_trees`), no
canary is left in a decrypted view of a LUKS volume
(:func:`verify_decrypted_views`), every filesystem passes its check
(:func:`check_filesystems`), and no canary is left in the raw working
copy. After the destination is written: no canary in its raw bytes
(:func:`verify_output`). A canary also held by a kept file or a kept
name is "explained" (the same bytes legitimately stay,
:func:`explain`); any other one fails the scrub, with a message that
counts canaries and never quotes them.
"""

import base64

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import batch
from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import scan
from sparc_nova.engine.disk import session as session_mod
from sparc_nova.engine.disk import volumes as volumes_mod
from sparc_nova import exception
from sparc_nova.i18n import _P

__all__ = ['check_filesystems', 'explain', 'verify_decrypted_views',
           'verify_in_appliance', 'verify_output', 'verify_trees']


def verify_in_appliance(session: session_mod.Session) -> None:
    """Every check that needs the appliance, then the raw scan of the
    working copy (while the appliance still runs, so that a hit can be
    checked against kept files before failing); sets
    ``report.canaries``.

    :raises DiskVerificationError: a check failed.
    :raises DiskScrubError: a check could not run.
    """
    verify_trees(session)
    verify_decrypted_views(session)
    check_filesystems(session)
    session.g.sync()
    _fail_on_hits(session, scan.count(session.work, 'raw',
                                      _patterns(session)), 'working copy')
    session.report.canaries = len({c.data for c in session.canaries})


def verify_trees(session: session_mod.Session) -> None:
    """Mount each tree read-only: no path of a verified volume may match
    the rules, and every hashed kept file must have its hash; sets
    ``report.kept_files_checked``.

    :raises DiskVerificationError: a path still matches, or a kept file
        changed or disappeared (named as the report names paths).
    """
    g = session.g
    report = session.report
    checked = 0
    for index, tree in enumerate(session.trees):
        if not session.mount_tree(tree, readonly=True):
            continue
        try:
            selection = session.rules.select(session.list_tree())
            still = [p for p in selection.removed
                     if session.volumes[tree.device_of(p)].report
                     .verification != report_mod.UNVERIFIED]
            if still:
                raise exception.DiskVerificationError(
                    session.image,
                    _P('%d path still matches the rules after the scrub',
                       '%d paths still match the rules after the scrub',
                       len(still)) % len(still),
                    device=tree.mounts[0][2])
            expected = {path: digest for (tree_index, path), digest
                        in session.kept_hashes.items()
                        if tree_index == index}
            paths = sorted(expected)
            for path, after in zip(paths, batch.sha256_files(g, paths)):
                if after != expected[path]:
                    report.kept_files_identical = False
                    raise exception.DiskVerificationError(
                        session.image, 'kept file changed or disappeared '
                                       'during the scrub',
                        device=report.name(path))
                checked += 1
        finally:
            g.umount_all()
    report.kept_files_checked = checked


def verify_decrypted_views(session: session_mod.Session) -> None:
    """Scan the decrypted view of every opened LUKS volume for canaries.

    :raises DiskVerificationError: an unexplained canary is left.
    :raises DiskScrubError: the scan failed.
    """
    patterns = _patterns(session)
    for volume in session.luks:
        if not volume.encrypted_by:
            continue
        try:
            hits = scan.count_in_appliance(session.g, volume.encrypted_by,
                                           patterns)
        except RuntimeError as e:
            session.fail(session.detail(e), device=volume.device, cause=e)
        _fail_on_hits(session, hits, volume.device + ' (decrypted view)')
        volume.report.steps.append('no canary in the decrypted view')


def check_filesystems(session: session_mod.Session) -> None:
    """Run each scrubbed filesystem's consistency check (no repair).

    :raises DiskScrubError: a check failed, naming the device.
    """
    for volume in session.volumes.values():
        if volume.role != volumes_mod.ROLE_FILESYSTEM or \
                volume.report.action == 'skipped':
            continue
        try:
            session.backend(volume).check(session.g, volume.device)
        except RuntimeError as e:
            session.fail('filesystem check failed after the scrub: %s'
                         % session.detail(e),
                         device=volume.device, cause=e)
        volume.report.steps.append('consistency check passed')


def verify_output(session: session_mod.Session, path: str,
                  fmt: str) -> None:
    """Raw scan of the written destination ``path`` (in ``fmt``): only
    canaries explained by kept data may occur.

    :raises DiskVerificationError: another canary is in it (the caller
        deletes it).
    """
    hits = scan.count(path, fmt, _patterns(session),
                      session.options.qemu_img_limits)
    _raise_residual(session, hits, set(hits) - session.explained, path,
                    'still in the output, which was deleted')


def explain(session: session_mod.Session,
            hits: dict[bytes, int]) -> set[bytes]:
    """The hit canaries that kept files or kept names also hold (kept
    names first, then a ``grep`` of every tree mounted read-only).
    """
    explained = set()
    kept_names = [p.encode('utf-8', 'surrogateescape')
                  for p in session.kept_paths]
    for data in hits:
        if any(data in name for name in kept_names):
            explained.add(data)
    remaining = [d for d in hits if d not in explained]
    if not remaining:
        return explained
    encoded = base64.b64encode(b''.join(d + b'\n' for d in remaining))
    for tree in session.trees:
        if not session.mount_tree(tree, readonly=True):
            continue
        try:
            status, out = appliance.run_status(session.g, [
                'sh', '-c',
                'echo "$1" | base64 -d > /tmp/sparc-patterns && '
                'LC_ALL=C grep -r -a -o -h -F -f /tmp/sparc-patterns '
                '/sysroot > /tmp/sparc-matches; rc=$?; '
                'sort -u /tmp/sparc-matches | base64 -w0; '
                'rm -f /tmp/sparc-patterns /tmp/sparc-matches; '
                'exit $rc', 'sh', encoded.decode('ascii')])
        finally:
            session.g.umount_all()
        if status in (0, 1):
            explained |= set(base64.b64decode(out.strip() or b'')
                             .split(b'\n')) & set(remaining)
    return explained


def _patterns(session: session_mod.Session) -> list[bytes]:
    return [c.data for c in session.canaries]


def _fail_on_hits(session: session_mod.Session, hits: dict[bytes, int],
                  where: str) -> None:
    if not hits:
        return
    unexplained = set(hits) - session.explained
    if unexplained:
        session.explained |= explain(session,
                                     {d: hits[d] for d in unexplained})
        unexplained -= session.explained
    session.report.explained = len(session.explained)
    _raise_residual(session, hits, unexplained, where, 'still readable')


def _raise_residual(session: session_mod.Session, hits: dict[bytes, int],
                    unexplained: set[bytes], where: str,
                    state: str) -> None:
    """Raise DiskVerificationError when canaries are left; the message
    counts canaries, files and occurrences, never quotes them.
    """
    if not unexplained:
        return
    session.report.residual = sum(hits[d] for d in unexplained)
    files = {c.path for c in session.canaries if c.data in unexplained}
    raise exception.DiskVerificationError(
        session.image, _P('%(canaries)s of %(files)s is %(state)s '
                          '(%(hits)s)',
                          '%(canaries)s of %(files)s are %(state)s '
                          '(%(hits)s)', len(unexplained)) % {
            'canaries': _P('%d canary', '%d canaries', len(unexplained))
            % len(unexplained),
            'files': _P('%d removed file', '%d removed files', len(files))
            % len(files),
            'state': state,
            'hits': _P('%d occurrence', '%d occurrences',
                       session.report.residual) % session.report.residual},
        device=where)
