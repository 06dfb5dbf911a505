"""Hostile or corrupt guest memory: a clear error, nothing written, no
hang. Each test corrupts a copy of a real checkpoint, then scrubs it; the
walker fuzzing regression replays hostile words over the checkpoint in
memory instead (:mod:`tools.fuzz.walker_targets`).
"""

import glob
import json
import os
import re

import drgn
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import rewrite
from sparc_nova.engine import physview
from sparc_nova.introspect import kernel as kernel_mod
from sparc_nova.introspect import physical
from tests.functional.engine import scenario as scen
from tools.fuzz import walker_targets

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def sc(make_guest, guest_image, module_dir):
    s = scen.build(make_guest, guest_image, module_dir)
    s.guest.destroy()
    return s


def corrupt(sc, name, edit):
    """A copy of the scenario checkpoint with guest memory changed by
    ``edit(kernel, memory) -> {paddr: bytes}``.
    """
    out = os.path.join(sc.workdir, name + '.save')
    with checkpoint.open_checkpoint(sc.save_path) as ck:
        mem = physview.CheckpointMemory(ck)
        try:
            kernel = kernel_mod.open_kernel(mem)
            writes = edit(kernel, mem)
            pages = {}
            for paddr, data in writes.items():
                pfn = paddr >> 12
                page = pages.setdefault(pfn, bytearray(
                    mem.read(pfn << 12, physical.PAGE_SIZE)))
                off = paddr & 0xfff
                assert off + len(data) <= physical.PAGE_SIZE
                page[off:off + len(data)] = data
        finally:
            mem.close()
        rewrite.rewrite_pages(ck, {p: bytes(b) for p, b in pages.items()},
                              output=out)
    return out


def scrub_fails(sc, path):
    """Scrub ``path``; assert exit 2, the file unchanged, no output."""
    before = scen.sha256(path)
    out = path + '.out'
    res = scen.sparc('checkpoint', 'scrub', path, '--output', out,
                     '--exclude-process', 'pid:%d' % sc.pids['simple'],
                     check=2)
    assert scen.sha256(path) == before
    assert not os.path.exists(out)
    assert not [f for f in os.listdir(sc.workdir) if '.sparc-' in f]
    assert path in res.stderr
    return res.stderr


def test_corrupt_vmcoreinfo(sc):
    """The page table root in every vmcoreinfo copy moved by one page:
    nothing the kernel's own pointers say matches any more.
    """
    def edit(kernel, mem):
        writes = {}
        for key in (b'SYMBOL(swapper_pg_dir)=', b'SYMBOL(init_top_pgt)='):
            for addr in physical.find(mem, key):
                text = mem.read(addr, 64)
                value = text[len(key):text.index(b'\n')]
                if not all(c in b'0123456789abcdef' for c in value):
                    continue
                bad = b'%x' % (int(value, 16) + 0x1000)
                writes[addr + len(key)] = bad[-len(value):]
        assert writes
        return writes
    err = scrub_fails(sc, corrupt(sc, 'vmcoreinfo', edit))
    assert 'vmcoreinfo' in err


def test_no_vmcoreinfo(sc):
    def edit(kernel, mem):
        return {a: b'XSRELEASE=' for a in physical.find(
            mem, b'OSRELEASE=')}
    err = scrub_fails(sc, corrupt(sc, 'novmcoreinfo', edit))
    assert 'no vmcoreinfo' in err


def test_forged_vmcoreinfo_with_the_image_outside_ram_is_skipped(sc):
    """A vmcoreinfo-looking text ahead of the kernel's own (any guest
    process can write one into its pages) whose phys_base puts the kernel
    image outside RAM: that candidate is refused like any other that does
    not check out, and the kernel's own copy is used.
    """
    found = {}

    def edit(kernel, mem):
        real = kernel.vmcoreinfo
        text = re.sub(rb'NUMBER\(phys_base\)=-?\d+',
                      b'NUMBER(phys_base)=%d' % (1 << 46), real.raw)
        assert text != real.raw and len(text) < physical.PAGE_SIZE
        # The first megabyte is reserved by the kernel: nothing it or the
        # scrub reads lives at 0x50000, and it comes before the real copy.
        at = 0x50000
        assert at < real.address and mem.is_ram([at >> 12])[0]
        found['real'] = real.address
        return {at: text + b'\0'}
    path = corrupt(sc, 'forgedvmcoreinfo', edit)
    out = path + '.out'
    res = scen.sparc('checkpoint', 'scrub', path, '--output', out,
                     '--format', 'json',
                     '--exclude-process', 'pid:%d' % sc.pids['simple'],
                     check=0)
    rep = json.loads(res.stdout)
    assert rep['kernel']['address'] == '0x%x' % found['real']
    assert rep['verification']['result'] == 'ok'
    os.unlink(out)


