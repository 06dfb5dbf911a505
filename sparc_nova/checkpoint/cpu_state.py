"""x86-64 vCPU registers from the ``cpu`` and ``cpu_common`` device
sections (QEMU ``target/i386/machine.c``)."""

import dataclasses

from sparc_nova.checkpoint import qemu_stream

SEG_NAMES = ('es', 'cs', 'ss', 'ds', 'fs', 'gs')
HF_CPL_MASK = 0x3
HF_LMA_MASK = 1 << 14


@dataclasses.dataclass
class CpuState:
    """Registers of one vCPU at the time of the checkpoint."""

    index: int
    rip: int
    rsp: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    efer: int | None
    cpl: int
    long_mode: bool
    halted: bool | None
    fs_base: int
    gs_base: int
    kernel_gs_base: int
    #: MSR LSTAR, the kernel's 64-bit system-call entry (0: not known).
    lstar: int = 0

    @property
    def percpu_base(self) -> int:
        """The Linux per-CPU base: GS.base in kernel mode, KERNEL_GS_BASE
        (swapped out by swapgs) in user mode.
        """
        return self.gs_base if self.cpl == 0 else self.kernel_gs_base

    @property
    def la57(self) -> bool:
        """CR4.LA57: 5-level paging."""
        return bool(self.cr4 & (1 << 12))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, int) and not isinstance(v, bool) and \
                    k not in ('index', 'cpl'):
                d[k] = '0x%x' % v
        return d


def _get(values: dict, name: str, default=0):
    v = values.get(name, default)
    return v if isinstance(v, int) else default


def cpus(devices: list[qemu_stream.DeviceState]) -> list[CpuState]:
    """Decode every ``cpu`` section; ``halted`` comes from the
    ``cpu_common`` section of the same instance.
    """
    halted = {d.instance_id: bool(_get(d.values, 'halted'))
              for d in devices if d.name == 'cpu_common'}
    out = []
    for d in devices:
        if d.name != 'cpu':
            continue
        v = d.values
        regs = v.get('env.regs') if isinstance(v.get('env.regs'),
                                               list) else [0] * 16
        segs = v.get('env.segs') if isinstance(v.get('env.segs'),
                                               list) else []
        bases = [s.get('base', 0) if isinstance(s, dict) else 0
                 for s in segs] + [0] * 6
        hflags = _get(v, 'env.hflags')
        out.append(CpuState(
            index=d.instance_id, rip=_get(v, 'env.eip'),
            rsp=regs[4] if len(regs) > 4 else 0,
            cr0=_get(v, 'env.cr[0]'), cr2=_get(v, 'env.cr[2]'),
            cr3=_get(v, 'env.cr[3]'), cr4=_get(v, 'env.cr[4]'),
            efer=_get(v, 'env.efer'), cpl=hflags & HF_CPL_MASK,
            long_mode=bool(hflags & HF_LMA_MASK),
            halted=halted.get(d.instance_id),
            fs_base=bases[4], gs_base=bases[5],
            kernel_gs_base=_get(v, 'env.kernelgsbase'),
            lstar=_get(v, 'env.lstar')))
    return out
