"""scrub_image: remove a policy's files from a disk image so that no byte
of them survives, and prove it.

Contract:

* ``src`` is never modified and is read in the format the caller
  gives (or that oslo.utils' format inspector finds), never in one
  qemu guesses; an image that would read other host files (backing
  file, data file, extents) is refused unless the caller allows a
  backing chain (:mod:`.source`, :mod:`.preflight`). Every qemu-img
  call names its formats and runs under resource limits
  (:mod:`.qemu_img`).
* The scrub works on a private raw working copy (an allowed backing
  chain flattened; raw so that discards punch 4 KiB holes) in a fresh
  0700 directory, and writes ``dst`` in the requested format through a
  temporary file in ``dst``'s directory that is renamed into place only
  after verification.
* Fail closed: on any error no ``dst`` (and no temporary file) is left,
  and the exception (a :class:`~sparc_nova.exception.DiskError`) names
  the image, the device or file concerned, and why.
* One libguestfs appliance launch per scrub.

Steps: host-side checks (:mod:`.preflight`), working copy, appliance
launch, partition layout (:mod:`.layout`), LUKS volumes opened and
volumes classified (:mod:`.volumes`), for every tree: list, select
(:mod:`.rules`), hash kept files, sample
canaries (:mod:`.canaries`), remove and trim; swap areas and free LVM
extents wiped; each filesystem cleaned by its backend
(:mod:`.backends`); then verification: no rule matches any more, kept
files unchanged, filesystems consistent, no canary in a decrypted view
or (after conversion) in the raw bytes of ``dst`` (:mod:`.scan`).
"""

import base64
import dataclasses
import os
import random
import shutil
import tempfile
import time
from typing import Callable
from typing import Mapping

from oslo_log import log as logging

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import backends
from sparc_nova.engine.disk import batch
from sparc_nova.engine.disk import canaries as canaries_mod
from sparc_nova.engine.disk import layout
from sparc_nova.engine.disk import preflight
from sparc_nova.engine.disk import qemu_img
from sparc_nova.engine.disk import redact
from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine.disk import scan
from sparc_nova.engine.disk import temporaries
from sparc_nova.engine.disk import volumes as volumes_mod
from sparc_nova import exception

LOG = logging.getLogger(__name__)

#: Called as ``progress(step_number, step_count, description)``.
ProgressFn = Callable[[int, int, str], None]

STEPS = ('checking the source image', 'making the working copy',
         'starting the appliance', 'opening volumes',
         'selecting and removing files', 'cleaning free space',
         'verifying inside the image', 'writing the destination',
         'verifying the destination')


