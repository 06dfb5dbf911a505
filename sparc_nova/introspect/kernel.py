"""Bootstrap a drgn model of the guest kernel from its physical memory.

:func:`open_kernel` finds vmcoreinfo, builds a :class:`drgn.Program` over
guest physical memory, loads the kernel's symbols (its own kallsyms, or
the host-side BUILD-ID cache) and types (its own BTF, or the cache), and
confirms the vmcoreinfo it used is the kernel's own. After that drgn's
Linux helpers work on the returned :attr:`GuestKernel.prog`.

Every read drgn makes is counted (:meth:`GuestKernel.budget`), so that a
cycle planted anywhere in guest memory ends in an error, not a hang.
"""

import contextlib
import dataclasses
import re
import typing

import _drgn
import drgn
from drgn.helpers.linux import cpumask
from drgn.helpers.linux import kallsyms
from drgn.helpers.linux import mm as mm_helpers
from drgn.helpers.linux import percpu

from sparc_nova import exception
from sparc_nova.introspect import btf as btf_mod
from sparc_nova.introspect import btf_finder
from sparc_nova.introspect import buildid_cache
from sparc_nova.introspect import constants
from sparc_nova.introspect import kallsyms_finder
from sparc_nova.introspect import objects
from sparc_nova.introspect import pagetable
from sparc_nova.introspect import physical
from sparc_nova.introspect import vmcoreinfo as vmcoreinfo_mod

#: Largest BTF blob read from guest memory.
MAX_BTF = 64 * 1024 * 1024
#: Largest kernel image mapping (KERNEL_IMAGE_SIZE) read directly.
MAX_KERNEL_IMAGE = 1 << 30
#: What drgn raises on guest data it cannot use (a read outside RAM,
#: tables that do not decode, a symbol vmcoreinfo names as 0, a value out
#: of range): for a vmcoreinfo candidate, a reason to refuse it.
GUEST_DATA_ERRORS = (drgn.FaultError, drgn.BadDataError,
                     drgn.MissingDebugInfoError, drgn.ObjectAbsentError,
                     drgn.OutOfBoundsError, ValueError, LookupError,
                     OverflowError)
#: Default read budget of one bounded operation.
DEFAULT_BUDGET = 2000000


class IntrospectionError(exception.SparcError):
    """The guest kernel could not be modelled (corrupt or unsupported)."""


class MissingKernelInfo(IntrospectionError):
    """The guest's memory lacks symbols or types and the BUILD-ID cache
    does not provide them.
    """


@dataclasses.dataclass
class KernelSources:
    """Where symbols and types came from (for reports).

    :ivar anchors: how many vCPU anchors (:class:`CpuAnchor`) confirmed
        the kernel image's place.
    """

    symbols: str = ''
    types: str = ''
    notes: list = dataclasses.field(default_factory=list)
    anchors: int = 0


@dataclasses.dataclass(frozen=True)
class CpuAnchor:
    """A kernel virtual address a vCPU runs the kernel at, read from its
    registers (which no guest program can set): the page table it runs
    on and the address it maps.

    :ivar page_table: guest physical address of the vCPU's top-level page
        table (CR3 without its flag and PCID bits).
    :ivar la57: the vCPU uses 5-level paging.
    :ivar address: the kernel virtual address.
    :ivar in_image: ``address`` is kernel image text by definition (the
        system-call entry, MSR LSTAR); otherwise (the instruction pointer
        of a vCPU in kernel mode, which may be in a module) it is checked
        only when it falls in the image.
    """

    page_table: int
    la57: bool
    address: int
    in_image: bool


#: vmcoreinfo symbols that are not expected in kallsyms: the tables'
#: own labels (6.0+ name them) and aliases absent from the symbol table.
_NOT_IN_KALLSYMS = frozenset(('kallsyms_names', 'kallsyms_token_table',
                              'kallsyms_token_index', 'kallsyms_num_syms',
                              'kallsyms_offsets', 'kallsyms_relative_base',
                              'kallsyms_addresses'))
#: Fewest vmcoreinfo symbols a scanned table must be checked against.
MIN_CHECKED_SYMBOLS = 3
#: vmcoreinfo symbols every kernel's table holds under the same name.
REQUIRED_SYMBOLS = frozenset(('_stext', 'init_uts_ns'))


