"""Phase 2 in the appliance: choose the files to remove, and remove them.

For every tree (mounted read-write): list every path, let the rules
choose (:meth:`.rules.Rules.select`: this is where a file is chosen for
removal), stat the chosen ones (:func:`plan`), record the evidence the
verification needs (:mod:`.evidence`), overwrite each file's blocks
through its filesystem backend and unlink it, remove emptied chosen
directories, rebuild the directories that lost entries where the
filesystem keeps removed names, and trim the free blocks
(:func:`.wipe.trim`).
"""

import os

from sparc_nova.engine.disk import batch
from sparc_nova.engine.disk import discover
from sparc_nova.engine.disk import evidence
from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine.disk import session as session_mod
from sparc_nova.engine.disk import volumes as volumes_mod
from sparc_nova.engine.disk import wipe

__all__ = ['check_rules_matched', 'plan', 'remove', 'remove_selected',
           'scrub_tree']


def remove_selected(session: session_mod.Session) -> None:
    """Remove what the rules select from every tree of the image, then
    report (or, with strict rules, refuse) rules that matched nothing.

    :raises DiskScrubError: a step failed (the message names the device,
        never a guest path), or a strict rule matched nothing.
    """
    matched_units = set()
    for index, tree in enumerate(session.trees):
        matched_units |= scrub_tree(session, index, tree)
    check_rules_matched(session, matched_units)


def scrub_tree(session: session_mod.Session, index: int,
               tree: volumes_mod.Tree) -> set[str]:
    """Select, record evidence, remove and trim in tree ``index``.

    :returns: the rule units that match something in the tree.
    :raises DiskScrubError: a step failed.
    """
    g = session.g
    report = session.report
    if not session.mount_tree(tree, readonly=False):
        return set()
    try:
        paths = session.list_tree()
        if not tree.inspected and not report.operating_system:
            report.operating_system = discover.operating_system(g, paths)
        selection = session.rules.select(paths)
        session.redactor.add_paths(selection.removed)
        session.kept_paths.extend(selection.kept)
        for unit, n in selection.counts.items():
            key = report.rule_name(unit)
            report.rules[key] = report.rules.get(key, 0) + n
        removals = plan(session, tree, selection)
        evidence.hash_kept(session, index, selection, removals)
        evidence.sample_canaries(session, removals)
        remove(session, tree, removals)
        for mountpoint, _, device in tree.mounts:
            volume = session.volumes[device]
            if volume.role == volumes_mod.ROLE_FILESYSTEM:
                wipe.trim(session, volume, mountpoint)
        return session.rules.matches_anything(paths, set(selection.counts))
    except RuntimeError as e:
        session.fail('removing files failed: %s' % session.detail(e),
                     device=tree.mounts[0][2], cause=e)
    finally:
        g.umount_all()


def plan(session: session_mod.Session, tree: volumes_mod.Tree,
         selection: rules_mod.Selection) -> list[session_mod.Removal]:
    """The :class:`~.session.Removal` of every selected path of ``tree``
    on a filesystem a backend can scrub. A match on any other volume
    makes that volume unverified (when allowed).

    :raises DiskScrubError: a match on a filesystem no backend can scrub,
        and unverified volumes are not allowed.
    """
    removals = []
    stats = session.lstat_many(list(selection.removed))
    for path, rule in selection.removed.items():
        device = tree.device_of(path)
        volume = session.volumes[device]
        if volume.role != volumes_mod.ROLE_FILESYSTEM:
            if not session.options.allow_unverified:
                session.fail('%s filesystem has files the rules match, '
                             'and no backend can scrub it'
                             % volume.fstype, device=device)
            volume.report.verification = report_mod.UNVERIFIED
            volume.report.reason = 'matches on an unsupported ' \
                'filesystem were left'
            continue
        removals.append(session_mod.Removal(path, device, stats[path],
                                            rule))
    return removals


def remove(session: session_mod.Session, tree: volumes_mod.Tree,
           removals: list[session_mod.Removal]) -> None:
    """Overwrite (through each filesystem's backend) and unlink the
    removed files, remove the removed directories that are empty, and
    rebuild the parents that lost entries; every removal is reported.
    """
    g = session.g
    report = session.report
    kind = session_mod.kind
    files = [r for r in removals if kind(r.stat) != 'directory']
    directories = [r for r in removals if kind(r.stat) == 'directory']
    for device in {r.device for r in files}:
        session.backend(session.volumes[device]).overwrite(
            g, [(r.path, r.stat) for r in files if r.device == device])
    g.sync()
    batch.unlink(g, [r.path for r in files])
    for r in files:
        volume = session.volumes[r.device]
        volume.report.removed += 1
        volume.report.action = 'scrubbed'
        report.removed.append(report_mod.RemovedPath(
            report.name(r.path), kind(r.stat), r.stat['st_size'],
            report.rule_name(r.rule.unit), r.device))
    removed_dirs = set()
    for r in sorted(directories, key=lambda r: -r.path.count('/')):
        if g.ls(r.path):
            continue
        g.rmdir(r.path)
        removed_dirs.add(r.path)
        volume = session.volumes[r.device]
        volume.report.removed += 1
        report.removed.append(report_mod.RemovedPath(
            report.name(r.path), 'directory', 0,
            report.rule_name(r.rule.unit), r.device))
    parents = {os.path.dirname(r.path) for r in removals} - removed_dirs
    _rebuild_directories(session, tree, parents)
    g.sync()


def _rebuild_directories(session: session_mod.Session,
                         tree: volumes_mod.Tree, parents: set[str]) -> None:
    """Rebuild the directories that lost entries, on filesystems
    whose directories keep removed names.
    """
    report = session.report
    mountpoints = {m for m, _, _ in tree.mounts}
    wanted = []
    for path in sorted(parents, key=lambda p: -p.count('/')):
        volume = session.volumes[tree.device_of(path)]
        if not session.backend(volume).rebuilds_directories:
            continue
        if path in mountpoints or any(
                os.path.dirname(m) == path for m in mountpoints):
            report.warnings.append(
                'directory %s is a mount point or holds one and was '
                'not rebuilt; the raw scan decides whether removed '
                'names stayed' % report.name(path))
            continue
        wanted.append(path)
    stats = session.lstat_many(wanted)
    for path in wanted:
        batch.rebuild_directory(session.g, path, stats[path])
        session.volumes[tree.device_of(path)].report.steps.append(
            'directory rebuilt: %s' % report.name(path))


def check_rules_matched(session: session_mod.Session,
                        matched_units: set[str]) -> None:
    """Report every rule unit with its count (0 when unmatched) and list
    the unmatched ones.

    :raises DiskScrubError: strict rules, and a unit other than a held
        path matched nothing.
    """
    report = session.report
    rules = session.rules
    for unit in rules.units:
        report.rules.setdefault(report.rule_name(unit), 0)
        if unit in matched_units:
            continue
        report.unmatched_rules.append(report.rule_name(unit))
        held = any(r.source == 'held' and r.text == unit
                   for r in rules.rules)
        if rules.strict and not held:
            session.fail('rule %s matches nothing (strict rules)'
                         % report.rule_name(unit))
