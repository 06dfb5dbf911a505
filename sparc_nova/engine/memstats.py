"""Memory figures of the scrubbing process and of its sandbox child.

Read from ``/proc/PID/status`` (counters the kernel keeps; reading them
costs microseconds, unlike ``smaps``, which walks the page tables):

* **RSS** (``VmRSS``, peak ``VmHWM``): resident pages, including the
  page cache pages of the mapped checkpoint. Those are shared with the
  page cache and reclaimable: a scrub that maps an 8 GiB image reaches
  a large RSS without holding that memory itself.
* **private** (``RssAnon``): anonymous resident pages (heap, numpy
  arrays, Python objects, stacks, copy-on-write copies of file pages):
  what the process holds beyond the page cache, and what it gives back
  when it exits. This is the figure the scrub bounds.

The kernel keeps a peak for RSS only (``VmHWM``, over the process's
life); the peak of private memory is the largest of samples taken every
:data:`SAMPLE_INTERVAL` seconds by a thread of the scrubbing process
(:class:`MemorySampler`), so a spike shorter than that can be missed.
The sandbox child also reports its own figures just before it exits
(:func:`own_figures`, through its result; :mod:`.sandbox`), which the
sampler takes as one more sample. The sandbox child is two processes:
the one started, which forks into its PID namespace and then only
waits, and that fork, which does the work; the figures are the larger
of the two (the waiter's memory is the interpreter's before the fork,
shared with the worker).
"""

import ctypes
import dataclasses
import os
import threading

__all__ = ['MMAP_THRESHOLD', 'MemorySampler', 'ProcessMemory',
           'SAMPLE_INTERVAL', 'children', 'give_back_free_memory',
           'map_large_allocations', 'mib', 'own_figures', 'parse_status',
           'read_status']

#: Seconds between two samples of :class:`MemorySampler`.
SAMPLE_INTERVAL = 0.02

#: ``/proc/PID/status`` lines read (in kB), by attribute of
#: :class:`ProcessMemory`.
STATUS_FIELDS = {'VmRSS': 'rss', 'VmHWM': 'peak_rss', 'RssAnon': 'private'}


@dataclasses.dataclass
class ProcessMemory:
    """One process's memory at one moment, in bytes.

    :ivar rss: resident set (``VmRSS``), page cache included.
    :ivar peak_rss: the largest resident set over the process's life
        (``VmHWM``).
    :ivar private: anonymous resident memory (``RssAnon``).
    """

    rss: int = 0
    peak_rss: int = 0
    private: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc) -> 'ProcessMemory | None':
        """From :meth:`to_dict`'s output, possibly from an untrusted
        process: None unless every field is an int in ``[0, 2**50)``.
        """
        if not isinstance(doc, dict):
            return None
        values = {}
        for f in dataclasses.fields(cls):
            v = doc.get(f.name)
            if type(v) is not int or not 0 <= v < 1 << 50:
                return None
            values[f.name] = v
        return cls(**values)


def parse_status(text: str) -> ProcessMemory | None:
    """The figures of a ``/proc/PID/status`` text; None when it has none
    (a kernel thread, a zombie that released its memory).
    """
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(':')
        if key in STATUS_FIELDS:
            parts = value.split()
            if len(parts) == 2 and parts[1] == 'kB' and parts[0].isdigit():
                found[STATUS_FIELDS[key]] = int(parts[0]) * 1024
    if len(found) != len(STATUS_FIELDS):
        return None
    return ProcessMemory(**found)


def read_status(pid: int | str = 'self') -> ProcessMemory | None:
    """The figures of process ``pid`` (None: gone, or no memory)."""
    try:
        with open('/proc/%s/status' % pid, 'rb') as f:
            text = f.read(16384)
    except OSError:
        return None
    return parse_status(text.decode('ascii', 'replace'))


def children(pid: int) -> list[int]:
    """The children of process ``pid`` (``/proc/PID/task/PID/children``;
    empty when unreadable).
    """
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid), 'rb') as f:
            return [int(x) for x in f.read(4096).split()]
    except (OSError, ValueError):
        return []


def own_figures(status_fd: int) -> dict | None:
    """This process's figures (:meth:`ProcessMemory.to_dict`) read from
    ``status_fd``, its ``/proc/self/status`` opened earlier (the sandbox
    child opens it before its root is emptied); None when unreadable.
    """
    try:
        text = os.pread(status_fd, 16384, 0)
    except OSError:
        return None
    m = parse_status(text.decode('ascii', 'replace'))
    return None if m is None else m.to_dict()


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None     # not glibc