def _checked_symbols(vmci: vmcoreinfo_mod.Vmcoreinfo) -> dict[str, int]:
    return {name: addr for name, addr in vmci.symbols.items()
            if name not in _NOT_IN_KALLSYMS}


def _load_builtin_kallsyms(prog: drgn.Program,
                           tables: kallsyms_finder.KallsymsTables,
                           stext: int) -> drgn.SymbolIndex:
    """drgn's kallsyms decoder on tables we located ourselves.

    ``drgn.helpers.linux.kallsyms.load_vmlinux_kallsyms`` calls the same
    function with the addresses vmcoreinfo gives (Linux 6.0+ only); its
    arguments are positional: names, token_table, token_index, num_syms,
    offsets, relative_base, addresses, _stext.
    """
    return _drgn._linux_helper_load_builtin_kallsyms(
        prog, tables.names, tables.token_table, tables.token_index,
        tables.num_syms, tables.offsets, tables.relative_base,
        tables.addresses, stext)


def _table_span(tables: kallsyms_finder.KallsymsTables) -> tuple[int, int]:
    """Kernel virtual ``[start, end)`` covering every table of a set."""
    lo, hi = tables.num_syms, tables.token_index + 512
    if tables.offsets:
        lo = min(lo, tables.offsets)
        hi = max(hi, tables.relative_base + 8)
    else:
        lo = min(lo, tables.addresses)
        hi = max(hi, tables.addresses + 8 * tables.count)
    return lo, hi


def _vmcoreinfo_mismatches(prog: drgn.Program, index: drgn.SymbolIndex,
                           vmci: vmcoreinfo_mod.Vmcoreinfo) -> list[str]:
    """How the decoded table disagrees with vmcoreinfo, as readable lines
    (empty: it agrees).

    Every ``SYMBOL(name)`` the table holds must be at the address
    vmcoreinfo gives, or hold it (``VMCOREINFO_SYMBOL_ARRAY`` records a
    pointer's value, e.g. ``mem_section``). Names the table lacks are
    macros over other symbols (``swapper_pg_dir``, ``node_online_map``)
    and are skipped, but :data:`REQUIRED_SYMBOLS` and at least
    :data:`MIN_CHECKED_SYMBOLS` names must match.
    """
    problems = []
    matched = set()
    for name, address in sorted(_checked_symbols(vmci).items()):
        found = index(prog, name, None, True)
        if not found:
            continue
        at = found[0].address
        if at == address:
            matched.add(name)
            continue
        try:
            held = prog.read_u64(at)
        except drgn.FaultError:
            held = None
        if held == address:
            matched.add(name)
        else:
            problems.append('%s at 0x%x, vmcoreinfo says 0x%x'
                            % (name, at, address))
    missing = REQUIRED_SYMBOLS - matched
    if missing:
        problems.append('%s not found' % ', '.join(sorted(missing)))
    if len(matched) < MIN_CHECKED_SYMBOLS:
        problems.append('only %d vmcoreinfo symbols to check the table '
                        'against (at least %d needed)'
                        % (len(matched), MIN_CHECKED_SYMBOLS))
    return problems


def _release_tuple(release: str) -> tuple[int, int, int]:
    m = re.match(r'(\d+)\.(\d+)(?:\.(\d+))?', release)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


