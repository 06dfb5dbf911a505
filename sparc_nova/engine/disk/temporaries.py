"""Temporaries of a disk scrub, and their removal after a kill.

A scrub works in a directory ``.sparc-scrub-PID-XXXX`` (it holds a raw
copy of the unscrubbed image) and writes the result to
``.DST.sparc-PID-XXXX`` next to the destination, renamed over it only
once verified (:func:`sparc_nova.checkpoint.tempfiles.replacement`). A
scrub killed on the way leaves both behind; the next scrub into the same
places removes those whose process is gone, so that neither a half image
nor an unscrubbed copy lingers.
"""

import os
import shutil

from sparc_nova.checkpoint import tempfiles

__all__ = ['WORK_PREFIX', 'work_prefix', 'remove_stale']

WORK_PREFIX = tempfiles.SCRUB_WORK_PREFIX


def work_prefix() -> str:
    """Prefix of this process's working directory."""
    return '%s%d-' % (WORK_PREFIX, os.getpid())


def remove_stale(dst: str, work_parent: str) -> list[str]:
    """Delete the temporary destinations next to ``dst`` and the working
    directories in ``work_parent`` left by scrubs whose process is gone.
    Returns the removed paths.
    """
    removed = tempfiles.remove_stale_temporaries(dst)
    for name in os.listdir(work_parent):
        if not tempfiles.left_by_dead_writer(name, WORK_PREFIX):
            continue
        path = os.path.join(work_parent, name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