def test_corrupt_btf_header(sc):
    def edit(kernel, mem):
        start = kernel.symbol_address('__start_BTF')
        return {kernel.phys(start): b'\x00\x00'}
    err = scrub_fails(sc, corrupt(sc, 'btfmagic', edit))
    assert 'BTF' in err and 'magic' in err and 'BUILD-ID' in err


def test_corrupt_btf_types(sc):
    def edit(kernel, mem):
        start = kernel.symbol_address('__start_BTF')
        # type_len (header bytes 12..15): far past the end of the blob.
        return {kernel.phys(start + 12): b'\xff\xff\xff\x7f'}
    err = scrub_fails(sc, corrupt(sc, 'btftypes', edit))
    assert 'BTF' in err and 'outside' in err


def test_corrupt_task_list(sc):
    def edit(kernel, mem):
        head = kernel.prog['init_task'].tasks.address_of_().value_()
        return {kernel.phys(head): (0xdead000000000100).to_bytes(8,
                                                                 'little')}
    err = scrub_fails(sc, corrupt(sc, 'tasklist', edit))
    assert 'task list' in err


def test_cyclic_task_list(sc):
    """A cycle that never returns to the head (prev pointers made
    consistent, so only the cycle check can catch it).
    """
    def edit(kernel, mem):
        prog = kernel.prog
        head = prog['init_task'].tasks.address_of_().value_()
        first = prog.read_u64(head)
        second = prog.read_u64(first)
        third = prog.read_u64(second)
        # first -> second -> third -> second ...
        return {kernel.phys(third): second.to_bytes(8, 'little'),
                kernel.phys(second + 8): third.to_bytes(8, 'little')}
    err = scrub_fails(sc, corrupt(sc, 'cycle', edit))
    assert 'task list' in err and 'cycle' in err


def test_cyclic_thread_list(sc):
    def edit(kernel, mem):
        prog = kernel.prog
        from drgn.helpers.linux import pid as pid_helpers
        task = pid_helpers.find_task(prog, sc.pids['threads'])
        head = task.signal.thread_head.address_of_().value_()
        first = prog.read_u64(head)
        second = prog.read_u64(first)
        return {kernel.phys(second): first.to_bytes(8, 'little'),
                kernel.phys(first + 8): second.to_bytes(8, 'little')}
    err = scrub_fails(sc, corrupt(sc, 'threadcycle', edit))
    assert 'threads of pid %d' % sc.pids['threads'] in err


def test_missing_kallsyms_needs_cache(sc, tmp_path):
    """A kernel whose vmcoreinfo does not locate kallsyms (as before 6.0)
    needs the BUILD-ID cache; with it, the scrub works.
    """
    def edit(kernel, mem):
        writes = {}
        for addr in physical.find(mem, b'SYMBOL(kallsyms_names)'):
            writes[addr] = b'SYMBOL(kallsyms_nameX)'
        assert writes
        return writes
    path = corrupt(sc, 'nokallsyms', edit)
    err = scrub_fails(sc, path)
    assert 'kallsyms' in err and 'System.map' in err
    # Debian ships System.map in the -dbg package; build the same file
    # from the intact checkpoint's own kallsyms.
    with checkpoint.open_checkpoint(sc.save_path) as ck:
        mem = physview.CheckpointMemory(ck)
        try:
            kernel = kernel_mod.open_kernel(mem)
            build_id = kernel.build_id
            lines = []
            for sym in kernel.prog.symbols():
                addr = sym.address
                if addr >= 0xffffffff80000000:
                    addr -= kernel.vmcoreinfo.kerneloffset
                code = 'T' if sym.kind == drgn.SymbolKind.FUNC else 'D'
                lines.append('%016x %s %s\n' % (addr, code, sym.name))
        finally:
            mem.close()
    root = os.path.join(sc.workdir, 'buildid-cache')
    cache = scen.buildid_cache_entry(root, build_id)
    with open(os.path.join(cache, 'System.map'), 'w') as f:
        f.write(''.join(lines))
    os.chmod(os.path.join(cache, 'System.map'), 0o644)
    conf = tmp_path / 'sparc.conf'
    conf.write_text('[sparc]\nbuildid_cache_dir = %s\n' % root)
    out = path + '.cached'
    res = scen.sparc('--config-file', conf, 'checkpoint', 'scrub', path,
                     '--output', out, '--format', 'json',
                     '--exclude-process', 'pid:%d' % sc.pids['simple'],
                     check=0)
    assert 'System.map (BUILD-ID cache)' in res.stdout
    os.unlink(out)


