"""What a tree's removal leaves behind for the verification to check,
recorded just before the files are removed.

* Kept files: the SHA-256 of a sample of them (the ones next to removed
  files first) or of all (``verify_kept``); :func:`.verify.verify_trees`
  hashes them again after the scrub.
* Removed files: canaries (:mod:`.canaries`), short byte strings sampled
  from their content and their names; :mod:`.verify` searches the
  decrypted views, the working copy and the written destination for them.
"""

import os
import random

from sparc_nova.engine.disk import batch
from sparc_nova.engine.disk import canaries as canaries_mod
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine.disk import session as session_mod

__all__ = ['hash_kept', 'sample_canaries']


def hash_kept(session: session_mod.Session, index: int,
              selection: rules_mod.Selection,
              removals: list[session_mod.Removal]) -> None:
    """Record in ``session.kept_hashes`` the SHA-256 (hex) of the kept
    files of tree ``index`` to check after the scrub: every kept file
    (``verify_kept='all'``), or up to ``verify_sample_size`` regular
    files, those in the directories of removed files first, then a
    random sample of the rest.
    """
    g = session.g
    options = session.options
    if options.verify_kept == 'all':
        sums = os.path.join(session.workdir, 'sums')
        g.checksums_out('sha256', '/', sums)
        kept = set(selection.kept)
        with open(sums, 'rb') as f:
            for line in f:
                digest, _, name = line.rstrip(b'\n').partition(b'  ')
                name = name.decode('utf-8', 'surrogateescape')
                path = '/' + (name[2:] if name.startswith('./')
                              else name.lstrip('/'))
                if path in kept:
                    session.kept_hashes[(index, path)] = digest.decode()
        os.unlink(sums)
        return
    siblings = {os.path.dirname(r.path) for r in removals}
    near = [p for p in selection.kept if os.path.dirname(p) in siblings]
    rest = [p for p in selection.kept if os.path.dirname(p)
            not in siblings]
    random.shuffle(rest)
    candidates = near + rest[:options.verify_sample_size * 2]
    stats = session.lstat_many(candidates)
    limit = options.verify_sample_size
    chosen = [p for p in candidates
              if session_mod.kind(stats[p]) == 'file'][:limit]
    for path, digest in zip(chosen, batch.sha256_files(g, chosen)):
        session.kept_hashes[(index, path)] = digest


def sample_canaries(session: session_mod.Session,
                    removals: list[session_mod.Removal]) -> None:
    """Add to ``session.canaries`` the canaries of the files about to be
    removed: the name of each path a glob or held path selected, and
    content windows of each regular file (whole up to
    :data:`.canaries.WHOLE_FILE_BYTES`, else ``canary_windows`` windows).
    A file with more than one hard link gets no content canary (its
    content stays reachable) and a report warning.
    """
    report = session.report
    windows_per_file = session.options.canary_windows
    sampled = []
    for r in removals:
        kind = session_mod.kind(r.stat)
        if kind == 'directory':
            continue
        if r.rule.source in ('path', 'held'):
            name = canaries_mod.name_canary(r.path)
            if name is not None:
                session.canaries.append(name)
        if kind != 'file':
            continue
        if r.stat['st_nlink'] > 1:
            report.warnings.append(
                '%s has %d hard links; its content stays reachable '
                'through the kept ones' % (
                    report.name(r.path), r.stat['st_nlink']))
            continue
        sampled.append(r)
    small = [r for r in sampled
             if r.stat['st_size'] <= canaries_mod.WHOLE_FILE_BYTES]
    contents = batch.read_files(session.g, [(r.path, r.stat['st_size'])
                                            for r in small])
    large = [r for r in sampled
             if r.stat['st_size'] > canaries_mod.WHOLE_FILE_BYTES]
    wanted = [canaries_mod.windows(r.path, r.stat['st_size'],
                                   windows_per_file) for r in large]
    datas = iter(batch.read_windows(session.g, [w for ws in wanted
                                                for w in ws]))
    for r in small:
        data = contents.get(r.path, b'')
        _add(session, canaries_mod.from_windows(
            r.path, [data[o:o + n] for _, o, n in canaries_mod.windows(
                r.path, len(data), windows_per_file)]))
    for r, ws in zip(large, wanted):
        _add(session, canaries_mod.from_windows(
            r.path, [next(datas) for _ in ws]))


def _add(session: session_mod.Session,
         found: list[canaries_mod.Canary]) -> None:
    if not found:
        session.report.files_without_canary += 1
    session.canaries.extend(found)
