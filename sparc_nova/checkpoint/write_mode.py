"""How a scrubbed memory checkpoint is written, decided once.

A scrub's result is written in one of two ways (see :mod:`.rewrite`):

* **rewrite**: a new file, recompressed with the checkpoint's own
  compression when it has one, renamed atomically over the original or
  written to a separate output file;
* **in place**: the original file's page payloads overwritten through the
  redo journal (:mod:`.journal`). Only a raw image can be patched in
  place, only over itself, and only with a journal key and a private
  directory for the journal: the image's own, or else, when the caller
  gives one, a journal directory (``[sparc] journal_dir``).

:func:`choose` is the one place that decides between them, from what the
caller asks (``output``, ``in_place``, ``in_place_if_possible``) and
what the checkpoint is (its compression). The callers (the CLI, the
privileged daemon of the Nova driver, the memory engine) hand the
:class:`WriteMode` it returns to :func:`.rewrite.rewrite_pages`, which
only carries it out.
"""

import dataclasses
import logging
import os

from sparc_nova.checkpoint import compression as compression_mod
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import tempfiles
from sparc_nova import exception

__all__ = ['WriteMode', 'check_request', 'choose']

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WriteMode:
    """The decided way of writing a checkpoint's scrubbed result.

    :ivar source: the checkpoint scrubbed.
    :ivar target: the file that holds the result (``source`` itself
        unless an output file was asked for).
    :ivar in_place: patch ``source`` through the journal (raw images
        only); else write a new file and rename it over ``target``.
    :ivar compression: the checkpoint's compression
        (:mod:`.compression`, 0 = raw): the rewritten stream is
        recompressed with it.
    :ivar journal_key: the journal's MAC key file (``[sparc]
        journal_key_file``); set when ``in_place``.
    :ivar journal_dir: where the journal is kept when ``in_place``: None
        next to ``source``, else this journal directory (see
        :func:`.journal.journal_path`).
    """

    source: str
    target: str
    in_place: bool
    compression: int
    journal_key: str | None = None
    journal_dir: str | None = None

    @property
    def replaces_source(self) -> bool:
        """Whether the result takes the place of the checkpoint."""
        return self.target == self.source


def choose(path: str, compression: int, *, output: str | None = None,
           in_place: bool = False, in_place_if_possible: bool = False,
           journal_key: str | None = None,
           journal_dir: str | None = None) -> WriteMode:
    """Decide how the scrubbed result of checkpoint ``path`` is written.

    :param path: the checkpoint.
    :param compression: its container's compression (0 = raw; e.g.
        ``Checkpoint.compressed`` or the libvirt save header's field).
    :param output: write the result to this new file instead of
        replacing ``path`` (never in place).
    :param in_place: patch ``path`` itself; refused (below) when that is
        not possible.
    :param in_place_if_possible: patch ``path`` in place when it is raw,
        no ``output`` is asked for, ``journal_key`` is given and the
        directory of ``path``, or else ``journal_dir``, may hold a journal
        (owned by root or us, writable by no one else); else replace it
        by a rewrite. The privileged daemon asks this for managed saves.
    :param journal_key: the journal's MAC key file.
    :param journal_dir: the journal directory to use, in place, when the
        directory of ``path`` is not private (``[sparc] journal_dir``);
        made (mode 0700) if missing.
    :returns: a :class:`WriteMode`. Writes nothing but a missing
        ``journal_dir``.
    :raises CheckpointError: naming ``path``: ``in_place`` with an
        ``output`` other than ``path``, with a compressed image, or
        without a journal key.
    """
    output = check_request(path, output=output, in_place=in_place)
    if in_place and compression:
        raise exception.CheckpointError(
            path, 'in-place scrubbing needs a raw image; this one is '
                  '%s-compressed' % compression_mod.name(compression))
    if in_place and not journal_key:
        raise exception.CheckpointError(
            path, 'in-place scrubbing needs a journal key file')
    directory = None
    if in_place and journal_dir and \
            not _journal_directory_is_private(path) and \
            _journal_directory_usable(journal_dir, path):
        # Asked for: where neither directory is private, the journal
        # refuses to be written (the error names the directory).
        directory = os.path.abspath(journal_dir)
    elif not in_place and in_place_if_possible and output is None and \
            not compression and journal_key:
        in_place = _journal_directory_is_private(path)
        if not in_place and journal_dir:
            in_place = _journal_directory_usable(journal_dir, path)
            directory = os.path.abspath(journal_dir) if in_place else None
        if not in_place:
            LOG.info('Not scrubbing %s in place: no private directory for '
                     'its journal', path)
    return WriteMode(source=path, target=output or path, in_place=in_place,
                     compression=compression,
                     journal_key=journal_key if in_place else None,
                     journal_dir=directory)


def check_request(path: str, *, output: str | None = None,
                  in_place: bool = False) -> str | None:
    """Refuse a request that no checkpoint could satisfy, before any
    work (:func:`choose` applies it too).

    :returns: ``output``, or None when it names ``path`` itself.
    :raises CheckpointError: naming ``path``: ``in_place`` with an
        ``output`` other than ``path``.
    """
    if output is not None and os.path.abspath(output) == \
            os.path.abspath(path):
        output = None
    if in_place and output is not None:
        raise exception.CheckpointError(
            path, 'in_place and output exclude each other')
    return output


def _journal_directory_is_private(path: str) -> bool:
    """Whether an in-place journal may be made next to ``path``; the
    managed-save directory of some distributions belongs to the QEMU
    user, and the journal then goes to the journal directory, if any.
    """
    try:
        tempfiles.check_private_directory(
            os.path.dirname(os.path.abspath(path)), path)
    except exception.CheckpointError as e:
        LOG.debug('No in-place journal next to the file: %s', e)
        return False
    return True


def _journal_directory_usable(journal_dir: str, path: str) -> bool:
    """Whether the journal of ``path`` may be kept in ``journal_dir``
    (made if missing); else the file is replaced by a rewrite.
    """
    try:
        journal.make_directory(journal_dir, path)
    except exception.CheckpointError as e:
        LOG.warning('The journal directory cannot be used: %s', e)
        return False
    return True
