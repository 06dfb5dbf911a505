"""Find and finish or remove what killed sparc-nova runs left on disk.

A scrub that is killed (SIGKILL, OOM, power cut) can leave, in the
directory of the file it worked on or in ``[sparc] work_dir``:

* an in-place journal (``.<name>.sparc-journal``): finished by replaying
  it (:func:`.journal.recover`; a journal that is not ours is refused and
  left for the operator), or removed when its checkpoint is gone;
* a journal's temporary (``.<name>.sparc-journal.tmp``): the checkpoint
  was not touched yet, it is removed;
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

_JOURNAL = re.compile(r'\.(?P<target>.+)\.sparc-journal(?P<tmp>\.tmp)?')
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
             rep: SweepReport) -> None:
    target = os.path.join(directory, target_name)
    if not os.path.lexists(target):
        for p in (journal.journal_path(target),
                  journal.temporary_path(target)):
            if os.path.lexists(p):
                tempfiles.remove_leftover(p)
                rep.removed.append(p)
        return
    had_tmp = os.path.lexists(journal.temporary_path(target))
    try:
        outcome = journal.recover(target, key_file)
    except exception.CheckpointError as e:
        rep.refused.append(str(e))
        return
    if had_tmp:
        rep.removed.append(journal.temporary_path(target))
    if outcome == 'replayed':
        rep.replayed.append(target)


def sweep(directory: str, key_file: str) -> SweepReport:
    """Finish or remove every leftover of a killed run in ``directory``
    (see the module docstring); not recursive.

    :param key_file: the journal key (``[sparc] journal_key_file``); read
        only when a journal is found.
    :returns: what was done; journals that were refused are listed in
        :attr:`SweepReport.refused` and left in place.
    :raises CheckpointError: ``directory`` cannot be listed.
    """
    rep = SweepReport(directory)
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise exception.CheckpointError(directory, 'cannot list: %s'
                                        % (e.strerror or e))
    journals = set()
    for name in names:
        m = _JOURNAL.fullmatch(name)
        if m:
            journals.add(m.group('target'))
        elif _dead_writer(name):
            path = os.path.join(directory, name)
            try:
                tempfiles.remove_leftover(path)
            except FileNotFoundError:
                continue
            rep.removed.append(path)
    for target_name in sorted(journals):
        _journal(directory, target_name, key_file, rep)
    return rep
