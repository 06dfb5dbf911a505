"""The scrub plan and report (JSON-serialisable)."""

import contextlib
import dataclasses
import time
import typing

import numpy as np

from sparc_nova.engine import memstats
from sparc_nova.i18n import _P
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
    :ivar seal: for a seal (:mod:`.seal`): the sealed-pages file and what
        it holds (records, frames, byte ranges, bytes); empty for a
        scrub. A seal arms no kill: its processes resume after an unseal.
    :ivar timings: wall seconds per phase (``open``, ``sandbox``,
        ``parse_and_introspect``, ``plan``, ``rewrite``, ``verify``,
        ``total``; ``save`` and ``after_save`` for a scrub during a save)
        and, for a scrub, memory peaks in MiB (:mod:`.memstats`):
        ``peak_rss_mib`` and ``peak_private_mib`` of the scrubbing
        process, ``sandbox_peak_rss_mib`` and ``sandbox_peak_private_mib``
        of its sandbox child. RSS includes the page cache of the mapped
        checkpoint; private is anonymous memory (``RssAnon``), what the
        process holds beyond the page cache.
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
    seal: dict = dataclasses.field(default_factory=dict)
    _t0: float = dataclasses.field(default_factory=time.monotonic,
                                   repr=False)
    _last: float = dataclasses.field(default=0.0, repr=False)
    _memory: memstats.MemorySampler | None = dataclasses.field(
        default=None, repr=False, compare=False)

    def lap(self, name: str) -> None:
        """Record the seconds since the previous lap under ``name``."""
        now = time.monotonic()
        start = self._last or self._t0
        self.timings[name] = round(now - start, 4)
        self._last = now

    @contextlib.contextmanager
    def measuring_memory(self) -> typing.Iterator[None]:
        """Sample this process's memory, and that of every process
        :meth:`watch_process` names, while the block runs; then add their
        peaks to :attr:`timings` (:meth:`.memstats.MemorySampler.figures`,
        MiB), also when the block raised.
        """
        sampler = memstats.MemorySampler().start()
        self._memory = sampler
        try:
            yield
        finally:
            sampler.stop()
            self.timings.update(sampler.figures())

    def watch_process(self, name: str, pid: int | None) -> None:
        """Sample process ``pid`` (started for this scrub) as ``name``,
        when memory is measured; no-op otherwise or for a None ``pid``.
        """
        if self._memory is not None and pid is not None:
            self._memory.watch(name, pid)

    def note_memory(self, name: str,
                    figures: memstats.ProcessMemory | None) -> None:
        """Take the figures process ``name`` reported about itself, when
        memory is measured.
        """
        if self._memory is not None and figures is not None:
            self._memory.note(name, figures)

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
            **({'seal': self.seal} if self.seal else {}),
        }

    def summary(self) -> str:
        """One line per fact, for humans; guest strings (process names,
        kernel release, notes quoting them) are escaped.
        """
        verb = 'sealed' if self.seal else 'scrubbed'
        lines = ['%s %s (kernel %s)' % (
            'would ' + verb[:-1] if self.dry_run else verb, self.checkpoint,
            printable(self.kernel.get('osrelease', '?')))]
        for p in self.processes:
            lines.append('  pid %d %s: %s, %d refused, %s %s' % (
                p.pid, printable(p.comm),
                _P('%d frame', '%d frames', p.frame_count) % p.frame_count,
                len(p.refused),
                _P('%d thread', '%d threads', len(p.threads))
                % len(p.threads),
                'kept (no kill on restore)' if p.kill is None
                else 'killed (%s)' % p.kill.get('wakeup', '-')))
        if self.free_pages:
            frames = self.free_pages.get('frames', 0)
            lines.append('  free pages: %s (fill %s)' % (
                _P('%(done)d of %(n)d frame rewritten',
                   '%(done)d of %(n)d frames rewritten', frames)
                % {'done': self.free_pages.get('frames_rewritten', 0),
                   'n': frames},
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
                '%s %s' % (k, _P('%d object', '%d objects', v['objects'])
                           % v['objects'])
                for k, v in self.ipc.get('scrubbed', {}).items()
                if v['objects'])
            if scrubbed:
                lines.append('  kernel copies scrubbed: %s' % scrubbed)
            left = len(self.ipc.get('not_scrubbed', ()))
            if left:
                lines.append('  %s (see the report)' % (
                    _P('%d kernel copy not scrubbed',
                       '%d kernel copies not scrubbed', left) % left))
        for n in self.notes:
            lines.append('  note: %s' % printable(n))
        if self.verification:
            lines.append('  verification: %s' %
                         self.verification.get('result', '?'))
        if self.output:
            lines.append('  written to %s' % self.output)
        if self.seal:
            lines.append('  sealed pages: %s (%d frames, %d byte ranges; '
                         'unseal before restoring)' % (
                             self.seal.get('file'),
                             self.seal.get('frames', 0),
                             self.seal.get('byte_ranges', 0)))
        if self.during_save:
            lines.append('  while saving: image complete after %.2f s of '
                         'a %.2f s save; the scrub ended %.2f s after the '
                         'save returned' % (
                             self.during_save.get('image_complete_after', 0),
                             self.timings.get('save', 0),
                             self.timings.get('after_save', 0)))
        return '\n'.join(lines)
