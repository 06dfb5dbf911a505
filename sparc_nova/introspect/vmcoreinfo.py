"""Find and parse the guest kernel's vmcoreinfo in its physical memory.

vmcoreinfo is the plain-text note the kernel prepares for crash dumps
(``OSRELEASE=...``, ``BUILD-ID=...``, ``SYMBOL(name)=hex``,
``OFFSET(struct.member)=dec``, ``NUMBER(name)=dec``, ``KERNELOFFSET=hex``).
It lies in guest RAM as a page of text and a copy in an ELF note. The
format string in the kernel's .rodata also contains ``OSRELEASE=``; a real
vmcoreinfo is recognised by a ``KERNELOFFSET=`` line with a hex value.

Candidates are only *candidates*: guest user space can plant text that
looks like vmcoreinfo. :mod:`sparc_nova.introspect.kernel` accepts one
only after the kernel itself confirms it (its ``vmcoreinfo_data`` pointer
leads back to the same text and ``init_uts_ns`` carries the same release).
"""

import dataclasses
import re

from sparc_nova import exception
from sparc_nova.introspect import physical

NEEDLE = b'OSRELEASE='
MAX_SIZE = 4096
#: Bound on candidate copies looked at (a hostile guest can plant many).
MAX_CANDIDATES = 64
_LINE = re.compile(rb'^([A-Z_-]+(?:\([A-Za-z0-9_.]+\))?)=(.*)$')


class VmcoreinfoError(exception.SparcError):
    """No usable vmcoreinfo in guest memory."""


@dataclasses.dataclass
class Vmcoreinfo:
    """A parsed vmcoreinfo.

    :ivar raw: the text as found (bytes, up to the first NUL).
    :ivar address: guest physical address it was found at.
    """

    raw: bytes
    address: int
    osrelease: str
    build_id: str
    kerneloffset: int
    symbols: dict[str, int]
    offsets: dict[str, int]
    sizes: dict[str, int]
    lengths: dict[str, int]
    numbers: dict[str, int]
    values: dict[str, str]

    @property
    def phys_base(self) -> int:
        return self.numbers.get('phys_base', 0)

    @property
    def pgtable_l5_enabled(self) -> bool:
        return bool(self.numbers.get('pgtable_l5_enabled', 0))

    @property
    def has_kallsyms(self) -> bool:
        """Linux >= 6.0 exports the kallsyms tables."""
        return all(k in self.symbols for k in (
            'kallsyms_names', 'kallsyms_token_table', 'kallsyms_token_index',
            'kallsyms_num_syms')) and (
            'kallsyms_offsets' in self.symbols or
            'kallsyms_addresses' in self.symbols)

    def summary(self) -> dict:
        return {'osrelease': self.osrelease, 'build_id': self.build_id,
                'kerneloffset': '0x%x' % self.kerneloffset,
                'address': '0x%x' % self.address,
                'kallsyms_in_vmcoreinfo': self.has_kallsyms,
                'pgtable_l5_enabled': self.pgtable_l5_enabled}


def _int(text: bytes, base: int, what: str, address: int) -> int:
    """``text`` as a number that fits in 64 bits (signed or unsigned)."""
    try:
        value = int(text.decode('ascii'), base)
    except (UnicodeDecodeError, ValueError):
        try:
            value = int(text.decode('ascii'), 0)    # 6.12: NUMBER(x)=0x...
        except (UnicodeDecodeError, ValueError):
            raise VmcoreinfoError('vmcoreinfo at 0x%x: %s value %r is not '
                                  'a number' % (address, what, text[:40]))
    if not -(1 << 63) <= value < 1 << 64:
        raise VmcoreinfoError('vmcoreinfo at 0x%x: %s value %r does not '
                              'fit in 64 bits' % (address, what, text[:40]))
    return value


