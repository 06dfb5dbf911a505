"""An open memory checkpoint with its guest kernel model.

A :class:`KernelSession` is what every step of the memory engine works
on: the parsed checkpoint (:mod:`sparc_nova.checkpoint`), its guest
physical memory (:class:`~.physview.CheckpointMemory`) and, when asked
for, the guest kernel modelled from that memory
(:func:`sparc_nova.introspect.kernel.open_kernel`). Opening one reads the
checkpoint; nothing here writes.
"""

import drgn

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import stream_follow
from sparc_nova.engine import errors
from sparc_nova.engine import memstats
from sparc_nova.engine import physview
from sparc_nova import exception
from sparc_nova.introspect import buildid_cache as buildid_cache_mod
from sparc_nova.introspect import kernel as kernel_mod

__all__ = ['GUEST_ERRORS', 'KernelSession', 'buildid_cache', 'cpu_anchors',
           'guest_failure', 'open_session']

#: What a corrupt guest can make introspection raise: our own errors,
#: drgn's read faults and lookup failures, and the errors drgn raises when
#: it meets a type or value no compiler would emit (a hostile BTF or
#: kernel structure).
GUEST_ERRORS = (exception.SparcError, drgn.FaultError, LookupError,
                ValueError, TypeError, OverflowError, RecursionError)


#: x86-64 kernel addresses have the top bit set.
_KERNEL_HALF = 1 << 63
#: CR3's page-table address bits (without PCID and flags; with page
#: table isolation, a user CR3 is its kernel one plus a page, and maps the
#: kernel's entry code the same way).
_CR3_ADDRESS = 0x000ffffffffff000
#: x86-64 ``cpu_entry_area``: where Linux 4.15-4.19 with page table
#: isolation put the system-call entry (a trampoline, not image text).
_CPU_ENTRY_AREA = (0xfffffe0000000000, 0xffffff0000000000)


def cpu_anchors(cpus) -> list[kernel_mod.CpuAnchor]:
    """What the registers of ``cpus`` (the checkpoint's
    :class:`~sparc_nova.checkpoint.cpu_state.CpuState`) say of the running
    kernel: for each vCPU in 64-bit mode, its system-call entry (MSR
    LSTAR) and, in kernel mode, its instruction pointer, each with its
    page table (see :meth:`~.kernel.GuestKernel._check_anchors`).
    """
    out = []
    for cpu in cpus:
        if not cpu.long_mode or not cpu.cr3 & _CR3_ADDRESS:
            continue
        root = cpu.cr3 & _CR3_ADDRESS
        if cpu.lstar & _KERNEL_HALF:
            trampoline = \
                _CPU_ENTRY_AREA[0] <= cpu.lstar < _CPU_ENTRY_AREA[1]
            out.append(kernel_mod.CpuAnchor(root, cpu.la57, cpu.lstar,
                                            in_image=not trampoline))
        if cpu.cpl == 0 and cpu.rip & _KERNEL_HALF:
            out.append(kernel_mod.CpuAnchor(root, cpu.la57, cpu.rip,
                                            in_image=False))
    return out


def buildid_cache(directory: str | None) -> buildid_cache_mod.BuildIdCache:
    """The BUILD-ID cache in ``directory`` (``[sparc] buildid_cache_dir``,
    passed in by the caller); None or ``''``: no cache.
    """
    return buildid_cache_mod.BuildIdCache(directory or None)


class KernelSession:
    """An open checkpoint, its guest physical memory and guest kernel.

    :param path: the checkpoint (a libvirt save image or a bare QEMU
        migration stream).
    :param work_dir: where a compressed image is decompressed (None: next
        to ``path``).
    :param limits: parser bounds (None: the defaults).
    :param cache: the BUILD-ID cache to model the guest kernel with; None
        models no kernel (``kernel`` is then None).
    :param progress: ``progress(done, total)`` while parsing, or None.
    :param file: an open binary file of ``path`` to parse instead of
        opening it (the session then owns it).
    :param follow: a :class:`~sparc_nova.checkpoint.stream_follow.Follow`
        when the image is still being written.
    :param snapshot: the internal snapshot to read when ``path`` is a
        qcow2 disk image.
    :ivar ck: the parsed checkpoint.
    :ivar memory: its guest physical memory.
    :ivar kernel: the guest kernel model, or None.
    :raises CheckpointError: the file is not a checkpoint we can parse.
    :raises: any of :data:`GUEST_ERRORS` when the guest kernel cannot be
        modelled; the session is then closed.
    """

    def __init__(self, path: str, work_dir: str | None,
                 limits: limits_mod.Limits | None,
                 cache: buildid_cache_mod.BuildIdCache | None,
                 progress=None, file=None,
                 follow: stream_follow.Follow | None = None,
                 snapshot: str | None = None):
        self.ck = checkpoint_mod.open_checkpoint(
            path, work_dir=work_dir, limits=limits or limits_mod.DEFAULT,
            progress=progress, file=file, follow=follow, snapshot=snapshot)
        try:
            self.memory = physview.CheckpointMemory(self.ck)
            self.kernel = None
            if cache is not None:
                self.kernel = kernel_mod.open_kernel(
                    self.memory, cache, cpu_anchors(self.ck.cpus))
        except BaseException:
            self.close()
            raise
        # The parse's temporaries (the index is built in pieces) are free.
        memstats.give_back_free_memory()

    def close(self) -> None:
        """Release the memory view and the checkpoint (and its temporary
        decompressed stream).
        """
        mem = getattr(self, 'memory', None)
        if mem is not None:
            mem.close()
        self.ck.close()


def guest_failure(path: str, e: BaseException) -> errors.ScrubError:
    """The :class:`~.errors.ScrubError` naming ``path`` that a guest-side
    failure ``e`` is reported as (a CheckpointError gives its reason).
    """
    reason = e.reason if isinstance(e, exception.CheckpointError) else \
        str(e)
    return errors.ScrubError(path, reason)


def open_session(path: str, *, work_dir: str | None,
                 limits: limits_mod.Limits | None,
                 buildid_cache_dir: str | None, model_kernel: bool = True,
                 progress=None, file=None,
                 follow: stream_follow.Follow | None = None,
                 snapshot: str | None = None) -> KernelSession:
    """A :class:`KernelSession` on ``path``, with the guest kernel
    modelled (from ``buildid_cache_dir``) unless ``model_kernel`` is
    False. ``snapshot``: the internal snapshot of a qcow2 disk image.

    :raises CheckpointError: the file cannot be parsed (raised as is).
    :raises ScrubError: any other guest-side failure, naming ``path``.
    """
    cache = buildid_cache(buildid_cache_dir) if model_kernel else None
    try:
        return KernelSession(path, work_dir, limits, cache, progress, file,
                             follow, snapshot)
    except exception.CheckpointError:
        raise
    except GUEST_ERRORS as e:
        raise guest_failure(path, e)
