"""The ScrubReport: what a disk scrub removed, why, and what it proved.

Everything is JSON-serialisable through :meth:`ScrubReport.to_dict`.
Guest paths of removed files, and the caller's globs and held paths that
selected them, are reported as SHA-256 hex digests of their UTF-8 bytes
unless the caller asked for names (file names can be secrets themselves; a
digest still lets someone who knows a path confirm it).
The report never holds file contents or canary bytes.
"""

import dataclasses
import hashlib

__all__ = ['VERIFIED_IMAGE', 'VERIFIED_DECRYPTED', 'UNVERIFIED', 'path_digest',
           'VolumeReport', 'RemovedPath', 'ScrubReport']

#: Volume verification states.
VERIFIED_IMAGE = 'verified'
VERIFIED_DECRYPTED = 'verified-decrypted-view-only'
UNVERIFIED = 'unverified'


def path_digest(path: str) -> str:
    """The hex SHA-256 of a guest ``path`` (its bytes as the guest
    stored them, undecodable ones kept by ``surrogateescape``): how a
    report names a removed path without disclosing it.
    """
    return hashlib.sha256(path.encode('utf-8', 'surrogateescape')) \
        .hexdigest()


@dataclasses.dataclass
class VolumeReport:
    """One device of the image as the appliance names it.

    ``role``: filesystem, swap, luks, lvm-free-space or other.
    ``action``: scrubbed, wiped, unmodified, skipped.
    ``verification``: one of the VERIFIED_* / UNVERIFIED constants.
    """
    device: str
    role: str
    fstype: str = ''
    mountpoint: str = ''
    action: str = 'unmodified'
    verification: str = VERIFIED_IMAGE
    reason: str = ''
    steps: list[str] = dataclasses.field(default_factory=list)
    removed: int = 0


@dataclasses.dataclass
class RemovedPath:
    """A removed path (or its digest), its type and size in bytes."""
    path: str
    kind: str
    size: int
    rule: str
    device: str


@dataclasses.dataclass
class ScrubReport:
    """The outcome of :func:`~sparc_nova.engine.disk.scrub.scrub_image`.

    Times are in seconds. ``canaries`` counts the byte strings sampled
    from removed files (content windows and names) and ``residual`` how
    many were found in the output (always 0 in a returned report: any
    residue raises). ``explained`` counts canaries that are also present
    in kept files (the same bytes legitimately stay). ``source_format``
    is the format the source was read in and ``source_files`` every host
    file the working copy was made from (the source, then the backing
    chain an operator allowed). ``warnings`` are about the result (data
    a scrub could not reach); ``notes`` about how the scrub ran (an
    appliance retried on TCG after its KVM launch deadline).
    """
    source: str
    destination: str
    output_format: str
    source_format: str = ''
    source_files: list[str] = dataclasses.field(default_factory=list)
    reveal_paths: bool = False
    duration_s: float = 0.0
    appliance_s: float = 0.0
    operating_system: str = ''
    volumes: list[VolumeReport] = dataclasses.field(default_factory=list)
    rules: dict[str, int] = dataclasses.field(default_factory=dict)
    unmatched_rules: list[str] = dataclasses.field(default_factory=list)
    removed: list[RemovedPath] = dataclasses.field(default_factory=list)
    canaries: int = 0
    files_without_canary: int = 0
    residual: int = 0
    explained: int = 0
    kept_files_checked: int = 0
    kept_files_identical: bool = True
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def name(self, path: str) -> str:
        """How ``path`` appears in this report."""
        return path if self.reveal_paths else 'sha256:' + path_digest(path)

    def rule_name(self, unit: str) -> str:
        """How a rule unit appears in this report: a preset by its name;
        a caller glob or held path (which can name a secret file) like a
        path.
        """
        return unit if unit.startswith('preset:') else self.name(unit)

    @property
    def verified(self) -> bool:
        """True when every volume was verified (in the image or in its
        decrypted view).
        """
        return all(v.verification != UNVERIFIED for v in self.volumes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data['verified'] = self.verified
        return data