def parse(raw: bytes, address: int = 0) -> Vmcoreinfo:
    """Parse vmcoreinfo text; raise :class:`VmcoreinfoError` when a
    required key is missing or malformed.
    """
    values = {}
    symbols, offsets, sizes, lengths, numbers = {}, {}, {}, {}, {}
    tables = {'SYMBOL': (symbols, 16), 'OFFSET': (offsets, 10),
              'SIZE': (sizes, 10), 'LENGTH': (lengths, 10),
              'NUMBER': (numbers, 10)}
    for line in raw.split(b'\n'):
        if not line:
            continue
        m = _LINE.match(line)
        if not m:
            raise VmcoreinfoError('vmcoreinfo at 0x%x: malformed line %r'
                                  % (address, line[:60]))
        key, val = m.group(1).decode('ascii'), m.group(2)
        if '(' in key:
            kind, name = key[:-1].split('(', 1)
            if kind not in tables:
                continue
            table, base = tables[kind]
            try:
                table[name] = _int(val, base, key, address)
            except VmcoreinfoError:
                if kind == 'SYMBOL':
                    raise
                values[key] = val.decode('ascii', 'replace')
        else:
            values[key] = val.decode('ascii', 'replace')
    for key in ('OSRELEASE', 'BUILD-ID', 'KERNELOFFSET', 'PAGESIZE'):
        if key not in values:
            raise VmcoreinfoError('vmcoreinfo at 0x%x has no %s line'
                                  % (address, key))
    if values['PAGESIZE'] != '4096':
        raise VmcoreinfoError('vmcoreinfo at 0x%x: page size %s is not '
                              'supported (x86-64 4 KiB pages only)'
                              % (address, values['PAGESIZE']))
    build_id = values['BUILD-ID']
    if not re.fullmatch(r'[0-9a-f]{2,64}', build_id):
        raise VmcoreinfoError('vmcoreinfo at 0x%x: BUILD-ID %r is not hex'
                              % (address, build_id[:80]))
    if 'swapper_pg_dir' not in symbols and 'init_top_pgt' not in symbols:
        raise VmcoreinfoError('vmcoreinfo at 0x%x has no page table root '
                              '(SYMBOL(swapper_pg_dir))' % address)
    return Vmcoreinfo(
        raw=raw, address=address, osrelease=values['OSRELEASE'],
        build_id=build_id,
        kerneloffset=_int(values['KERNELOFFSET'].encode(), 16,
                          'KERNELOFFSET', address),
        symbols=symbols, offsets=offsets, sizes=sizes, lengths=lengths,
        numbers=numbers, values=values)


def candidates(memory) -> list[tuple[int, bytes]]:
    """Distinct vmcoreinfo-looking texts in guest memory, as
    ``(address, text)``, at most :data:`MAX_CANDIDATES`.
    """
    return list(iter_candidates(memory))


def phys_base_line(phys_base: int) -> bytes:
    """The line x86-64 Linux writes for ``phys_base`` (``%ld``), with the
    newline that ends the line before it.
    """
    signed = phys_base - (1 << 64) if phys_base >= 1 << 63 else phys_base
    return b'\nNUMBER(phys_base)=%d\n' % signed


def iter_candidates(memory, phys_base: int | None = None):
    """:func:`candidates`, lazily (the scan stops when the caller does).

    :param phys_base: when given, only the texts that hold this value's
        ``NUMBER(phys_base)`` line, found by that line: the kernel's
        ``phys_base`` as the vCPUs' registers give it, which a guest
        program that cannot learn where the kernel lies cannot put in a
        forgery (so forgeries cannot use up the :data:`MAX_CANDIDATES`
        ahead of the kernel's own text).
    """
    seen = set()
    count = 0
    if phys_base is None:
        starts = physical.find(memory, NEEDLE)
        line = None
    else:
        line = phys_base_line(phys_base)
        starts = _starts_before(memory, physical.find(memory, line))
    for addr in starts:
        text = _text_at(memory, addr)
        if not re.search(rb'\nKERNELOFFSET=[0-9a-fA-F]+\n', text):
            continue
        if line is not None and line not in text:
            continue
        if text in seen:
            continue
        seen.add(text)
        yield addr, text
        count += 1
        if count >= MAX_CANDIDATES:
            break


def _text_at(memory, addr: int) -> bytes:
    """The NUL-terminated text at ``addr``, at most :data:`MAX_SIZE`
    bytes.
    """
    try:
        text = memory.read(addr, MAX_SIZE)
    except physical.PhysicalAddressError:
        # The text may end close to the end of RAM.
        text = b''
        for n in (2048, 1024, 512):
            try:
                text = memory.read(addr, n)
                break
            except physical.PhysicalAddressError:
                continue
    return text.split(b'\0', 1)[0]


def _starts_before(memory, hits):
    """For each address of ``hits``, where the text that holds it starts:
    the last :data:`NEEDLE` in the :data:`MAX_SIZE` bytes before it (and
    in the same RAM range).
    """
    for hit in hits:
        low = next((start for start, end in memory.ranges
                    if start <= hit < end), hit)
        first = max(low, hit - MAX_SIZE)
        try:
            window = memory.read(first, hit - first)
        except physical.PhysicalAddressError:
            continue
        at = window.rfind(NEEDLE)
        if at >= 0:
            yield first + at
