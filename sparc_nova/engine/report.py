"""The scrub plan and report (JSON-serialisable)."""

import dataclasses
import time

import numpy as np

from sparc_nova.introspect import addrspace
from sparc_nova.introspect import arrays
from sparc_nova.printable import printable

__all__ = ['ProcessPlan', 'ScrubReport']


@dataclasses.dataclass
class ProcessPlan:
    """What happens to one selected process."""

    pid: int
    comm: str
    exe: str | None
    reasons: list[str]
    threads: list[int]
    frames: dict                    # class -> frames scrubbed (array)
    refused: list[dict]                     # frames left, with reasons
    kill: dict | None = None

    def as_dict(self, frame_lists: bool = True) -> dict:
        out = {'pid': self.pid, 'comm': self.comm, 'exe': self.exe,
               'selected_because': self.reasons,
               'threads': self.threads,
               'frames_scrubbed': {k: len(v) for k, v in
                                   self.frames.items()},
               'frames_refused': len(self.refused)}
        if frame_lists:
            out['frames'] = {k: ['0x%x' % p for p in np.asarray(v).tolist()]
                             for k, v in self.frames.items()}
            out['refused'] = self.refused
        if self.kill is not None:
            out['kill'] = self.kill
        return out

    @property
    def frame_count(self) -> int:
        return sum(len(v) for v in self.frames.values())


@dataclasses.dataclass
class ScrubReport:
    """Everything a scrub did (or, with ``dry_run``, would do).

    :ivar checkpoint: path of the checkpoint read.
    :ivar output: path written (None for a dry run).
    :ivar sandbox: who the introspection ran as (``uid``, ``gid``,
        ``cap_eff``, ``no_new_privs``, ``seccomp``), as the sandbox child
        reported it; empty when it ran in the calling process.
    :ivar during_save: for a scrub run while the checkpoint was saved
        (:mod:`.live`): seconds until the image was complete and whether
        the scrub overlapped the save; empty otherwise.
    """

    checkpoint: str
    output: str | None = None
    dry_run: bool = False
    kernel: dict = dataclasses.field(default_factory=dict)
    selectors: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    processes: list[ProcessPlan] = dataclasses.field(default_factory=list)
    free_pages: dict = dataclasses.field(default_factory=dict)
    ipc: dict = dataclasses.field(default_factory=dict)
    rewrite: dict = dataclasses.field(default_factory=dict)
    verification: dict = dataclasses.field(default_factory=dict)
    timings: dict = dataclasses.field(default_factory=dict)
    patched_fields: list[dict] = dataclasses.field(default_factory=list)
    sandbox: dict = dataclasses.field(default_factory=dict)
    during_save: dict = dataclasses.field(default_factory=dict)
    _t0: float = dataclasses.field(default_factory=time.monotonic,
                                   repr=False)
    _last: float = dataclasses.field(default=0.0, repr=False)

    def lap(self, name: str) -> None:
        """Record the seconds since the previous lap under ``name``."""
        now = time.monotonic()
        start = self._last or self._t0
        self.timings[name] = round(now - start, 4)
        self._last = now

    def elapsed(self) -> float:
        """Wall seconds since the report was made (phases of the sandbox
        child overlap the caller's, so this is not their sum).
        """
        return round(time.monotonic() - self._t0, 4)

    @property
    def frames_scrubbed(self) -> int:
        return sum(p.frame_count for p in self.processes)

    def scrubbed_frames(self) -> np.ndarray:
        """All process frames scrubbed (free pages excluded)."""
        parts = [np.array(v, dtype=np.int64) for p in self.processes
                 for v in p.frames.values()]
        return arrays.unique(np.concatenate(parts)) if parts else \
            np.zeros(0, dtype=np.int64)

    def to_dict(self, frame_lists: bool = True) -> dict:
        by_class = {name: 0 for name in addrspace.CLASS_NAMES}
        for p in self.processes:
            for k, v in p.frames.items():
                by_class[k] = by_class.get(k, 0) + len(v)
        return {
            'checkpoint': self.checkpoint, 'output': self.output,
            'dry_run': self.dry_run, 'kernel': self.kernel,
            'selectors': self.selectors, 'notes': self.notes,
            'processes': [p.as_dict(frame_lists) for p in self.processes],
            'frames_scrubbed_by_class': by_class,
            'frames_scrubbed': self.frames_scrubbed,
            'frames_refused': sum(len(p.refused) for p in self.processes),
            'threads_killed': sum(len(p.threads) for p in self.processes
                                  if p.kill is not None),
            'free_pages': self.free_pages,
            'ipc': self.ipc,
            'rewrite': self.rewrite,
            'patched_fields': self.patched_fields,
            'verification': self.verification,
            'timings': self.timings,
            'sandbox': self.sandbox,
            'during_save': self.during_save,
        }

    def summary(self) -> str:
        """One line per fact, for humans; guest strings (process names,
        kernel release, notes quoting them) are escaped.
        """
        lines = ['%s %s (kernel %s)' % (
            'would scrub' if self.dry_run else 'scrubbed', self.checkpoint,
            printable(self.kernel.get('osrelease', '?')))]
        for p in self.processes:
            lines.append('  pid %d %s: %d frames, %d refused, %d threads '
                         'killed (%s)' % (
                             p.pid, printable(p.comm), p.frame_count,
                             len(p.refused),
                             len(p.threads) if p.kill is not None else 0,
                             (p.kill or {}).get('wakeup', '-')))
        if self.free_pages:
            lines.append('  free pages: %s of %s frames rewritten (fill %s)'
                         % (self.free_pages.get('frames_rewritten', 0),
                            self.free_pages.get('frames', 0),
                            self.free_pages.get('fill')))
        if self.ipc:
            for p in self.ipc.get('pulled_in', ()):
                lines.append('  pulled in: pid %d %s (%s from pid %d)' % (
                    p['pid'], printable(p['comm']), p['edge']['kind'],
                    p['edge']['from']))
            for p in self.ipc.get('at_risk', ()):
                lines.append('  at risk: pid %d %s (%s from pid %d)' % (
                    p['pid'], printable(p['comm']), p['edge']['kind'],
                    p['edge']['from']))
            scrubbed = ', '.join(
                '%s %d objects' % (k, v['objects'])
                for k, v in self.ipc.get('scrubbed', {}).items()
                if v['objects'])
            if scrubbed:
                lines.append('  kernel copies scrubbed: %s' % scrubbed)
            left = len(self.ipc.get('not_scrubbed', ()))
            if left:
                lines.append('  kernel copies not scrubbed: %d (see the '
                             'report)' % left)
        for n in self.notes:
            lines.append('  note: %s' % printable(n))
        if self.verification:
            lines.append('  verification: %s' %
                         self.verification.get('result', '?'))
        if self.output:
            lines.append('  written to %s' % self.output)
        if self.during_save:
            lines.append('  while saving: image complete after %.2f s of '
                         'a %.2f s save; the scrub ended %.2f s after the '
                         'save returned' % (
                             self.during_save.get('image_complete_after', 0),
                             self.timings.get('save', 0),
                             self.timings.get('after_save', 0)))
        return '\n'.join(lines)
