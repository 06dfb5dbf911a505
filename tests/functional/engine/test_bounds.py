"""Resource bounds on hostile checkpoints, through the real CLI: a real
checkpoint patched to claim a 1 TiB RAM block, a stream of millions of
tiny sections, and a BTF blob of millions of types (the guest's own BTF
broken, a huge one in the BUILD-ID cache).

Each command runs with an address-space limit and a wall-clock timeout;
it must fail with exit 2 and a message naming the file and what is
wrong, within generous bounds of time and peak memory, writing nothing.
The measurements are printed (``-s``) and recorded in doc/hardening.md.
"""

import os
import shutil
import struct

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import rewrite
from sparc_nova.engine import physview
from sparc_nova.introspect import kernel as kernel_mod
from tests.functional import bounded
from tests.functional.engine import scenario as scen
from tests import streamgen
from tools.fuzz import btfgen

pytestmark = pytest.mark.slow

#: RLIMIT_AS of the command (its sandbox child sets its own limits).
MEMORY_MIB = 3072
TIMEOUT = 600
#: Generous bounds: this is about not blowing up, not about speed.
MAX_SECONDS = 180
MAX_PEAK_MIB = 1536
TiB = 1 << 40


@pytest.fixture(scope='module')
def saved(make_guest, module_dir):
    g = make_guest(memory_mib=256, vcpus=1)
    path = os.path.join(module_dir, 'guest.save')
    g.save(path)
    g.destroy()
    return path


def refused(path, *args, command='scrub', config=None):
    """Run ``sparc checkpoint COMMAND path``; assert a bounded, clean
    refusal naming ``path`` that writes nothing. Returns the outcome.
    """
    directory = os.path.dirname(path)
    before = scen.sha256(path)
    listing = sorted(os.listdir(directory))
    out = path + '.out'
    argv = ['--config-file', config] if config else []
    argv += ['checkpoint', command, path]
    if command == 'scrub':
        argv += ['--output', out, '--exclude-process', 'pid:2']
    res = bounded.run_sparc(argv + list(args), MEMORY_MIB, TIMEOUT)
    print('%s %s: exit %s in %.1f s, peak %.0f MiB: %s' % (
        command, os.path.basename(path), res.code, res.seconds,
        res.peak_mib, res.stderr.strip()[-300:]))
    assert res.code == 2, res.stderr[-3000:]
    assert 'sparc: error: ' in res.stderr and path in res.stderr
    assert 'Traceback' not in res.stderr and 'MemoryError' not in res.stderr
    assert res.seconds < MAX_SECONDS
    assert res.peak_mib < MAX_PEAK_MIB
    assert scen.sha256(path) == before
    assert sorted(os.listdir(directory)) == listing
    return res


def _patch_ram_claim(src, dst, pc_ram):
    """Copy ``src`` with ``pc.ram`` claiming ``pc_ram`` bytes (and the
    RAM section's total following it).
    """
    with checkpoint.open_checkpoint(src) as ck:
        base = ck.info()['stream_offset']
    shutil.copy(src, dst)
    with open(dst, 'r+b') as f:
        f.seek(base)
        head = f.read(1 << 16)
        total_at = head.index(b'\x03ram') + 12
        total = struct.unpack_from('>Q', head, total_at)[0]
        flags = total & 0xfff
        length_at = head.index(b'\x06pc.ram', total_at) + 7
        length = struct.unpack_from('>Q', head, length_at)[0]
        new_total = (total & ~0xfff) - length + pc_ram
        f.seek(base + total_at)
        f.write(struct.pack('>Q', new_total | flags))
        f.seek(base + length_at)
        f.write(struct.pack('>Q', pc_ram))
    return new_total


def test_terabyte_ram_claim(saved, module_dir):
    """pc.ram claiming 1 TiB: beyond the 1 TiB limit with the other
    blocks; and exactly 1 TiB in all (within the limit, but the file
    cannot back it).
    """
    over = os.path.join(module_dir, 'tib-over.save')
    assert _patch_ram_claim(saved, over, TiB) > TiB
    res = refused(over)
    assert 'more than the limit' in res.stderr
    refused(over, command='info')
    within = os.path.join(module_dir, 'tib-within.save')
    with checkpoint.open_checkpoint(saved) as ck:
        others = sum(b['length'] for n, b in ck.info()['ram_blocks'].items()
                     if n != 'pc.ram')
    assert _patch_ram_claim(saved, within, TiB - others) == TiB
    res = refused(within)
    assert 'can hold at most' in res.stderr
    refused(within, command='info')


def test_millions_of_sections(module_dir):
    """Two million empty RAM sections (14 bytes each)."""
    b = streamgen.StreamBuilder({'pc.ram': 256 * streamgen.PAGE})
    full = b.build([[('pc.ram', p, 0) for p in range(256)]])
    part = b'\x02' + struct.pack('>IQ', 2, streamgen.EOS) + b.footer(2)
    end = full.index(b'\x03' + struct.pack('>I', 2))
    path = os.path.join(module_dir, 'sections.save')
    with open(path, 'wb') as f:
        f.write(streamgen.libvirt_header(1024) + full[:end])
        f.write(part * 2000000)
        f.write(full[end:])
    for command in ('scrub', 'info'):
        res = refused(path, command=command)
        assert 'more than 1000000 sections' in res.stderr


def _break_guest_btf(src, dst):
    """Copy ``src`` with the magic of the guest's own BTF zeroed; returns
    the kernel's BUILD-ID.
    """
    with checkpoint.open_checkpoint(src) as ck:
        mem = physview.CheckpointMemory(ck)
        try:
            kernel = kernel_mod.open_kernel(mem)
            paddr = kernel.phys(kernel.symbol_address('__start_BTF'))
            page = bytearray(mem.read(paddr & ~0xfff, 4096))
            build_id = kernel.build_id
        finally:
            mem.close()
        page[paddr & 0xfff:(paddr & 0xfff) + 2] = b'\0\0'
        rewrite.rewrite_pages(ck, {paddr >> 12: bytes(page)}, output=dst)
    return build_id


@pytest.mark.parametrize('count', [2000000, 999990],
                         ids=['over-the-cap', 'at-the-cap'])
def test_millions_of_btf_types(saved, module_dir, tmp_path, count):
    """Over the one-million cap the parser stops at the cap; just under
    it, a million types parse (in the sandbox) and the missing kernel
    structures are reported.
    """
    path = os.path.join(module_dir, 'btf-%d.save' % count)
    build_id = _break_guest_btf(saved, path)
    cache = os.path.join(module_dir, 'cache-%d' % count)
    entry = scen.buildid_cache_entry(cache, build_id)
    with open(os.path.join(entry, 'btf'), 'wb') as f:
        f.write(btfgen.many_types(count))
    os.chmod(os.path.join(entry, 'btf'), 0o644)
    config = tmp_path / 'sparc.conf'
    config.write_text('[sparc]\nbuildid_cache_dir = %s\n' % cache)
    for command in ('scrub', 'ps'):
        res = refused(path, command=command, config=config)
        if count > 1000000:
            assert 'more than 1000000 types' in res.stderr
            assert str(entry) in res.stderr
        else:
            assert 'no struct task_struct in BTF (BUILD-ID cache)' \
                in res.stderr
    os.unlink(path)
    shutil.rmtree(cache)
