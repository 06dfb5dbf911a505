"""A 5.10 guest's kallsyms tables, found by scanning its kernel image, and
look-alike tables elsewhere in its memory: a look-alike is never used.

The look-alike is a copy of the kernel's own tables that moves
``init_task`` (a program that read it would walk a task list of the
guest's making) but keeps every symbol vmcoreinfo names, put
into RAM above the kernel image the way a guest program can fill its own
pages. With the kernel's tables intact the scan never reaches it; with
them broken the scan meets the look-alike first and refuses it, because
it is not in read-only kernel memory.
"""

import os
import struct

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import rewrite
from sparc_nova.engine import physview
from sparc_nova.introspect import kallsyms_finder
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import vmcoreinfo
from tests.functional.testbed import build
from tests.functional.testbed import guest as guest_mod
from tests.functional.testbed import kernels

pytestmark = pytest.mark.slow

PAGE = 4096


@pytest.fixture(scope='module')
def saved(work_root, module_dir, libvirt_daemons):
    image = build.build_guest(os.path.join(work_root, 'image-5.10'),
                              kernel=kernels.debian_kernel('5.10'))
    # Without KASLR the kernel lies at 16 MiB, so there is RAM above it
    # for the look-alike in every run.
    g = guest_mod.Guest(image, memory_mib=512,
                        cmdline=guest_mod.DEFAULT_CMDLINE + ' nokaslr')
    try:
        g.start(timeout=300)
        path = os.path.join(module_dir, 'k510.save')
        g.suspend()
        g.save(path)
    finally:
        g.destroy()
    return path


def _model(path):
    ck = checkpoint.open_checkpoint(path)
    mem = physview.CheckpointMemory(ck)
    addr, text = next(vmcoreinfo.iter_candidates(mem))
    k = kernel_mod.GuestKernel(mem, vmcoreinfo.parse(text, addr))
    return ck, mem, k


def _phys(k, va):
    return va - k.consts.START_KERNEL_MAP + k.vmcoreinfo.phys_base


def _patched(ck, mem, writes: dict[int, bytes], out: str) -> str:
    """Write ``{guest physical address: bytes}`` into a copy ``out``."""
    pages = {}
    for pa, data in writes.items():
        for i in range(len(data)):
            pfn = (pa + i) // PAGE
            if pfn not in pages:
                pages[pfn] = bytearray(mem.read(pfn * PAGE, PAGE))
            pages[pfn][(pa + i) % PAGE] = data[i]
    rewrite.rewrite_pages(ck, {p: bytes(b) for p, b in pages.items()},
                          output=out).verify()
    return out


def _symbol_index(k, tables, name: bytes) -> int:
    """Position of symbol ``name`` in the tables (decoded here)."""
    raw = k._read_kernel_image(tables.token_index, 512)
    index = struct.unpack('<256H', raw)
    table = k._read_kernel_image(tables.token_table,
                                 tables.token_index - tables.token_table)
    tokens = [table[i:table.index(b'\0', i)] for i in index]
    names = k._read_kernel_image(tables.names,
                                 tables.markers - tables.names)
    pos = 0
    for i in range(tables.count):
        n = names[pos]
        if b''.join(tokens[b] for b in names[pos + 1:pos + 1 + n])[1:] \
                == name:
            return i
        pos += 1 + n
    raise LookupError(name)


def _look_alike(k, tables):
    """(guest physical address, bytes) of a copy of the tables that puts
    ``init_task`` 1 MiB away from the real one (every symbol vmcoreinfo
    names stays right), placed 64 MiB above them.
    """
    lo, hi = kernel_mod._table_span(tables)
    data = bytearray(k._read_kernel_image(lo, hi - lo))
    at = tables.offsets - lo + 4 * _symbol_index(k, tables, b'init_task')
    offset, = struct.unpack_from('<i', data, at)
    # Absolute-per-CPU encoding: address = relative_base - 1 - offset.
    struct.pack_into('<i', data, at, offset - 0x100000)
    return _phys(k, lo) + (64 << 20), bytes(data)


def test_symbols_come_from_the_scan(saved):
    ck, mem, _ = _model(saved)
    with ck:
        k = kernel_mod.open_kernel(mem)
        assert k.sources.symbols == \
            'kallsyms (guest memory, located by scan)'
        assert k.symbol_address('_stext') == \
            k.vmcoreinfo.symbols['_stext']


def test_a_look_alike_above_the_kernel_is_never_reached(saved, module_dir):
    ck, mem, k = _model(saved)
    with ck:
        tables = kallsyms_finder.find_tables(
            k._read_kernel_image, k.vmcoreinfo.symbols['_stext'])[0]
        init_task = kernel_mod.open_kernel(mem).symbol_address('init_task')
        pa, data = _look_alike(k, tables)
        out = _patched(ck, mem, {pa: data},
                       os.path.join(module_dir, 'planted.save'))
    ck, mem, _ = _model(out)
    with ck:
        k = kernel_mod.open_kernel(mem)
        assert k.symbol_address('init_task') == init_task


def test_a_look_alike_is_refused_when_the_real_tables_are_broken(
        saved, module_dir):
    ck, mem, k = _model(saved)
    with ck:
        tables = kallsyms_finder.find_tables(
            k._read_kernel_image, k.vmcoreinfo.symbols['_stext'])[0]
        pa, data = _look_alike(k, tables)
        # The kernel's own token index loses its first entry's 0: no
        # longer a table.
        broken = _phys(k, tables.token_index)
        out = _patched(ck, mem, {pa: data, broken: b'\x01\x00'},
                       os.path.join(module_dir, 'broken.save'))
    ck, mem, _ = _model(out)
    with ck:
        with pytest.raises(kernel_mod.MissingKernelInfo,
                           match='not read-only kernel memory'):
            kernel_mod.open_kernel(mem)
