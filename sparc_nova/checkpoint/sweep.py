"""Find and finish or remove what killed sparc-nova runs left on disk.

A scrub that is killed (SIGKILL, OOM, power cut) can leave, in the
directory of the file it worked on or in ``[sparc] work_dir``:

* an in-place journal (``.<name>.sparc-journal``): finished by replaying
  it (:func:`.journal.recover`; a journal that is not ours is refused and
  left for the operator), or removed when its checkpoint is gone;
* a journal's temporary (``.<name>.sparc-journal.tmp``): the checkpoint
  was not touched yet, it is removed;
* the same two in the journal directory (``[sparc] journal_dir``), named
  after their checkpoint's path (:func:`.journal.journal_path`), for the
  checkpoints of a directory that may not hold journals itself;
* temporaries of dead writers (see :mod:`.tempfiles`): rewritten
  checkpoints and disk images not yet renamed (``.<name>.sparc-PID-*``),
  decompressed memory streams (``.sparc-stream-PID-*``, the whole
  unscrubbed guest RAM) and disk scrub working directories
  (``.sparc-scrub-PID-*``, an unscrubbed raw copy of the image): removed.

:func:`sweep` does this for one directory. ``sparc checkpoint recover
--sweep DIR`` runs it, and the Nova driver calls it at ``init_host`` for
``[sparc] work_dir`` and, through the privsep daemon
(:func:`sparc_nova.privsep.checkpoint.sweep_leftovers`), for
``[sparc] managed_save_dir``. Files of live processes are left alone.
"""

import dataclasses
import os
import re

from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import tempfiles
from sparc_nova import exception

__all__ = ['SweepReport', 'sweep']

_REWRITE = re.compile(r'\.(?P<target>.+)\.sparc-(?P<pid>\d+)-.*')


@dataclasses.dataclass
class SweepReport:
    """What :func:`sweep` did in one directory.

    :ivar directory: the directory swept.
    :ivar replayed: checkpoints whose interrupted in-place scrub was
        finished.
    :ivar removed: leftovers removed (journal temporaries, journals of
        missing files, temporaries and working directories of dead
        writers).
    :ivar refused: one message per journal that was not replayed (not
        ours, for another version of its file, or in a directory that is
        not private); those journals are still there.
    """

    directory: str
    replayed: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    refused: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _dead_writer(name: str) -> bool:
    for head in (tempfiles.STREAM_PREFIX, tempfiles.SCRUB_WORK_PREFIX):
        if name.startswith(head):
            return tempfiles.left_by_dead_writer(name, head)
    m = _REWRITE.fullmatch(name)
    return bool(m) and tempfiles.left_by_dead_writer(
        name, '.%s.sparc-' % m.group('target'))


def _journal(directory: str, target_name: str, key_file: str,
             rep: SweepReport, journal_dir: str | None = None) -> None:
    target = os.path.join(directory, target_name)
    if not os.path.lexists(target):
        for p in (journal.journal_path(target, journal_dir),
                  journal.temporary_path(target, journal_dir)):
            if os.path.lexists(p):
                tempfiles.remove_leftover(p)
                rep.removed.append(p)
        return
    tmp = journal.temporary_path(target, journal_dir)
    had_tmp = os.path.lexists(tmp)
    try:
        outcome = journal.recover(target, key_file, journal_dir)
    except exception.CheckpointError as e:
        rep.refused.append(str(e))
        return
    if had_tmp:
        rep.removed.append(tmp)
    if outcome == 'replayed':
        rep.replayed.append(target)


def _names(directory: str) -> list[str]:
    """The names in ``directory``, sorted.

    :raises CheckpointError: it cannot be listed.
    """
    try:
        return sorted(os.listdir(directory))
    except OSError as e:
        raise exception.CheckpointError(directory, 'cannot list: %s'
                                        % (e.strerror or e))


def _kept_journal_targets(directory: str, journal_dir: str) -> list[str]:
    """Names of the files of ``directory`` that have a journal (or a
    journal's temporary) in ``journal_dir``, whether or not they still
    exist; journals of other directories' files are not listed.
    """
    if not os.path.lexists(journal_dir):
        return []
    found = set()
    for name in _names(journal_dir):
        kept = journal.target_name(name, kept=True)
        if kept is None:
            continue
        target = os.path.join(directory, kept[0])
        # The name's digits are those of this directory's file: its own
        # naming (journal.journal_path) decides.
        if os.path.join(journal_dir, name) in (
                journal.journal_path(target, journal_dir),
                journal.temporary_path(target, journal_dir)):
            found.add(kept[0])
    return sorted(found)


def sweep(directory: str, key_file: str,
          journal_dir: str | None = None) -> SweepReport:
    """Finish or remove every leftover of a killed run in ``directory``
    (see the module docstring); not recursive.

    :param key_file: the journal key (``[sparc] journal_key_file``); read
        only when a journal is found.
    :param journal_dir: the journal directory (``[sparc] journal_dir``):
        the journals it keeps for files of ``directory`` are finished or
        removed too.
    :returns: what was done; journals that were refused are listed in
        :attr:`SweepReport.refused` and left in place.
    :raises CheckpointError: ``directory`` cannot be listed.
    """
    rep = SweepReport(directory)
    journals = set()
    for name in _names(directory):
        next_to = journal.target_name(name, kept=False)
        if next_to is not None:
            journals.add(next_to[0])
        elif _dead_writer(name):
            path = os.path.join(directory, name)
            try:
                tempfiles.remove_leftover(path)
            except FileNotFoundError:
                continue
            rep.removed.append(path)
    for target_name in sorted(journals):
        _journal(directory, target_name, key_file, rep)
    if journal_dir:
        # A journal is named after the real path of its file.
        directory = os.path.realpath(directory)
        journal_dir = os.path.abspath(journal_dir)
        for target_name in _kept_journal_targets(directory, journal_dir):
            _journal(directory, target_name, key_file, rep, journal_dir)
    return rep
