"""Read a scrubbed checkpoint back: is every planned change there?

After the rewrite, :func:`verify_rewrite` parses the written file anew,
as a restore would, and reads back every scrubbed frame, every patched
frame and every field write of the plan.
"""

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.engine import errors
from sparc_nova.engine import patches
from sparc_nova.engine import session as session_mod
from sparc_nova.introspect import physical

__all__ = ['verify_rewrite']


def verify_rewrite(path: str, patcher: patches.PagePatcher,
                   work_dir: str | None,
                   limits: limits_mod.Limits | None,
                   snapshot: str | None = None) -> dict:
    """Re-parse the written checkpoint ``path`` and read back every change
    of ``patcher``.

    :param work_dir: where a compressed image is decompressed.
    :param snapshot: the internal snapshot written (a qcow2 image).
    :returns: the report's ``verification``: ``{'result': 'ok',
        'reparsed': True, 'frames_checked', 'patched_frames_checked',
        'fields_checked', 'ram_records'}`` (counts).
    :raises ScrubError: naming ``path``, for the first change that does
        not read back.
    :raises CheckpointError: the written file does not parse.
    """
    s = session_mod.KernelSession(path, work_dir, limits, None,
                                  snapshot=snapshot)
    try:
        checked = 0
        for fill, arr in patcher.scrubbed.items():
            if not len(arr):
                continue
            bad = arr[~s.memory.holds(arr, fill, expected=True)]
            if len(bad):
                raise errors.ScrubError(
                    path, '%d scrubbed frames do not read back as 0x%02x '
                          '(first 0x%x)' % (len(bad), fill, int(bad[0])))
            checked += len(arr)
        for pfn in patcher.patched_pfns:
            if s.memory.read(pfn << 12, physical.PAGE_SIZE) != \
                    patcher.replacements_for(pfn):
                raise errors.ScrubError(
                    path, 'patched frame 0x%x does not read back' % pfn)
        for f in patcher.fields:
            want = patcher.final_bytes(f.paddr, len(f.new))
            if s.memory.read(f.paddr, len(f.new)) != want:
                raise errors.ScrubError(
                    path, '%s at 0x%x does not read back' % (f.what,
                                                             f.paddr))
        return {'result': 'ok', 'reparsed': True,
                'frames_checked': checked,
                'patched_frames_checked': len(patcher.patched_pfns),
                'fields_checked': len(patcher.fields),
                'ram_records': len(s.ck.layout.ram)}
    finally:
        s.close()
