"""Privileged entry points on memory checkpoints.

Arguments and results are primitive (strings, lists of strings, booleans,
dicts): they cross the privsep channel as msgpack, which also turns lists
into tuples.
"""

import os
import stat
import time

from oslo_log import log as logging

from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova import conf
from sparc_nova import exception
from sparc_nova import privsep

LOG = logging.getLogger(__name__)

#: Seconds between two progress log lines of the daemon.
PROGRESS_INTERVAL = 10.0


class PrivilegedScrubError(exception.SparcError):
    """A privileged scrub failed; the message names the original error.

    oslo.privsep rebuilds an exception on the caller's side from its class
    and ``args``; this class takes the message as its only argument so that
    it always crosses the channel intact.
    """


def managed_save_file(path: str) -> str:
    """``path`` when it is a regular file directly inside the configured
    managed-save directory with a ``.save`` name, else
    :class:`PrivilegedScrubError`. Symbolic links are refused, so the
    daemon cannot be pointed at another file.
    """
    save_dir = os.path.realpath(conf.CONF.sparc.managed_save_dir)
    name = os.path.basename(path)
    if (not os.path.isabs(path) or not name.endswith('.save') or
            os.path.realpath(os.path.dirname(path)) != save_dir):
        raise PrivilegedScrubError(
            '%s: refused: not a managed-save file in %s ([sparc] '
            'managed_save_dir)' % (path, save_dir))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise PrivilegedScrubError('%s: no such managed-save file' % path)
    if not stat.S_ISREG(st.st_mode):
        raise PrivilegedScrubError('%s: refused: not a regular file' % path)
    return path


class _ProgressLog:
    """A progress callback (done, total) that logs now and then."""

    def __init__(self, path: str):
        self.path = path
        self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if total > 0 and now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            LOG.info('Scrubbing %(path)s: %(pct)d%%',
                     {'path': self.path, 'pct': 100 * done // total})


@privsep.scrub_pctxt.entrypoint
def scrub_managed_save(path: str, selectors: list[str],
                       exclude_paths: list[str], follow_ipc: bool,
                       keep_free_pages: bool) -> dict:
    """Scrub a managed-save file in place with the memory engine.

    :param path: the managed-save file (checked by
        :func:`managed_save_file`)
    :param selectors: process selectors of the policy
    :param exclude_paths: guest path globs of the policy (page cache)
    :param follow_ipc: also exclude the processes an excluded one talks to
    :param keep_free_pages: leave free guest pages as they are
    :returns: ``{'summary': str, 'report': dict}``
    :raises PrivilegedScrubError: the file was refused or the scrub failed;
        the engine writes nothing on failure
    """
    # The engine (drgn, numpy) is only ever loaded in the daemon, never
    # in nova-compute, which imports this module for the entry point.
    from sparc_nova.engine import memory

    checked = managed_save_file(path)
    limits = limits_mod.Limits.from_conf(conf.CONF)
    try:
        with open(checked, 'rb') as f:
            header = libvirt_save.read_header(f, checked, limits)
        # Raw images are patched in place (only the scrubbed pages are
        # written); compressed ones are rewritten and replaced atomically,
        # keeping their owner and mode.
        report = memory.scrub_checkpoint(
            checked, list(selectors), in_place=not header.compressed,
            keep_free_pages=keep_free_pages, follow_ipc=follow_ipc,
            exclude_paths=list(exclude_paths),
            work_dir=conf.CONF.sparc.work_dir or None,
            progress=_ProgressLog(checked), limits=limits)
    except Exception as e:
        raise PrivilegedScrubError('%s: %s' % (type(e).__name__, e)) from e
    return {'summary': report.summary(), 'report': report.to_dict()}
