"""A host-side cache of kernel symbols and types, keyed by BUILD-ID.

For guest kernels whose memory does not carry what introspection needs
(before Linux 6.0 vmcoreinfo does not locate kallsyms; a kernel built
without ``CONFIG_DEBUG_INFO_BTF`` has no BTF), an operator drops files into
``<cache_dir>/<BUILD-ID>/``:

* ``btf``: the kernel's raw BTF (a copy of ``/sys/kernel/btf/vmlinux``
  taken on a machine running that kernel);
* ``System.map``: the kernel's symbol map (Debian ships it in
  ``/boot/System.map-<release>``);
* ``vmlinux``: an ELF image with DWARF (e.g. from ``linux-image-*-dbg``)
  or with a ``.BTF`` section; it provides both.

Files here are trusted (they come from the operator), unlike anything read
from the guest. The BUILD-ID comes from the guest's vmcoreinfo and only
selects the directory; a name that is not plain hex is refused.
"""

import os
import re
import shutil
import struct
import tempfile

import drgn

from sparc_nova import exception
from sparc_nova.introspect import constants

MAX_FILE = 1024 * 1024 * 1024


#: ELF note type of a GNU build-id.
NT_GNU_BUILD_ID = 3


class BuildIdCacheError(exception.SparcError):
    """A file cannot be added to the BUILD-ID cache."""


class BuildIdCache:
    """One cache directory (may not exist: then it holds nothing)."""

    def __init__(self, directory: str | None):
        self.directory = directory

    def entry(self, build_id: str) -> str | None:
        if not self.directory or not re.fullmatch(r'[0-9a-f]{2,64}',
                                                  build_id):
            return None
        path = os.path.join(self.directory, build_id)
        return path if os.path.isdir(path) else None

    def _file(self, build_id: str, name: str) -> str | None:
        entry = self.entry(build_id)
        if entry is None:
            return None
        path = os.path.join(entry, name)
        return path if os.path.isfile(path) else None

    def describe(self, build_id: str) -> str:
        """Where files for ``build_id`` are expected (for messages)."""
        if not self.directory:
            return ('no BUILD-ID cache is configured ([sparc] '
                    'buildid_cache_dir)')
        return 'put them in %s/' % os.path.join(self.directory, build_id)

    def btf(self, build_id: str) -> bytes | None:
        """Raw BTF for ``build_id``: ``btf`` or the ``.BTF`` section of
        ``vmlinux``.
        """
        path = self._file(build_id, 'btf')
        if path:
            with open(path, 'rb') as f:
                return f.read(MAX_FILE)
        path = self._file(build_id, 'vmlinux')
        if path:
            return elf_section(path, '.BTF')
        return None

    def vmlinux(self, build_id: str) -> str | None:
        return self._file(build_id, 'vmlinux')

    def add_vmlinux(self, source) -> tuple[str, str]:
        """File the ELF kernel image read from ``source`` (a path or a
        binary file object) as ``<cache_dir>/<BUILD-ID>/vmlinux``; an
        existing entry is replaced atomically.

        :returns: (BUILD-ID, path written).
        :raises BuildIdCacheError: no cache directory, or ``source`` is no
            ELF image with a GNU build-id note.
        """
        if not self.directory:
            raise BuildIdCacheError('no BUILD-ID cache is configured '
                                    '([sparc] buildid_cache_dir)')
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.vmlinux-', dir=self.directory)
        try:
            with os.fdopen(fd, 'wb') as out:
                if isinstance(source, str):
                    with open(source, 'rb') as f:
                        shutil.copyfileobj(f, out, 1 << 20)
                else:
                    shutil.copyfileobj(source, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            build_id = elf_build_id(tmp)
            if build_id is None:
                raise BuildIdCacheError(
                    '%s is not an ELF kernel image with a GNU build-id note'
                    % getattr(source, 'name', source))
            entry = os.path.join(self.directory, build_id)
            os.makedirs(entry, mode=0o755, exist_ok=True)
            os.chmod(tmp, 0o644)
            dest = os.path.join(entry, 'vmlinux')
            os.replace(tmp, dest)
            tmp = None
            return build_id, dest
        finally:
            if tmp is not None:
                os.unlink(tmp)

    def symbols(self, build_id: str, kerneloffset: int
                ) -> list[drgn.Symbol] | None:
        """Symbols from ``System.map``, relocated by the guest's KASLR
        offset (per-CPU symbols, which are offsets, are not relocated).
        """
        path = self._file(build_id, 'System.map')
        if not path:
            return None
        with open(path, 'r', errors='replace') as f:
            return parse_system_map(f, kerneloffset)


def parse_system_map(lines, kerneloffset: int) -> list[drgn.Symbol]:
    """drgn symbols from System.map lines (``addr type name``)."""
    rows = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            addr = int(parts[0], 16)
        except ValueError:
            continue
        # KASLR moves the kernel image (__START_KERNEL_map + 1 GiB), not
        # per-CPU offsets or the fixmap / vsyscall page above it.
        if constants.X86_64.START_KERNEL_MAP <= addr < \
                constants.X86_64.START_KERNEL_MAP + (1 << 30):
            addr += kerneloffset
        rows.append((addr, parts[1], parts[2]))
    rows.sort()
    out = []
    for i, (addr, code, name) in enumerate(rows):
        size = rows[i + 1][0] - addr if i + 1 < len(rows) else 0
        if size > 1 << 30:
            size = 0
        kind = (drgn.SymbolKind.FUNC if code in 'tT'
                else drgn.SymbolKind.OBJECT)
        binding = (drgn.SymbolBinding.GLOBAL if code.isupper()
                   else drgn.SymbolBinding.LOCAL)
        out.append(drgn.Symbol(name, addr, size, binding, kind))
    return out


def elf_section(path: str, name: str) -> bytes | None:
    """The contents of section ``name`` of a little-endian ELF64 file."""
    with open(path, 'rb') as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b'\x7fELF' or ident[4] != 2:
            return None
        shoff, = struct.unpack_from('<Q', ident, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from('<HHH', ident, 0x3a)
        if shentsize < 64 or shnum == 0 or shnum > 65535:
            return None
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        if len(table) < shentsize * shnum:
            return None
        sections = [struct.unpack_from('<IIQQQQIIQQ', table, i * shentsize)
                    for i in range(shnum)]
        if shstrndx >= shnum:
            return None
        _, _, _, _, str_off, str_size, _, _, _, _ = sections[shstrndx]
        f.seek(str_off)
        strtab = f.read(min(str_size, MAX_FILE))
        for sec in sections:
            sname = strtab[sec[0]:strtab.find(b'\0', sec[0])]
            if sname == name.encode():
                if sec[5] > MAX_FILE:
                    return None
                f.seek(sec[4])
                return f.read(sec[5])
    return None


def elf_build_id(path: str) -> str | None:
    """The GNU build-id of ELF file ``path`` in hex (what vmcoreinfo's
    ``BUILD-ID`` says of the running kernel), or None.
    """
    note = elf_section(path, '.note.gnu.build-id')
    pos = 0
    while note and pos + 12 <= len(note):
        namesz, descsz, ntype = struct.unpack_from('<III', note, pos)
        name_at = pos + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        end = desc_at + (descsz + 3) // 4 * 4
        if end > len(note):
            return None
        if ntype == NT_GNU_BUILD_ID and \
                note[name_at:name_at + namesz] == b'GNU\0' and \
                0 < descsz <= 64:
            return note[desc_at:desc_at + descsz].hex()
        pos = end
    return None