class GuestKernel:
    """A drgn program over one guest kernel, plus what was learnt while
    building it.

    :ivar prog: the :class:`drgn.Program`.
    :ivar vmcoreinfo: the accepted :class:`~.vmcoreinfo.Vmcoreinfo`.
    :ivar btf: the :class:`~.btf.BtfTypes` in use (None with DWARF).
    :ivar sources: :class:`KernelSources`.
    :ivar consts: the architecture's constant table.
    """

    def __init__(self, memory, vmci: vmcoreinfo_mod.Vmcoreinfo,
                 cache: buildid_cache.BuildIdCache | None = None):
        self.memory = memory
        self.vmcoreinfo = vmci
        self.cache = cache or buildid_cache.BuildIdCache(None)
        self.consts = constants.X86_64
        self.sources = KernelSources()
        self.btf = None
        self._budget = physical.Budget()
        self._symbols = {}
        platform = drgn.Platform(
            drgn.Architecture.X86_64,
            drgn.PlatformFlags.IS_64_BIT |
            drgn.PlatformFlags.IS_LITTLE_ENDIAN)
        prog = drgn.Program(platform)
        for start, end in memory.ranges:
            prog.add_memory_segment(start, end - start, self._read,
                                    physical=True)
        try:
            prog.set_linux_kernel_custom(vmci.raw, False)
        except (ValueError, drgn.FaultError) as e:
            raise vmcoreinfo_mod.VmcoreinfoError(
                'vmcoreinfo at 0x%x is not accepted by drgn: %s'
                % (vmci.address, e))
        self.prog = prog
        self._image = None
        size = vmci.numbers.get('KERNEL_IMAGE_SIZE', 0)
        if 0 < size <= MAX_KERNEL_IMAGE:
            # The kernel image is mapped linearly at phys_base (the page
            # table walk drgn would do for each read, e.g. four reads per
            # kallsyms entry, ends there too); narrowed to _text.._end
            # once the symbols are known.
            start = self.consts.START_KERNEL_MAP
            self._image = [start, start + size]
            self._phys_base = vmci.phys_base
            prog.add_memory_segment(start, size, self._read_image,
                                    physical=False)

    # -- memory --------------------------------------------------------------

    # drgn passes (address, count, offset, physical); the last is named
    # is_physical here so that it does not hide the physical module.

    def _read(self, address, count, offset, is_physical):
        self._budget.charge()
        try:
            return self.memory.read(address, count)
        except physical.PhysicalAddressError:
            raise drgn.FaultError('guest physical address is not RAM',
                                  address)

    def _read_image(self, address, count, offset, is_physical):
        lo, hi = self._image
        if address < lo or address + count > hi:
            raise drgn.FaultError('outside the kernel image', address)
        return self._read((self._phys_base + offset) & 0xffffffffffffffff,
                          count, 0, True)

    def _narrow_image(self) -> None:
        text = self.symbol_address('_text')
        end = self.symbol_address('_end')
        lo, hi = self._image
        if text is not None and end is not None and \
                lo <= text < end <= hi:
            self._image = [text, end]

    @contextlib.contextmanager
    def budget(self, reads: int, what: str):
        """Allow at most ``reads`` guest memory reads while ``what`` runs
        (nested budgets: the innermost applies).
        """
        b = self._budget
        saved = (b.limit, b.what, b.used)
        b.limit, b.what, b.used = reads, what, 0
        try:
            yield
        finally:
            b.limit, b.what, b.used = saved

    # -- symbols ----------------------------------------------------------

    def symbol_address(self, name: str) -> int | None:
        if name not in self._symbols:
            try:
                self._symbols[name] = self.prog.symbol(name).address
            except LookupError:
                self._symbols[name] = None
        return self._symbols[name]

    def _load_symbols(self) -> None:
        vmci = self.vmcoreinfo
        if vmci.has_kallsyms:
            try:
                with self.budget(20000000, 'loading kallsyms'):
                    index = kallsyms.load_vmlinux_kallsyms(self.prog)
            except GUEST_DATA_ERRORS as e:
                raise IntrospectionError(
                    'the kallsyms tables vmcoreinfo points to cannot be '
                    'read: %s' % e)
            self.prog.register_symbol_finder('kallsyms', index,
                                             enable_index=0)
            self.sources.symbols = 'kallsyms (guest memory)'
            return
        scan_error = None
        try:
            self._load_scanned_kallsyms()
            return
        except IntrospectionError as e:
            scan_error = e
        syms = self.cache.symbols(vmci.build_id, vmci.kerneloffset)
        if syms:
            self.prog.register_symbol_finder(
                'system-map', drgn.SymbolIndex(syms), enable_index=0)
            self.sources.symbols = 'System.map (BUILD-ID cache)'
            return
        vmlinux = self.cache.vmlinux(vmci.build_id)
        if vmlinux:
            self._load_vmlinux(vmlinux)
            self.sources.symbols = 'vmlinux (BUILD-ID cache)'
            return
        raise MissingKernelInfo(
            'guest kernel %s (BUILD-ID %s) does not locate its kallsyms in '
            'vmcoreinfo (Linux < 6.0), %s, and there are no symbols for it '
            'in the BUILD-ID cache: provide System.map or vmlinux for this '
            'kernel (%s)' % (vmci.osrelease, vmci.build_id, scan_error,
                             self.cache.describe(vmci.build_id)))

    def _read_kernel_image(self, vaddr: int, count: int) -> bytes:
        """``count`` bytes of the kernel image at kernel virtual
        ``vaddr`` (the image is mapped linearly at ``phys_base``).
        """
        phys = self._symbol_phys(vaddr)
        if phys + count > 1 << 52:
            raise physical.PhysicalAddressError(phys)
        self._budget.charge()
        return self.memory.read(phys, count)

    def _kernel_read_only(self, start: int, end: int) -> bool:
        """Whether kernel virtual ``[start, end)`` is mapped read-only
        by the kernel's own page table (``swapper_pg_dir``).
        """
        vmci = self.vmcoreinfo
        try:
            with self.budget(100000, 'checking the kallsyms mapping'):
                return pagetable.kernel_range_read_only(
                    self.memory, self._page_table_phys(),
                    vmci.pgtable_l5_enabled, start, end)
        except physical.PhysicalAddressError:
            return False

    def _load_scanned_kallsyms(self) -> None:
        """Find the kallsyms tables by their structure in the kernel
        image (kernels before 6.0) and use them once every symbol
        vmcoreinfo names resolves to the address vmcoreinfo gives.

        :raises IntrospectionError: no tables, or the first tables found
            disagree with vmcoreinfo (a later candidate is never tried:
            it could be a look-alike planted by the guest).
        """
        vmci = self.vmcoreinfo
        stext = vmci.symbols.get('_stext')
        if stext is None:
            raise IntrospectionError('vmcoreinfo has no SYMBOL(_stext) to '
                                     'start a kallsyms scan from')
        try:
            with self.budget(200000, 'scanning for kallsyms'):
                placements = kallsyms_finder.find_tables(
                    self._read_kernel_image, stext)
        except kallsyms_finder.KallsymsNotFound as e:
            raise IntrospectionError(str(e))
        problems = []
        for tables in placements:
            lo, hi = _table_span(tables)
            if not self._kernel_read_only(lo, hi):
                problems.append('%s layout: 0x%x-0x%x is not read-only '
                                'kernel memory' % (tables.layout, lo, hi))
                continue
            try:
                with self.budget(20000000, 'loading kallsyms'):
                    index = _load_builtin_kallsyms(self.prog, tables, stext)
            except (drgn.FaultError, drgn.BadDataError, ValueError,
                    LookupError) as e:
                problems.append('%s layout: %s' % (tables.layout, e))
                continue
            mismatch = _vmcoreinfo_mismatches(self.prog, index, vmci)
            if mismatch:
                problems.append('%s layout: %s' % (tables.layout,
                                                   '; '.join(mismatch)))
                continue
            self.prog.register_symbol_finder('kallsyms', index,
                                             enable_index=0)
            self.sources.symbols = 'kallsyms (guest memory, located by scan)'
            self.sources.notes.append(
                'kallsyms tables found by scan: %d symbols, %s layout, '
                'token table at 0x%x, checked against vmcoreinfo'
                % (tables.count, tables.layout, tables.token_table))
            return
        raise IntrospectionError(
            'the kallsyms tables found at 0x%x in the kernel image disagree '
            'with vmcoreinfo (%s): refused' % (placements[0].token_table,
                                               ' | '.join(problems)))

    def _load_vmlinux(self, path: str) -> None:
        try:
            self.prog.load_debug_info([path])
        except drgn.MissingDebugInfoError:
            pass
        except Exception as e:  # drgn raises several kinds here
            raise MissingKernelInfo('%s from the BUILD-ID cache cannot be '
                                    'loaded: %s' % (path, e))

    # -- validation -------------------------------------------------------

    def _validate_vmcoreinfo(self) -> None:
        """The kernel's own ``vmcoreinfo_data`` must lead to the text we
        used, and ``init_uts_ns`` must carry its release.
        """
        vmci = self.vmcoreinfo
        prog = self.prog
        with self.budget(10000, 'checking vmcoreinfo'):
            try:
                addr = self.symbol_address('vmcoreinfo_data')
                if addr is not None:
                    ptr = prog.read_u64(addr)
                    text = prog.read(ptr, len(vmci.raw) + 1)
                    if text[:len(vmci.raw)] != vmci.raw or \
                            text[len(vmci.raw)] != 0:
                        raise vmcoreinfo_mod.VmcoreinfoError(
                            'vmcoreinfo at 0x%x is not the kernel\'s own '
                            '(vmcoreinfo_data points elsewhere)'
                            % vmci.address)
                uts = vmci.symbols.get('init_uts_ns')
                if uts is None:
                    uts = self.symbol_address('init_uts_ns')
                if uts is not None:
                    off = self._uts_name_offset(uts)
                    # struct new_utsname: sysname[65], nodename[65],
                    # release[65], ...
                    rel = prog.read(uts + off + 130, 65).split(b'\0')[0]
                    if rel.decode('ascii', 'replace') != vmci.osrelease:
                        raise vmcoreinfo_mod.VmcoreinfoError(
                            'vmcoreinfo at 0x%x says release %r but the '
                            'kernel\'s init_uts_ns says %r'
                            % (vmci.address, vmci.osrelease, rel[:65]))
            except drgn.FaultError as e:
                raise vmcoreinfo_mod.VmcoreinfoError(
                    'vmcoreinfo at 0x%x does not describe this memory '
                    '(%s)' % (vmci.address, e))

    def _check_anchors(self, anchors) -> None:
        """The kernel this vmcoreinfo describes must be the one the vCPUs
        run. For every :class:`CpuAnchor` the vCPU's own page table maps,
        in this kernel's image: that page table, the image's linear
        mapping at ``phys_base`` and the page table vmcoreinfo names must
        all map the address to the same physical byte; the system-call
        entry must be in the image; and at least one anchor must be
        checked when any is mapped. A text a guest program forged, with a
        copy of the kernel (or a world of its own) elsewhere in RAM,
        confirms itself through its own pointers, but not through the
        vCPUs' registers, which no guest program sets.
        """
        vmci = self.vmcoreinfo
        root = self._page_table_phys()
        mapped = checked = 0
        for a in anchors:
            by_cpu = pagetable.translate(self.memory, a.page_table, a.la57,
                                         a.address)
            if by_cpu is None:
                continue        # not mapped by that vCPU: no anchor
            mapped += 1
            if self._image is not None and \
                    not self._image[0] <= a.address < self._image[1]:
                if a.in_image:
                    raise vmcoreinfo_mod.VmcoreinfoError(
                        'vmcoreinfo at 0x%x places the kernel image at '
                        '[0x%x, 0x%x), but a vCPU enters the kernel at 0x%x'
                        % (vmci.address, self._image[0], self._image[1],
                           a.address))
                continue        # e.g. a module's code
            by_image = self._symbol_phys(a.address)
            by_tables = pagetable.translate(self.memory, root,
                                            vmci.pgtable_l5_enabled,
                                            a.address)
            if not by_cpu == by_tables == by_image:
                raise vmcoreinfo_mod.VmcoreinfoError(
                    'vmcoreinfo at 0x%x is not the kernel the vCPUs run: '
                    'they map 0x%x to guest physical 0x%x, its kernel to '
                    '%s' % (vmci.address, a.address, by_cpu,
                            ', '.join('0x%x' % p if p is not None else
                                      'nothing'
                                      for p in (by_image, by_tables))))
            checked += 1
        if mapped and not checked:
            raise vmcoreinfo_mod.VmcoreinfoError(
                'vmcoreinfo at 0x%x: no vCPU runs code of its kernel image '
                '(%d addresses the vCPUs run the kernel at, none in it)'
                % (vmci.address, mapped))
        self.sources.anchors = checked

    def _symbol_phys(self, vaddr: int) -> int:
        """Guest physical address of kernel image address ``vaddr`` by
        vmcoreinfo's ``phys_base`` (``__pa_symbol``).
        """
        return (vaddr - self.consts.START_KERNEL_MAP +
                self.vmcoreinfo.phys_base) & 0xffffffffffffffff

    def _page_table_phys(self) -> int:
        """Guest physical address of the kernel's own page table, as
        vmcoreinfo names it (``swapper_pg_dir``, which drgn walks, else
        ``init_top_pgt``; :func:`.vmcoreinfo.parse` requires one).
        """
        symbols = self.vmcoreinfo.symbols
        return self._symbol_phys(symbols.get('swapper_pg_dir',
                                             symbols.get('init_top_pgt')))

    def _uts_name_offset(self, uts: int) -> int:
        """Offset of ``name`` in ``struct uts_namespace``: vmcoreinfo
        gives it since 6.x; before, ``name`` follows a 4-byte ``kref``
        (5.x) or starts the struct; the sysname ``Linux`` tells which.
        """
        off = self.vmcoreinfo.offsets.get('uts_namespace.name')
        if off is not None:
            return off
        head = self.prog.read(uts, 16)
        for off in (0, 4, 8):
            if head[off:off + 6] == b'Linux\0':
                return off
        return 0

    # -- types --------------------------------------------------------------

    def _load_types(self) -> None:
        vmci = self.vmcoreinfo
        if self.sources.symbols.startswith('vmlinux'):
            try:
                self.prog.type('struct task_struct')
                self.sources.types = 'vmlinux DWARF (BUILD-ID cache)'
                return
            except LookupError:
                pass
        start = self.symbol_address('__start_BTF')
        stop = self.symbol_address('__stop_BTF')
        error = None
        if start is not None and stop is not None:
            if not 0 < stop - start <= MAX_BTF:
                error = btf_mod.BtfError(
                    '__start_BTF..__stop_BTF spans %d bytes' % (stop - start))
            else:
                try:
                    with self.budget(1000000, 'reading BTF'):
                        data = self.prog.read(start, stop - start)
                    self._use_btf(btf_mod.BtfTypes(data),
                                  'BTF (guest memory)')
                    return
                except drgn.FaultError as e:
                    error = btf_mod.BtfError('cannot read the kernel\'s '
                                             'BTF: %s' % e)
                except btf_mod.BtfError as e:
                    error = e
        data = self.cache.btf(vmci.build_id)
        if data is not None:
            try:
                types = btf_mod.BtfTypes(data)
            except btf_mod.BtfError as e:
                raise btf_mod.BtfError('BUILD-ID cache entry %s: %s' % (
                    self.cache.entry(vmci.build_id), e.reason), e.offset) \
                    from e
            self._use_btf(types, 'BTF (BUILD-ID cache)')
            if error is not None:
                self.sources.notes.append(
                    'the BTF in guest memory is unusable (%s); used the '
                    'BUILD-ID cache' % error.reason)
            return
        vmlinux = self.cache.vmlinux(vmci.build_id)
        if vmlinux and not self.sources.symbols.startswith('vmlinux'):
            self._load_vmlinux(vmlinux)
            self.sources.types = 'vmlinux DWARF (BUILD-ID cache)'
            return
        if error is not None:
            raise btf_mod.BtfError(
                '%s; the guest kernel %s (BUILD-ID %s) has no usable type '
                'information and the BUILD-ID cache has none either (%s)'
                % (error.reason, vmci.osrelease, vmci.build_id,
                   self.cache.describe(vmci.build_id)))
        raise MissingKernelInfo(
            'guest kernel %s (BUILD-ID %s) carries no BTF (built without '
            'CONFIG_DEBUG_INFO_BTF?) and the BUILD-ID cache has no btf or '
            'vmlinux for it (%s)' % (vmci.osrelease, vmci.build_id,
                                     self.cache.describe(vmci.build_id)))

    def _use_btf(self, types: btf_mod.BtfTypes, source: str) -> None:
        for name in ('task_struct', 'mm_struct', 'page', 'list_head'):
            if types.find('struct', name) is None:
                raise btf_mod.BtfError('no struct %s in %s' % (name, source))
        self.btf = types
        btf_finder.register(types, self.prog, self.symbol_address)
        objects.GlobalsFinder(self.symbol_address).register(self.prog)
        self.sources.types = source

    # -- facts -------------------------------------------------------------

    @property
    def release(self) -> str:
        return self.vmcoreinfo.osrelease

    @property
    def version(self) -> tuple[int, int, int]:
        return _release_tuple(self.vmcoreinfo.osrelease)

    @property
    def build_id(self) -> str:
        return self.vmcoreinfo.build_id

    def has_member(self, type_name: str, member: str) -> bool:
        try:
            return self.prog.type(type_name).has_member(member)
        except LookupError:
            return False

    def online_cpus(self) -> list[int]:
        with self.budget(100000, 'listing CPUs'):
            cpus = list(cpumask.for_each_online_cpu(self.prog))
        if not cpus or len(cpus) > 8192:
            raise IntrospectionError('implausible online CPU set (%d CPUs)'
                                     % len(cpus))
        return cpus

    def per_cpu(self, name: str, cpu: int) -> drgn.Object:
        """Per-CPU variable ``name`` of ``cpu``."""
        return percpu.per_cpu(self.prog[name], cpu)

    def current_task(self, cpu: int) -> drgn.Object:
        """The task the scheduler has on ``cpu`` (``struct task_struct
        *``): ``pcpu_hot.current_task`` (6.2+) or ``current_task``.
        """
        try:
            return self.per_cpu('pcpu_hot', cpu).current_task
        except LookupError:
            return self.per_cpu('current_task', cpu)

    def phys(self, vaddr: int) -> int:
        """Guest physical address of kernel virtual ``vaddr``."""
        return mm_helpers.follow_phys(self.prog['init_mm'].address_of_(),
                                      vaddr).value_()

    def summary(self) -> dict:
        out = self.vmcoreinfo.summary()
        out.update({'symbols': self.sources.symbols,
                    'types': self.sources.types,
                    'version': '%d.%d.%d' % self.version})
        if self.btf is not None:
            out['btf_types'] = len(self.btf)
        if self.sources.notes:
            out['notes'] = list(self.sources.notes)
        out['vcpu_anchors'] = self.sources.anchors
        return out


