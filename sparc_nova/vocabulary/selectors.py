"""Process selectors: which guest processes a scrub excludes.

=================  ==================================================
``NAME``           the task's comm, exactly (as ``ps`` shows it; at
                   most 15 bytes, the kernel truncates comm to that);
                   no ``/`` (a path is an ``exe:``) and no ``KIND:``
                   prefix of an unknown kind (write ``name:a:b`` for a
                   comm with a colon)
``name:NAME``      the same, spelt out
``exe:GLOB``       the executable's absolute path: a guest path glob
                   (:mod:`.paths`) starting with ``/``, matched against
                   the path or a directory above it (``exe:/opt/app``
                   selects ``/opt/app/bin/x``; ``exe:/**/gpg*`` any
                   ``gpg*`` anywhere)
``pid:N``          the process with thread group id N, 2 to 4194304
                   (0 is the idle task and 1 is init, never selected)
``uid:N``          processes whose real uid is N, 0 to 4294967294
``cgroup:PATH``    processes in cgroup v2 PATH or below it (absolute,
                   no ``.`` or ``..`` components)
=================  ==================================================

Numbers are plain decimal without leading zeros.
"""

import dataclasses
import functools
import re

from sparc_nova.vocabulary.errors import InvalidRule
from sparc_nova.vocabulary import paths

__all__ = ['KINDS', 'MAX_COMM_LENGTH', 'PID_MAX', 'UID_MAX', 'Selector',
           'Process', 'check', 'parse']

KINDS = ('name', 'exe', 'pid', 'uid', 'cgroup')
#: Linux comm names are at most TASK_COMM_LEN - 1 bytes.
MAX_COMM_LENGTH = 15
#: PID_MAX_LIMIT of 64-bit Linux.
PID_MAX = 4194304
#: The highest valid uid ((uid_t)-1 means "no uid").
UID_MAX = 4294967294
MAX_SELECTOR_LENGTH = paths.MAX_RULE_LENGTH
_DECIMAL_RE = re.compile(r'^(0|[1-9][0-9]*)$')


@dataclasses.dataclass(frozen=True)
class Process:
    """What a selector looks at in a process (the memory engine's
    :class:`~sparc_nova.introspect.tasks.Process` has these attributes;
    ``sparc policy check --process`` builds one of these).
    """
    pid: int | None = None
    comm: str | None = None
    exe: str | None = None
    uid: int | None = None
    cgroup: str | None = None


@functools.lru_cache(maxsize=256)
def _exe_regex(glob: str) -> 're.Pattern':
    return re.compile(paths.glob_to_regex(glob), re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Selector:
    """One parsed selector (:func:`parse`); ``str()`` gives it back in its
    canonical spelling.
    """
    kind: str
    value: str

    def __str__(self) -> str:
        if self.kind == 'name' and ':' not in self.value:
            return self.value
        return '%s:%s' % (self.kind, self.value)

    def matches(self, proc) -> bool:
        """Whether process ``proc`` (anything with the attributes of
        :class:`Process`) matches. Unknown attributes never match.
        """
        if self.kind == 'name':
            return proc.comm == self.value
        if self.kind == 'exe':
            return proc.exe is not None and paths.covers(
                _exe_regex(self.value), proc.exe)
        if self.kind == 'pid':
            return proc.pid == int(self.value)
        if self.kind == 'uid':
            return proc.uid == int(self.value)
        if self.kind == 'cgroup':
            path = self.value.rstrip('/') or '/'
            cg = proc.cgroup
            if cg is None:
                return False
            return cg == path or path == '/' or cg.startswith(path + '/')
        return False


def _check_name(name: str) -> str | None:
    if not name:
        return 'name: needs a process name'
    if len(name.encode()) > MAX_COMM_LENGTH:
        return ('a process name (comm) has at most %d characters; use '
                'exe:GLOB to select %r by its executable'
                % (MAX_COMM_LENGTH, name))
    if '/' in name:
        return 'a process name contains no "/"; use exe:GLOB for paths'
    return None


def _check_number(kind: str, arg: str) -> str | None:
    if not _DECIMAL_RE.match(arg):
        return '%s: takes a decimal number, not %r' % (kind, arg)
    number = int(arg)
    if kind == 'pid':
        if number == 0:
            return 'pid:0 is the idle task, not a process'
        if number == 1:
            return 'refusing pid:1: killing init panics the guest'
        if number > PID_MAX:
            return 'pid: takes a number up to %d' % PID_MAX
    elif number > UID_MAX:
        return 'uid: takes a number up to %d' % UID_MAX
    return None


def _check_path(kind: str, text: str, arg: str) -> str | None:
    if not arg:
        return '%s: needs a path' % kind
    if kind == 'exe':
        if not arg.startswith('/'):
            return ('exe: takes an absolute path glob (starting with /; '
                    'write exe:/**/NAME to match at any depth)')
        return paths.check_glob(arg)
    if not arg.startswith('/'):
        return 'selector %r: a cgroup path starts with /' % text
    if '\0' in arg:
        return 'a cgroup path contains no NUL character'
    if {'.', '..'} & set(arg.split('/')):
        return 'a cgroup path has no "." or ".." components'
    return None


def check(text: str) -> str | None:
    """Why ``text`` is not a valid process selector, or None."""
    if not text:
        return 'an empty process selector'
    if len(text) > MAX_SELECTOR_LENGTH:
        return 'a process selector has at most %d characters' \
            % MAX_SELECTOR_LENGTH
    kind, sep, arg = text.partition(':')
    if not sep:
        return _check_name(text)
    if kind == 'name':
        return _check_name(arg)
    if kind not in KINDS:
        return ('unknown selector kind %r; allowed: NAME, exe:GLOB, pid:N, '
                'uid:N, cgroup:PATH (name:NAME for a name with a colon)'
                % kind)
    if kind in ('pid', 'uid'):
        return _check_number(kind, arg)
    return _check_path(kind, text, arg)


def parse(text: str) -> Selector:
    """Parse one selector (see the module docstring).

    :raises InvalidRule: naming the selector and what is wrong
    """
    reason = check(text)
    if reason:
        raise InvalidRule('process selector %r: %s' % (text, reason))
    kind, sep, value = text.partition(':')
    if not sep:
        return Selector('name', text)
    return Selector(kind, value)