def _task(kernel, pid):
    from drgn.helpers.linux import pid as pid_helpers
    return pid_helpers.find_task(kernel.prog, pid)


def _pipe_of(kernel, pid):
    """The pipe_inode_info of the idle pipe the ``pipe`` workload holds."""
    from drgn.helpers.linux import fs as fs_helpers
    for _, file in fs_helpers.for_each_file(_task(kernel, pid)):
        # i_pipe shares a union with i_cdev: check the mode first.
        if file.f_inode.i_mode.value_() & 0o170000 == 0o010000:
            return file.f_inode.i_pipe
    raise AssertionError('pid %d holds no pipe' % pid)


def test_pipe_ring_overrun(sc):
    """A pipe whose head runs past its ring: the IPC walk stops with an
    error naming the pipe (no slot outside the ring is read or scrubbed).
    """
    def edit(kernel, mem):
        pipe = _pipe_of(kernel, sc.pids['pipe'])
        head = (pipe.tail.value_() + pipe.ring_size.value_() + 5) & 0xffffffff
        return {kernel.phys(pipe.head.address_): head.to_bytes(4, 'little')}
    err = scrub_fails(sc, corrupt(sc, 'pipering', edit))
    assert 'pipe:[' in err and 'in use' in err


def test_huge_fd_table(sc):
    """An fd table claiming two billion slots is refused before anything
    the size of it is read.
    """
    def edit(kernel, mem):
        fdt = _task(kernel, sc.pids['control']).files.fdt
        return {kernel.phys(fdt.max_fds.address_):
                (0x7fffffff).to_bytes(4, 'little')}
    err = scrub_fails(sc, corrupt(sc, 'fdtable', edit))
    assert 'pid %d: fd table claims' % sc.pids['control'] in err


WALKER_CORPUS = os.path.join(os.path.dirname(__file__), '..', '..',
                             'fuzz_corpus', 'walkers')


@pytest.fixture(scope='module')
def walkers(sc):
    """The scenario checkpoint's kernel over an overlay, with the words a
    clean plan of every selected workload reads.
    """
    w = walker_targets.Walkers(sc.save_path, sc.selectors(),
                               work_dir=sc.workdir)
    yield w
    w.close()


@pytest.mark.parametrize(
    'path', sorted(glob.glob(os.path.join(WALKER_CORPUS, '*.json'))),
    ids=os.path.basename)
def test_walker_reproducers(walkers, path):
    """Every reproducer the walker fuzzing found plans or fails cleanly,
    within the time limit, with a plan inside RAM.
    """
    with open(path) as f:
        doc = json.load(f)
    result = walkers.check(walker_targets.resolve(walkers, doc))
    assert result in doc['expect'], result


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data())
def test_walkers_hostile_words(walkers, data):
    """A few of the words the walkers read, with hostile values: a plan
    inside RAM or a clean error, within the time limit.
    """
    walkers.check(walker_targets.build_overrides(
        walkers, lambda lo, hi: data.draw(st.integers(lo, hi))))


def test_walkers_clean_after_fuzzing(walkers):
    """The overlay leaves nothing behind: the clean plan is unchanged."""
    assert len(walkers.words) > 1000
    _, before = walkers.clean
    rep, after = walkers.plan()
    assert {k: v.tolist() for k, v in after.scrubbed.items()} == \
        {k: v.tolist() for k, v in before.scrubbed.items()}
    assert [(f.paddr, f.new) for f in after.fields] == \
        [(f.paddr, f.new) for f in before.fields]
