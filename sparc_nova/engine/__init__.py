"""The exclusion engines.

Memory (a libvirt save image or QEMU migration stream): the entry is
:mod:`.memory` (``scrub_checkpoint``), which runs one module per step:
:mod:`.session` (open), :mod:`.sandboxed_plan` and :mod:`.sandbox_calls`
(where the plan is made), :mod:`.planner` (which pages are chosen),
:mod:`.patches` (the queued changes), the rewrite
(:mod:`sparc_nova.checkpoint.rewrite`, where pages are zeroed) and
:mod:`.verify` (where they are read back); :mod:`.listings` for ``ps``,
``deps`` and marker counts. Disk images: :mod:`.disk`.
"""

__all__ = []
