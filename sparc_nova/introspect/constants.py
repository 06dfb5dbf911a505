"""Kernel constants that are ``#define``s, so neither BTF nor vmcoreinfo
carries them. One table per architecture; x86-64 is the only one.

Each value has been stable across the kernels we support (5.x-6.12); a
kernel that changes one needs a new entry keyed by version here, not a
guess elsewhere.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ArchConstants:
    #: ``arch/x86/include/asm/thread_info.h``
    TIF_SIGPENDING: int = 2
    #: ``include/uapi/asm-generic/signal.h`` (x86 uses the same numbers)
    SIGKILL: int = 9
    #: THREAD_SIZE with KASAN off (``arch/x86/include/asm/page_64_types.h``)
    THREAD_SIZE: int = 16384
    #: ``include/linux/sched.h``
    TASK_RUNNING: int = 0x0000
    TASK_INTERRUPTIBLE: int = 0x0001
    TASK_UNINTERRUPTIBLE: int = 0x0002
    TASK_STOPPED: int = 0x0004
    TASK_TRACED: int = 0x0008
    TASK_DEAD: int = 0x0080
    TASK_WAKEKILL: int = 0x0100
    #: ``include/linux/sched.h``: task->flags
    PF_EXITING: int = 0x00000004
    PF_KTHREAD: int = 0x00200000
    #: ``include/linux/timer.h``
    TIMER_CPUMASK: int = 0x0003ffff
    TIMER_MIGRATING: int = 0x00040000
    TIMER_DEFERRABLE: int = 0x00080000
    TIMER_PINNED: int = 0x00100000
    TIMER_IRQSAFE: int = 0x00200000
    TIMER_ARRAYSHIFT: int = 22
    #: ``kernel/time/timer.c``
    TIMER_LVL_BITS: int = 6
    #: ``include/linux/mmzone.h``
    PAGE_ALLOC_COSTLY_ORDER: int = 3
    #: HPAGE_PMD_ORDER on x86-64 with 4 KiB pages
    HPAGE_PMD_ORDER: int = 9
    #: ``include/linux/page-flags.h``: page->mapping low bits
    PAGE_MAPPING_ANON: int = 0x1
    PAGE_MAPPING_MOVABLE: int = 0x2
    #: ``include/linux/poison.h``
    PAGE_POISON: int = 0xaa
    #: x86-64 address space split
    USER_SPACE_END_4LEVEL: int = 0x0000800000000000
    USER_SPACE_END_5LEVEL: int = 0x0100000000000000
    START_KERNEL_MAP: int = 0xffffffff80000000
    #: ``include/linux/sched/task_stack.h``
    STACK_END_MAGIC: int = 0x57ac6e9d


X86_64 = ArchConstants()