def anchored_phys_base(memory, anchors: typing.Sequence[CpuAnchor]
                       ) -> int | None:
    """The kernel's ``phys_base`` as the vCPUs' registers give it: where
    the first vCPU that maps its system-call entry (an anchor known to be
    image text) maps it, less the entry's offset in the image (64-bit
    unsigned); None when no vCPU tells.
    """
    for a in anchors:
        if not a.in_image:
            continue
        pa = pagetable.translate(memory, a.page_table, a.la57, a.address)
        if pa is not None:
            return (pa - (a.address - constants.X86_64.START_KERNEL_MAP)) \
                & 0xffffffffffffffff
    return None


def _candidates(memory, anchors):
    """vmcoreinfo candidates, the texts that hold the vCPUs' ``phys_base``
    (:func:`anchored_phys_base`) first, then any other (each text once).
    """
    seen = set()
    phys_base = anchored_phys_base(memory, anchors)
    if phys_base is not None:
        for address, text in vmcoreinfo_mod.iter_candidates(memory,
                                                            phys_base):
            seen.add(text)
            yield address, text
    for address, text in vmcoreinfo_mod.iter_candidates(memory):
        if text not in seen:
            yield address, text


def open_kernel(memory, cache: buildid_cache.BuildIdCache | None = None,
                anchors: typing.Sequence[CpuAnchor] = ()) -> GuestKernel:
    """Model the Linux kernel in guest physical memory ``memory``.

    ``anchors``: what the vCPUs' registers say of the running kernel
    (:class:`CpuAnchor`); a vmcoreinfo candidate they contradict is
    refused (see :meth:`GuestKernel._check_anchors`).

    :raises VmcoreinfoError: no vmcoreinfo, or none the kernel confirms.
    :raises MissingKernelInfo: symbols or types are neither in memory nor
        in the BUILD-ID cache.
    :raises BtfError: the guest's BTF is malformed (and no cache entry).
    """
    problems = []
    missing = None
    found = 0
    for address, text in _candidates(memory, anchors):
        found += 1
        try:
            vmci = vmcoreinfo_mod.parse(text, address)
            kernel = GuestKernel(memory, vmci, cache)
            kernel._load_symbols()
            if kernel._image is not None:
                kernel._narrow_image()
            kernel._validate_vmcoreinfo()
            kernel._check_anchors(anchors)
        except MissingKernelInfo as e:
            # Raised once no candidate works: a text ahead of the kernel's
            # own (any guest process can write one) must not end the
            # search by naming symbols it left out.
            missing = missing or e
            problems.append(str(e))
            continue
        except (exception.SparcError,) + GUEST_DATA_ERRORS as e:
            problems.append(str(e))
            continue
        kernel._load_types()
        return kernel
    if missing is not None:
        raise missing
    if not found:
        raise vmcoreinfo_mod.VmcoreinfoError(
            'no vmcoreinfo in guest memory (no "OSRELEASE=" text with a '
            '"KERNELOFFSET=" line): not a Linux guest, or a kernel built '
            'without CONFIG_CRASH_CORE')
    raise vmcoreinfo_mod.VmcoreinfoError(
        'no usable vmcoreinfo among %d candidate(s): %s'
        % (found, '; '.join(problems)))
