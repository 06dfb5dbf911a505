"""An object finder for the kernel globals BTF does not type.

BTF describes the type of every per-CPU variable (since Linux 5.11; not
before) but of no other global. drgn's helpers and ours need a few
globals by name (``prog["init_task"]``); this table gives their C types,
and the symbol table gives their addresses. The per-CPU variables at its
end serve kernels whose BTF lacks them (5.10 and older); the finder is
consulted after BTF's, so a kernel's own type wins. A name missing from
the table is simply not found, as it would be without debug info.
"""

import drgn

#: Global variable -> C type, as drgn parses it. ``[]`` arrays take their
#: length from the symbol's size when known.
GLOBALS = {
    'init_task': 'struct task_struct',
    'init_pid_ns': 'struct pid_namespace',
    'init_mm': 'struct mm_struct',
    'init_uts_ns': 'struct uts_namespace',
    'init_fs': 'struct fs_struct',
    'init_files': 'struct files_struct',
    'jiffies': 'volatile unsigned long',
    'jiffies_64': 'u64',
    'nr_cpu_ids': 'unsigned int',
    'nr_node_ids': 'unsigned int',
    '__per_cpu_offset': 'unsigned long [8192]',
    '__cpu_online_mask': 'struct cpumask',
    '__cpu_possible_mask': 'struct cpumask',
    '__cpu_present_mask': 'struct cpumask',
    'node_data': 'struct pglist_data *[1024]',
    'node_states': 'nodemask_t [16]',
    'contig_page_data': 'struct pglist_data',
    'mem_section': 'struct mem_section **',
    'vmemmap_base': 'unsigned long',
    'page_offset_base': 'unsigned long',
    'vmalloc_base': 'unsigned long',
    'max_pfn': 'unsigned long',
    '_totalram_pages': 'atomic_long_t',
    'pipefifo_fops': 'const struct file_operations',
    '_page_poisoning_enabled_early': 'bool',
    '_page_poisoning_enabled': 'struct static_key',
    'init_on_free': 'struct static_key',
    'init_on_alloc': 'struct static_key',
    'cgrp_dfl_root': 'struct cgroup_root',
    'vmcoreinfo_data': 'unsigned char *',
    'init_cred': 'struct cred',
    'swapper_pg_dir': 'pgd_t [512]',
    'init_top_pgt': 'pgd_t [512]',
    'slab_caches': 'struct list_head',
    'super_blocks': 'struct list_head',
    # Per-CPU variables (typed by BTF since 5.11).
    'current_task': 'struct task_struct *',
    # NR_BASES is 2 (BASE_STD, BASE_DEF) with CONFIG_NO_HZ_COMMON before
    # 6.9; 6.9 added BASE_GLOBAL, and those kernels type it in BTF.
    'timer_bases': 'struct timer_base [2]',
}


class GlobalsFinder:
    """drgn object finder for :data:`GLOBALS`.

    :param symbol_address: callable(name) -> address or None.
    """

    def __init__(self, symbol_address, table: dict | None = None):
        self._symbol_address = symbol_address
        self._table = dict(GLOBALS if table is None else table)
        self._cache = {}

    def register(self, prog: drgn.Program, name: str = 'sparc-globals'
                 ) -> None:
        prog.register_object_finder(name, self, enable_index=-1)

    def __call__(self, prog, name, flags, filename):
        if not flags & drgn.FindObjectFlags.VARIABLE:
            return None
        ctype = self._table.get(name)
        if ctype is None:
            return None
        if name not in self._cache:
            addr = self._symbol_address(name)
            if addr is None:
                self._cache[name] = None
            else:
                try:
                    self._cache[name] = drgn.Object(prog, ctype,
                                                    address=addr)
                except LookupError:
                    # The type does not exist in this kernel (e.g.
                    # contig_page_data on a NUMA build).
                    self._cache[name] = None
        return self._cache[name]
