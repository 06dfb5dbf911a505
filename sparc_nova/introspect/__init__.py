"""Guest kernel introspection with no per-kernel profile.

Everything is bootstrapped from the guest's own memory: vmcoreinfo, the
kernel's kallsyms and its BTF (or, for kernels that do not carry them, a
host-side cache keyed by BUILD-ID). This package reads guest *physical*
memory through the small :class:`~sparc_nova.introspect.physical.
PhysicalMemory` interface and knows nothing of checkpoint file formats.
"""