@dataclasses.dataclass
class ScrubOptions:
    """How to scrub; defaults match the ``[sparc] disk_*`` options.

    :param output_format: ``qcow2`` or ``raw``.
    :param luks_keys: passphrases by LUKS device (``/dev/sda2``, as the
        appliance names it) or by ``UUID=<luks uuid>`` (as crypttab names
        it).
    :param allow_unverified: skip, and report as unverified, what cannot
        be scrubbed (LUKS without a key, unknown volumes, unmountable
        filesystems, matches on filesystems without a backend) instead of
        failing.
    :param reveal_paths: report removed guest paths by name instead of
        by SHA-256 digest.
    :param verify_kept: ``sample`` or ``all`` kept files hashed.
    :param verify_sample_size: number of kept files in a sample.
    :param canary_windows: windows sampled per removed file.
    :param accel: appliance accelerator: auto, kvm or tcg.
    :param work_dir: where the working copy goes (default: dst's
        directory).
    :param memsize_mib: appliance memory (0: libguestfs default).
    :param source_format: format of the source as qemu-img names it
        (:data:`.source.FORMATS`); None: found with the format inspector,
        never by a qemu probe.
    :param allow_backing_chain: read and flatten the source's backing
        files (each in the format its overlay records); off, an image
        with a backing file is refused.
    :param qemu_img_limits: CPU and address-space limits of qemu-img.
    """
    output_format: str = 'qcow2'
    luks_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    allow_unverified: bool = False
    reveal_paths: bool = False
    verify_kept: str = 'sample'
    verify_sample_size: int = 200
    canary_windows: int = 4
    accel: str = 'auto'
    work_dir: str | None = None
    memsize_mib: int = 0
    source_format: str | None = None
    allow_backing_chain: bool = False
    qemu_img_limits: qemu_img.Limits = dataclasses.field(
        default_factory=qemu_img.Limits)

    @classmethod
    def from_conf(cls, conf=None, **overrides) -> 'ScrubOptions':
        """Options from ``[sparc]`` (oslo.config), then ``overrides``."""
        if conf is None:
            from sparc_nova import conf as sparc_conf
            conf = sparc_conf.CONF
        c = conf.sparc
        values = dict(output_format=c.disk_output_format,
                      allow_unverified=c.disk_allow_unverified,
                      reveal_paths=c.disk_report_paths,
                      verify_kept=c.disk_verify_kept,
                      verify_sample_size=c.disk_verify_sample_size,
                      canary_windows=c.disk_canary_windows,
                      accel=c.disk_accel, work_dir=c.disk_work_dir or None,
                      memsize_mib=c.disk_appliance_memory_mib,
                      qemu_img_limits=qemu_img.Limits(
                          inspect_cpu_s=c.disk_qemu_img_inspect_cpu_s,
                          inspect_address_space_mib=(
                              c.disk_qemu_img_inspect_address_space_mib),
                          convert_cpu_s=c.disk_qemu_img_convert_cpu_s,
                          convert_address_space_mib=(
                              c.disk_qemu_img_convert_address_space_mib)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def scrub_image(src: str, dst: str, rules: rules_mod.Rules,
                options: ScrubOptions | None = None,
                progress: ProgressFn | None = None
                ) -> report_mod.ScrubReport:
    """Write a scrubbed copy of the disk image ``src`` to ``dst``.

    :param src: image file in ``options.source_format`` (see
        :class:`ScrubOptions` for backing files).
    :param dst: output path; replaced atomically if it exists.
    :param rules: what to remove (:class:`~.rules.Rules`).
    :returns: the :class:`~.report.ScrubReport` (JSON via ``to_dict``).
    :raises DiskImageError: unusable input or destination (nothing was
        started or written).
    :raises DiskScrubError: a step failed; nothing was written.
    :raises DiskVerificationError: the result failed verification; it
        was deleted.
    """
    options = options or ScrubOptions()
    started = time.monotonic()
    step = _Stepper(progress)
    report = report_mod.ScrubReport(
        source=src, destination=dst, output_format=options.output_format,
        reveal_paths=options.reveal_paths)
    limits = options.qemu_img_limits

    step()
    source = preflight.inspect_source(src, options.source_format,
                                      options.allow_backing_chain, limits)
    report.source_format = source.format
    report.source_files = source.files_read
    preflight.check_destination(dst, src, options.output_format)
    parent = options.work_dir or os.path.dirname(os.path.abspath(dst))
    stale = temporaries.remove_stale(dst, parent)
    if stale:
        LOG.info('Removed %d temporaries of killed scrubs', len(stale))
    try:
        workdir = tempfile.mkdtemp(prefix=temporaries.work_prefix(),
                                   dir=parent)
    except OSError as e:
        raise exception.DiskImageError(
            src, 'cannot create a working directory in %s (%s)'
            % (parent, e.strerror)) from e
    os.chmod(workdir, 0o700)
    try:
        step()
        work = os.path.join(workdir, 'work.raw')
        _convert(source.path, source.format, work, 'raw', src, limits)

        step()
        launched = time.monotonic()
        g = appliance.launch(src, [(work, False)], options.accel,
                             options.memsize_mib)
        session = _Session(g, src, rules, options, report, workdir, work,
                           step)
        try:
            no_fs = layout.no_filesystem_partitions(g, src)
            session.run(no_fs)
            g.shutdown()
        except RuntimeError as e:
            # libguestfs reports every failure as RuntimeError; the steps
            # that can name a device did so already (DiskError).
            raise exception.DiskScrubError(
                src, 'appliance step failed: %s' % session.detail(e)
            ) from None
        finally:
            g.close()
        report.appliance_s = round(time.monotonic() - launched, 1)

        step()
        tmp_dst = _temp_destination(dst)
        try:
            _convert(work, 'raw', tmp_dst, options.output_format, src,
                     limits)
            step()
            _compare(work, tmp_dst, options.output_format, src, limits)
            session.verify_output(tmp_dst, options.output_format)
            os.replace(tmp_dst, dst)
        except BaseException:
            if os.path.exists(tmp_dst):
                os.unlink(tmp_dst)
            raise
        _fsync_directory(os.path.dirname(os.path.abspath(dst)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.duration_s = round(time.monotonic() - started, 1)
    LOG.info('Scrubbed %s into %s: %d paths removed, %d canaries, '
             '%d kept files checked, %.1f s', src, dst, len(report.removed),
             report.canaries, report.kept_files_checked, report.duration_s)
    return report


class _Stepper:
    def __init__(self, progress: ProgressFn | None):
        self.progress = progress
        self.index = 0

    def __call__(self) -> None:
        self.index += 1
        if self.progress is not None:
            self.progress(self.index, len(STEPS), STEPS[self.index - 1])


def _convert(src: str, src_format: str, dst: str, dst_format: str,
             image: str, limits: qemu_img.Limits) -> None:
    args = ['-f', src_format, '-O', dst_format]
    if dst_format == 'raw':
        args += ['-S', '4k']
    result = qemu_img.run('convert', args, [src, dst], limits)
    if result.returncode != 0:
        if os.path.exists(dst):
            os.unlink(dst)
        raise exception.DiskImageError(
            image, 'qemu-img convert to %s failed: %s' % (
                dst_format, result.stderr.strip()[-300:] or
                'exit %d (killed at a [sparc] disk_qemu_img_convert_* '
                'limit?)' % result.returncode))


def _compare(work: str, dst: str, dst_format: str, image: str,
             limits: qemu_img.Limits) -> None:
    """The destination's guest view must equal the verified working copy
    (what the in-appliance verification saw) byte for byte.
    """
    result = qemu_img.run('compare', ['-q', '-f', 'raw', '-F', dst_format],
                          [work, dst], limits)
    if result.returncode != 0:
        raise exception.DiskVerificationError(
            image, 'the written image differs from the verified working '
                   'copy: %s' % (result.stderr.strip()[-300:] or
                                 'exit %d' % result.returncode), device=dst)


def _temp_destination(dst: str) -> str:
    fd, path = tempfile.mkstemp(
        prefix=temporaries.destination_prefix(dst),
        dir=os.path.dirname(os.path.abspath(dst)))
    os.close(fd)
    return path


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclasses.dataclass
class _Removal:
    path: str
    device: str
    stat: dict
    rule: rules_mod.Rule


class _Session:
    """The appliance part of one scrub."""

    def __init__(self, g, image: str, rules: rules_mod.Rules,
                 options: ScrubOptions, report: report_mod.ScrubReport,
                 workdir: str, work: str, step: _Stepper):
        self.g = g
        self.image = image
        self.rules = rules
        self.options = options
        self.report = report
        self.workdir = workdir
        self.work = work
        self.step = step
        self.backend_classes = backends.backend_classes()
        self.backends: dict[str, backends.base.Backend] = {}
        self.luks: list[volumes_mod.Volume] = []
        self.volumes: dict[str, volumes_mod.Volume] = {}
        self.trees: list[volumes_mod.Tree] = []
        self.canaries: list[canaries_mod.Canary] = []
        self.kept_hashes: dict[tuple[int, str], str] = {}
        self.kept_paths: list[str] = []
        self.explained: set[bytes] = set()
        # The caller's globs and held paths, then every path they select:
        # kept out of error messages (see redact).
        self.redactor = redact.Redactor(
            r.text for r in rules.rules if r.source in ('path', 'held'))

    # -- helpers ---------------------------------------------------------

    def detail(self, error: Exception) -> str:
        """The message of ``error`` (from the appliance or a tool in it)
        for an exception of ours: one line, without guest paths, quoted
        names or the names the rules select (:mod:`.redact`).
        """
        return self.redactor.clean(volumes_mod.one_line(error))

    def fail(self, reason: str, device: str | None = None,
             cause: Exception | None = None):
        """Raise DiskScrubError. ``cause`` is not chained to it: its
        message (in any traceback that shows the chain: logs, Nova's
        instance fault details) may name guest files; ``reason`` carries
        its :meth:`detail` instead.
        """
        del cause
        raise exception.DiskScrubError(self.image, reason,
                                       device=device) from None

    def backend(self, volume: volumes_mod.Volume) -> backends.base.Backend:
        if volume.fstype not in self.backends:
            cls = self.backend_classes[volume.fstype]
            self.backends[volume.fstype] = cls(self.workdir)
        return self.backends[volume.fstype]

    def mount_tree(self, tree: volumes_mod.Tree, readonly: bool) -> bool:
        """Mount a tree; False when a filesystem is skipped (allowed
        unverified), raises otherwise.
        """
        for mountpoint, mountable, device in tree.mounts:
            volume = self.volumes[device]
            ro = readonly or volume.role != volumes_mod.ROLE_FILESYSTEM
            try:
                if ro:
                    self.g.mount_ro(mountable, mountpoint)
                else:
                    self.g.mount(mountable, mountpoint)
            except RuntimeError as e:
                if not self.options.allow_unverified:
                    self.fail('cannot mount at %s: %s' % (
                        mountpoint, self.detail(e)),
                        device=device, cause=e)
                volume.report.action = 'skipped'
                volume.report.verification = report_mod.UNVERIFIED
                volume.report.reason = 'mount failed'
                self.g.umount_all()
                return False
            volume.report.mountpoint = volume.report.mountpoint or \
                mountpoint
        return True

    def list_tree(self) -> list[str]:
        listing = os.path.join(self.workdir, 'find0')
        self.g.find0('/', listing)
        with open(listing, 'rb') as f:
            raw = f.read()
        os.unlink(listing)
        return ['/' + p.decode('utf-8', 'surrogateescape')
                for p in raw.split(b'\0') if p]

    # -- phases -----------------------------------------------------------

    def run(self, no_fs: set[str]) -> None:
        g = self.g
        self.step()
        try:
            self.luks = volumes_mod.open_luks(
                g, self.image, dict(self.options.luks_keys),
                self.options.allow_unverified)
            found = volumes_mod.classify(
                g, self.image, self.luks, no_fs,
                set(self.backend_classes), self.options.allow_unverified)
            self.volumes = {v.device: v for v in found}
            self.trees = volumes_mod.trees(g, found)
        except RuntimeError as e:
            self.fail('inspecting the image failed: %s'
                      % self.detail(e), cause=e)
        self.report.volumes = [v.report for v in self.luks + found]
        if self.trees and self.trees[0].os_root:
            root = self.trees[0].os_root
            self.report.operating_system = '%s %s' % (
                g.inspect_get_distro(root),
                g.inspect_get_product_name(root))
        if not self.trees and not any(
                v.role == volumes_mod.ROLE_SWAP for v in found):
            self.fail('no filesystem could be found in the image')

        self.step()
        matched_units = set()
        for index, tree in enumerate(self.trees):
            matched_units |= self.scrub_tree(index, tree)
        self.check_rules_matched(matched_units)

        self.step()
        self.wipe_swap()
        self.wipe_free_extents()
        self.clean_filesystems()

        self.step()
        self.verify_trees()
        self.verify_decrypted_views()
        self.check_filesystems()
        g.sync()
        # The working copy, scanned while the appliance still runs, so that
        # a hit can be checked against kept files before failing.
        self.fail_on_hits(scan.count(self.work, 'raw',
                                     [c.data for c in self.canaries]),
                          'working copy')
        self.report.canaries = len({c.data for c in self.canaries})

    def scrub_tree(self, index: int, tree: volumes_mod.Tree) -> set[str]:
        g = self.g
        if not self.mount_tree(tree, readonly=False):
            return set()
        try:
            paths = self.list_tree()
            selection = self.rules.select(paths)
            self.redactor.add_paths(selection.removed)
            self.kept_paths.extend(selection.kept)
            for unit, n in selection.counts.items():
                key = self.report.rule_name(unit)
                self.report.rules[key] = self.report.rules.get(key, 0) + n
            removals = self.plan_removals(tree, selection)
            self.hash_kept(index, selection, removals)
            self.sample_canaries(removals)
            self.remove(tree, removals)
            for mountpoint, _, device in tree.mounts:
                volume = self.volumes[device]
                if volume.role == volumes_mod.ROLE_FILESYSTEM:
                    self.trim(volume, mountpoint)
            return self.rules.matches_anything(paths, set(selection.counts))
        except RuntimeError as e:
            self.fail('removing files failed: %s'
                      % self.detail(e),
                      device=tree.mounts[0][2], cause=e)
        finally:
            g.umount_all()

    def trim(self, volume: volumes_mod.Volume, mountpoint: str) -> None:
        """Discard free blocks. Where the device cannot discard (LUKS
        opened without allow-discards), the clean step and the
        verification decide.
        """
        try:
            self.backend(volume).trim(self.g, mountpoint)
        except RuntimeError as e:
            if 'not supported' not in str(e):
                raise
            volume.report.steps.append('discard not supported by the '
                                       'device: not trimmed')

    def plan_removals(self, tree: volumes_mod.Tree,
                      selection: rules_mod.Selection) -> list[_Removal]:
        removals = []
        stats = self.lstat_many(list(selection.removed))
        for path, rule in selection.removed.items():
            device = tree.device_of(path)
            volume = self.volumes[device]
            if volume.role != volumes_mod.ROLE_FILESYSTEM:
                if not self.options.allow_unverified:
                    self.fail('%s filesystem has files the rules match, '
                              'and no backend can scrub it'
                              % volume.fstype, device=device)
                volume.report.verification = report_mod.UNVERIFIED
                volume.report.reason = 'matches on an unsupported ' \
                    'filesystem were left'
                continue
            removals.append(_Removal(path, device, stats[path], rule))
        return removals

    def lstat_many(self, paths: list[str]) -> dict[str, dict]:
        """lstat of many paths, one appliance call per directory."""
        by_dir: dict[str, list[str]] = {}
        for path in paths:
            by_dir.setdefault(os.path.dirname(path), []).append(
                os.path.basename(path))
        stats = {}
        for directory, names in by_dir.items():
            for start in range(0, len(names), 1000):
                chunk = names[start:start + 1000]
                for name, stat in zip(chunk, self.g.lstatnslist(directory,
                                                                chunk)):
                    stats[os.path.join(directory, name)] = stat
        return stats

    def hash_kept(self, index: int, selection: rules_mod.Selection,
                  removals: list[_Removal]) -> None:
        g = self.g
        if self.options.verify_kept == 'all':
            sums = os.path.join(self.workdir, 'sums')
            g.checksums_out('sha256', '/', sums)
            kept = set(selection.kept)
            with open(sums, 'rb') as f:
                for line in f:
                    digest, _, name = line.rstrip(b'\n').partition(b'  ')
                    name = name.decode('utf-8', 'surrogateescape')
                    path = '/' + (name[2:] if name.startswith('./')
                                  else name.lstrip('/'))
                    if path in kept:
                        self.kept_hashes[(index, path)] = digest.decode()
            os.unlink(sums)
            return
        siblings = {os.path.dirname(r.path) for r in removals}
        near = [p for p in selection.kept
                if os.path.dirname(p) in siblings]
        rest = [p for p in selection.kept if os.path.dirname(p)
                not in siblings]
        random.shuffle(rest)
        candidates = near + rest[:self.options.verify_sample_size * 2]
        stats = self.lstat_many(candidates)
        limit = self.options.verify_sample_size
        chosen = [p for p in candidates if _kind(stats[p]) == 'file'][:limit]
        for path, digest in zip(chosen, batch.sha256_files(g, chosen)):
            self.kept_hashes[(index, path)] = digest

    def sample_canaries(self, removals: list[_Removal]) -> None:
        sampled = []
        for r in removals:
            kind = _kind(r.stat)
            if kind == 'directory':
                continue
            if r.rule.source in ('path', 'held'):
                name = canaries_mod.name_canary(r.path)
                if name is not None:
                    self.canaries.append(name)
            if kind != 'file':
                continue
            if r.stat['st_nlink'] > 1:
                self.report.warnings.append(
                    '%s has %d hard links; its content stays reachable '
                    'through the kept ones' % (
                        self.report.name(r.path), r.stat['st_nlink']))
                continue
            sampled.append(r)
        small = [r for r in sampled
                 if r.stat['st_size'] <= canaries_mod.WHOLE_FILE_BYTES]
        contents = batch.read_files(self.g, [(r.path, r.stat['st_size'])
                                             for r in small])
        large = [r for r in sampled
                 if r.stat['st_size'] > canaries_mod.WHOLE_FILE_BYTES]
        wanted = [canaries_mod.windows(r.path, r.stat['st_size'],
                                       self.options.canary_windows)
                  for r in large]
        datas = iter(batch.read_windows(self.g, [w for ws in wanted
                                                 for w in ws]))
        for r in small:
            data = contents.get(r.path, b'')
            self.add_canaries(r, canaries_mod.from_windows(
                r.path, [data[o:o + n] for _, o, n in canaries_mod.windows(
                    r.path, len(data), self.options.canary_windows)]))
        for r, ws in zip(large, wanted):
            self.add_canaries(r, canaries_mod.from_windows(
                r.path, [next(datas) for _ in ws]))

    def add_canaries(self, removal: _Removal,
                     found: list[canaries_mod.Canary]) -> None:
        if not found:
            self.report.files_without_canary += 1
        self.canaries.extend(found)

    def remove(self, tree: volumes_mod.Tree,
               removals: list[_Removal]) -> None:
        g = self.g
        files = [r for r in removals if _kind(r.stat) != 'directory']
        directories = [r for r in removals if _kind(r.stat) == 'directory']
        for device in {r.device for r in files}:
            self.backend(self.volumes[device]).overwrite(
                g, [(r.path, r.stat) for r in files if r.device == device])
        g.sync()
        batch.unlink(g, [r.path for r in files])
        for r in files:
            volume = self.volumes[r.device]
            volume.report.removed += 1
            volume.report.action = 'scrubbed'
            self.report.removed.append(report_mod.RemovedPath(
                self.report.name(r.path), _kind(r.stat), r.stat['st_size'],
                self.report.rule_name(r.rule.unit), r.device))
        removed_dirs = set()
        for r in sorted(directories, key=lambda r: -r.path.count('/')):
            if g.ls(r.path):
                continue
            g.rmdir(r.path)
            removed_dirs.add(r.path)
            volume = self.volumes[r.device]
            volume.report.removed += 1
            self.report.removed.append(report_mod.RemovedPath(
                self.report.name(r.path), 'directory', 0,
                self.report.rule_name(r.rule.unit), r.device))
        parents = {os.path.dirname(r.path) for r in removals} - removed_dirs
        self.rebuild_directories(tree, parents)
        g.sync()

    def rebuild_directories(self, tree: volumes_mod.Tree,
                            parents: set[str]) -> None:
        """Rebuild the directories that lost entries, on filesystems
        whose directories keep removed names.
        """
        mountpoints = {m for m, _, _ in tree.mounts}
        wanted = []
        for path in sorted(parents, key=lambda p: -p.count('/')):
            volume = self.volumes[tree.device_of(path)]
            if not self.backend(volume).rebuilds_directories:
                continue
            if path in mountpoints or any(
                    os.path.dirname(m) == path for m in mountpoints):
                self.report.warnings.append(
                    'directory %s is a mount point or holds one and was '
                    'not rebuilt; the raw scan decides whether removed '
                    'names stayed' % self.report.name(path))
                continue
            wanted.append(path)
        stats = self.lstat_many(wanted)
        for path in wanted:
            batch.rebuild_directory(self.g, path, stats[path])
            self.volumes[tree.device_of(path)].report.steps.append(
                'directory rebuilt: %s' % self.report.name(path))

    def check_rules_matched(self, matched_units: set[str]) -> None:
        for unit in self.rules.units:
            self.report.rules.setdefault(self.report.rule_name(unit), 0)
            if unit in matched_units:
                continue
            self.report.unmatched_rules.append(self.report.rule_name(unit))
            held = any(r.source == 'held' and r.text == unit
                       for r in self.rules.rules)
            if self.rules.strict and not held:
                self.fail('rule %s matches nothing (strict rules)'
                          % self.report.rule_name(unit))

    def wipe_swap(self) -> None:
        g = self.g
        for volume in self.volumes.values():
            if volume.role != volumes_mod.ROLE_SWAP:
                continue
            try:
                label = g.vfs_label(volume.device) or None
                uuid = g.vfs_uuid(volume.device) or None
                _wipe_device(g, volume.device)
                g.mkswap(volume.device, label=label, uuid=uuid)
            except RuntimeError as e:
                self.fail('wiping swap failed: %s'
                          % self.detail(e),
                          device=volume.device, cause=e)
            volume.report.action = 'wiped'
            volume.report.steps.append('zeroed, swap signature re-created '
                                       'with the same UUID and label')

    def wipe_free_extents(self) -> None:
        """Unallocated extents of each volume group can hold data of
        removed logical volumes: they are wiped through a temporary LV.
        """
        g = self.g
        for vg in g.vgs_full():
            if int(vg['vg_free']) <= 0:
                continue
            name = vg['vg_name']
            lv = '/dev/%s/sparc-wipe' % name
            try:
                g.lvcreate_free('sparc-wipe', name, 100)
                _wipe_device(g, lv)
                g.lvremove(lv)
            except RuntimeError as e:
                self.fail('wiping free extents of volume group %s failed: '
                          '%s' % (name, self.detail(e)),
                          device=lv, cause=e)
            self.report.volumes.append(report_mod.VolumeReport(
                '/dev/' + name, 'lvm-free-space', action='wiped',
                steps=['%d bytes of free extents zeroed'
                       % int(vg['vg_free'])]))

    def clean_filesystems(self) -> None:
        g = self.g
        for volume in self.volumes.values():
            if volume.role != volumes_mod.ROLE_FILESYSTEM or \
                    volume.report.action == 'skipped':
                continue
            try:
                volume.report.steps.extend(
                    self.backend(volume).clean(g, volume.device))
            except RuntimeError as e:
                self.fail('cleaning free space failed: %s'
                          % self.detail(e),
                          device=volume.device, cause=e)
            if volume.report.action == 'unmodified':
                volume.report.action = 'cleaned'

    def verify_trees(self) -> None:
        g = self.g
        checked = 0
        for index, tree in enumerate(self.trees):
            if not self.mount_tree(tree, readonly=True):
                continue
            try:
                selection = self.rules.select(self.list_tree())
                still = [p for p in selection.removed
                         if self.volumes[tree.device_of(p)].report
                         .verification != report_mod.UNVERIFIED]
                if still:
                    raise exception.DiskVerificationError(
                        self.image, '%d paths still match the rules after '
                                    'the scrub' % len(still),
                        device=tree.mounts[0][2])
                expected = {path: digest for (tree_index, path), digest
                            in self.kept_hashes.items()
                            if tree_index == index}
                paths = sorted(expected)
                for path, after in zip(paths,
                                       batch.sha256_files(g, paths)):
                    if after != expected[path]:
                        self.report.kept_files_identical = False
                        raise exception.DiskVerificationError(
                            self.image, 'kept file changed or disappeared '
                                        'during the scrub',
                            device=self.report.name(path))
                    checked += 1
            finally:
                g.umount_all()
        self.report.kept_files_checked = checked

    def verify_decrypted_views(self) -> None:
        patterns = [c.data for c in self.canaries]
        for volume in self.luks:
            if not volume.encrypted_by:
                continue
            try:
                hits = scan.count_in_appliance(self.g, volume.encrypted_by,
                                               patterns)
            except RuntimeError as e:
                self.fail(self.detail(e), device=volume.device, cause=e)
            self.fail_on_hits(hits, volume.device + ' (decrypted view)')
            volume.report.steps.append('no canary in the decrypted view')

    def check_filesystems(self) -> None:
        for volume in self.volumes.values():
            if volume.role != volumes_mod.ROLE_FILESYSTEM or \
                    volume.report.action == 'skipped':
                continue
            try:
                self.backend(volume).check(self.g, volume.device)
            except RuntimeError as e:
                self.fail('filesystem check failed after the scrub: %s'
                          % self.detail(e),
                          device=volume.device, cause=e)
            volume.report.steps.append('consistency check passed')

    def explain(self, hits: dict[bytes, int]) -> set[bytes]:
        """The hit canaries that kept files or kept names also hold."""
        explained = set()
        kept_names = [p.encode('utf-8', 'surrogateescape')
                      for p in self.kept_paths]
        for data in hits:
            if any(data in name for name in kept_names):
                explained.add(data)
        remaining = [d for d in hits if d not in explained]
        if not remaining:
            return explained
        encoded = base64.b64encode(b''.join(d + b'\n' for d in remaining))
        for tree in self.trees:
            if not self.mount_tree(tree, readonly=True):
                continue
            try:
                status, out = appliance.run_status(self.g, [
                    'sh', '-c',
                    'echo "$1" | base64 -d > /tmp/sparc-patterns && '
                    'LC_ALL=C grep -r -a -o -h -F -f /tmp/sparc-patterns '
                    '/sysroot > /tmp/sparc-matches; rc=$?; '
                    'sort -u /tmp/sparc-matches | base64 -w0; '
                    'rm -f /tmp/sparc-patterns /tmp/sparc-matches; '
                    'exit $rc', 'sh', encoded.decode('ascii')])
            finally:
                self.g.umount_all()
            if status in (0, 1):
                explained |= set(base64.b64decode(out.strip() or b'')
                                 .split(b'\n')) & set(remaining)
        return explained

    def fail_on_hits(self, hits: dict[bytes, int], where: str) -> None:
        if not hits:
            return
        unexplained = set(hits) - self.explained
        if unexplained:
            self.explained |= self.explain(
                {d: hits[d] for d in unexplained})
            unexplained -= self.explained
        self.report.explained = len(self.explained)
        self.raise_residual(hits, unexplained, where, 'still readable')

    def verify_output(self, path: str, fmt: str) -> None:
        """Raw scan of the written destination: only canaries explained
        by kept data may occur.
        """
        hits = scan.count(path, fmt, [c.data for c in self.canaries])
        self.raise_residual(hits, set(hits) - self.explained, path,
                            'still in the output, which was deleted')

    def raise_residual(self, hits: dict[bytes, int], unexplained: set[bytes],
                       where: str, state: str) -> None:
        """Raise DiskVerificationError when canaries are left; the message
        counts canaries, files and occurrences, never quotes them.
        """
        if not unexplained:
            return
        self.report.residual = sum(hits[d] for d in unexplained)
        files = {c.path for c in self.canaries if c.data in unexplained}
        raise exception.DiskVerificationError(
            self.image, '%d canaries of %d removed files are %s (%d '
                        'occurrences)' % (len(unexplained), len(files),
                                          state, self.report.residual),
            device=where)


def _kind(stat: dict) -> str:
    return {0o100000: 'file', 0o040000: 'directory', 0o120000: 'symlink',
            0o140000: 'socket', 0o010000: 'fifo', 0o020000: 'char-device',
            0o060000: 'block-device'}.get(stat['st_mode'] & 0o170000,
                                          'other')


def _wipe_device(g, device: str) -> None:
    """Zero a whole device: discard when discards read back as zeros,
    write zeros otherwise.
    """
    try:
        g.blkdiscard(device)
        if g.blkdiscardzeroes(device):
            return
    except RuntimeError:
        pass
    g.zero_device(device)