#: glibc's ``malloc_trim``, looked up at import (the sandbox child imports
#: this module before its root is emptied).
_MALLOC_TRIM = _find_malloc_trim()


def _find_mallopt():
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None


_MALLOPT = _find_mallopt()
#: glibc's ``M_MMAP_THRESHOLD`` parameter of ``mallopt``.
_M_MMAP_THRESHOLD = -3
#: Allocations from this size up get mappings of their own
#: (:func:`map_large_allocations`; the sandbox child's
#: ``MALLOC_MMAP_THRESHOLD_``).
MMAP_THRESHOLD = 1 << 20


def map_large_allocations() -> None:
    """Have glibc map every allocation of :data:`MMAP_THRESHOLD` bytes
    or more on its own, so that freeing it returns it to the kernel at
    once (glibc otherwise raises the threshold to the largest block
    freed, up to 32 MiB, and keeps such blocks in its heap). For
    processes that exist to scrub (the CLI): it changes the whole
    process's allocator. No-op without glibc.
    """
    if _MALLOPT is not None:
        _MALLOPT(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def give_back_free_memory() -> None:
    """Return the free pages of the C heap to the kernel (glibc's
    ``malloc_trim(0)``; a no-op elsewhere). Large numpy arrays freed
    after a phase otherwise stay in the heap, counted as private memory
    (glibc raises its mmap threshold to the largest block freed). Takes
    about a millisecond.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def mib(n: int) -> float:
    """Bytes as MiB, one decimal (the unit of the report's figures)."""
    return round(n / (1 << 20), 1)


class _Peaks:
    def __init__(self, whole_life: bool):
        self.whole_life = whole_life
        self.rss = 0
        self.private = 0

    def add(self, m: ProcessMemory) -> None:
        self.rss = max(self.rss, m.rss,
                       m.peak_rss if self.whole_life else 0)
        self.private = max(self.private, m.private)


class MemorySampler:
    """Samples the peaks of processes' memory while a scrub runs.

    A daemon thread reads ``/proc/PID/status`` of every watched process
    (and of its children, which count as it: the peaks are the largest
    of any of them) every ``interval`` seconds until :meth:`stop`. For
    this process (the scrubbing one, which may be a long-lived daemon)
    the peak RSS is the largest sampled ``VmRSS``; for a process started
    for the scrub (the sandbox child) it is its ``VmHWM``, exact. Peaks
    of private memory are sampled for both.

    Use as ``with MemorySampler() as m: ...; m.figures()``.
    """

    #: Watch name of the scrubbing process itself.
    SELF = 'scrubber'

    def __init__(self, interval: float = SAMPLE_INTERVAL):
        self.interval = interval
        self._pids: dict[str, int | str] = {self.SELF: 'self'}
        self._peaks = {self.SELF: _Peaks(whole_life=False)}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def watch(self, name: str, pid: int) -> None:
        """Sample process ``pid`` too, under ``name``; it was started for
        this scrub (its ``VmHWM`` is the scrub's).
        """
        with self._lock:
            self._pids[name] = pid
            self._peaks.setdefault(name, _Peaks(whole_life=True))
        self._sample_one(name, pid)

    def note(self, name: str, m: ProcessMemory) -> None:
        """Take figures process ``name`` reported about itself as one more
        sample (the sandbox child's, read just before it exited).
        """
        with self._lock:
            self._peaks.setdefault(name, _Peaks(whole_life=True)).add(m)

    def _sample_one(self, name, pid) -> None:
        # A watched process's children count as it: the sandbox child
        # forks once into its PID namespace, and the work is done by
        # that fork (its parent only waits).
        pids = [pid] if pid == 'self' else [pid] + children(pid)
        for p in pids:
            m = read_status(p)
            if m is not None:
                with self._lock:
                    self._peaks[name].add(m)

    def sample(self) -> None:
        """Take one sample of every watched process now."""
        with self._lock:
            pids = list(self._pids.items())
        for name, pid in pids:
            self._sample_one(name, pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> 'MemorySampler':
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='memory-sampler')
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop the thread."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.sample()

    def __enter__(self) -> 'MemorySampler':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def figures(self) -> dict:
        """The peaks as the report's ``timings`` entries (MiB):
        ``peak_rss_mib`` and ``peak_private_mib`` of this process, and
        ``<name>_peak_rss_mib`` and ``<name>_peak_private_mib`` of every
        other watched process (``sandbox_...`` for the sandbox child).
        """
        out = {}
        with self._lock:
            for name, p in self._peaks.items():
                prefix = '' if name == self.SELF else name + '_'
                out[prefix + 'peak_rss_mib'] = mib(p.rss)
                out[prefix + 'peak_private_mib'] = mib(p.private)
        return out
