"""What the appliance phases of one scrub share: the libguestfs handle,
the volumes and trees found in the image, the evidence recorded before
removal (canaries, kept-file hashes) and the helpers every phase uses to
mount, list and stat guest files and to fail without naming them.

The phases themselves are in :mod:`.discover`, :mod:`.removal`,
:mod:`.evidence`, :mod:`.wipe` and :mod:`.verify`; :mod:`.scrub` runs
them in order.
"""

import dataclasses
import os

from sparc_nova.engine.disk import backends
from sparc_nova.engine.disk import canaries as canaries_mod
from sparc_nova.engine.disk import options as options_mod
from sparc_nova.engine.disk import redact
from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine.disk import volumes as volumes_mod
from sparc_nova import exception

__all__ = ['Removal', 'Session', 'kind']

#: lstat file types (``st_mode & S_IFMT``) by the names reports use.
_KINDS = {0o100000: 'file', 0o040000: 'directory', 0o120000: 'symlink',
          0o140000: 'socket', 0o010000: 'fifo', 0o020000: 'char-device',
          0o060000: 'block-device'}
#: Names per lstatnslist call.
_LSTAT_CHUNK = 1000


def kind(stat: dict) -> str:
    """The file type of a libguestfs lstat ``stat`` (``file``,
    ``directory``, ``symlink``... or ``other``).
    """
    return _KINDS.get(stat['st_mode'] & 0o170000, 'other')


@dataclasses.dataclass
class Removal:
    """A guest path chosen for removal: the device holding it, its lstat
    and the rule that selected it.
    """
    path: str
    device: str
    stat: dict
    rule: rules_mod.Rule


class Session:
    """The appliance part of one scrub of ``image`` (the name used in
    errors), working in ``workdir`` on the raw working copy ``work``.
    """

    def __init__(self, g, image: str, rules: rules_mod.Rules,
                 options: options_mod.ScrubOptions,
                 report: report_mod.ScrubReport, workdir: str, work: str):
        self.g = g
        self.image = image
        self.rules = rules
        self.options = options
        self.report = report
        self.workdir = workdir
        self.work = work
        self.backend_classes = backends.backend_classes()
        self.backends: dict[str, backends.base.Backend] = {}
        #: Filled by :mod:`.discover`.
        self.luks: list[volumes_mod.Volume] = []
        self.volumes: dict[str, volumes_mod.Volume] = {}
        self.trees: list[volumes_mod.Tree] = []
        #: Filled by :mod:`.evidence` and :mod:`.removal`, checked by
        #: :mod:`.verify`.
        self.canaries: list[canaries_mod.Canary] = []
        self.kept_hashes: dict[tuple[int, str], str] = {}
        self.kept_paths: list[str] = []
        #: Canaries that kept files or names also hold (see
        #: :func:`.verify.explain`).
        self.explained: set[bytes] = set()
        # The caller's globs and held paths, then every path they select:
        # kept out of error messages (see redact).
        self.redactor = redact.Redactor(
            r.text for r in rules.rules if r.source in ('path', 'held'))

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
        """The filesystem backend of ``volume`` (one per type and scrub)."""
        if volume.fstype not in self.backends:
            cls = self.backend_classes[volume.fstype]
            backend = cls(self.workdir)
            backend.working_copy = self.work
            self.backends[volume.fstype] = backend
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
        """Every path of the mounted tree, absolute, as guest paths."""
        listing = os.path.join(self.workdir, 'find0')
        self.g.find0('/', listing)
        with open(listing, 'rb') as f:
            raw = f.read()
        os.unlink(listing)
        return ['/' + p.decode('utf-8', 'surrogateescape')
                for p in raw.split(b'\0') if p]

    def lstat_many(self, paths: list[str]) -> dict[str, dict]:
        """lstat of many paths, one appliance call per directory."""
        by_dir: dict[str, list[str]] = {}
        for path in paths:
            by_dir.setdefault(os.path.dirname(path), []).append(
                os.path.basename(path))
        stats = {}
        for directory, names in by_dir.items():
            for start in range(0, len(names), _LSTAT_CHUNK):
                chunk = names[start:start + _LSTAT_CHUNK]
                for name, stat in zip(chunk, self.g.lstatnslist(directory,
                                                                chunk)):
                    stats[os.path.join(directory, name)] = stat
        return stats
