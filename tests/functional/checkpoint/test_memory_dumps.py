"""The other memory checkpoints a libvirt user makes, on one real guest
(Debian 6.1, 256 MiB, pc): QEMU's ELF memory dump (``virsh dump
--memory-only --format elf``), ``extract-ram --format elf`` compared with
it, and an external memory snapshot (``virsh snapshot-create-as
--memspec file=MEM,snapshot=external``).

The guest boots once and runs one selected process (``simple``) and a
control; it is paused, dumped by QEMU (ELF, and kdump-zlib, kdump-lzo and
kdump-snappy where QEMU writes them) and saved while paused, so the dumps
and the save image hold the same memory. It is then restored and its
external snapshot taken.
"""

import json
import os
import re
import shutil
import struct

import libvirt
import pytest

from sparc_nova.engine import planner
from sparc_nova.introspect import btf
from sparc_nova.introspect import btf_finder
from sparc_nova.introspect import objects
from tests.functional.engine import scenario as scen
from tests.functional.testbed import elfdump

pytestmark = pytest.mark.slow

SELECTED = ('simple',)
KDUMP_FORMATS = {
    'zlib': libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_KDUMP_ZLIB,
    'lzo': libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_KDUMP_LZO,
    'snappy': libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_KDUMP_SNAPPY}
#: The Python library each compression needs, when it is not zlib.
KDUMP_LIBRARY = {'lzo': ('lzo', 'python-lzo'),
                 'snappy': ('cramjam', 'cramjam')}


class Files:
    """The files made from the one guest."""

    def __init__(self, guest, image, workdir, pids):
        self.guest = guest
        self.image = image
        self.workdir = workdir
        self.pids = pids
        self.dump = os.path.join(workdir, 'guest.elf')
        self.kdumps = {c: os.path.join(workdir, 'guest.kdump-%s' % c)
                       for c in KDUMP_FORMATS}
        self.save = os.path.join(workdir, 'guest.save')
        self.snapshot_mem = os.path.join(workdir, 'snapshot.mem')
        self.kdump_errors = {}

    def marker(self, name: str) -> str:
        return self.image.marker(scen.MARKERS[name])

    def selectors(self):
        return ['pid:%d' % self.pids[n] for n in SELECTED]


@pytest.fixture(scope='module')
def files(make_guest, guest_image, module_dir):
    g = make_guest(memory_mib=256, machine='pc')
    pids = {'simple': g.start_workload('hold 1 --pages 16'),
            'control': g.start_workload('hold 4')}
    f = Files(g, guest_image, module_dir, pids)
    g.suspend()
    g.dump_memory(f.dump)
    for comp, fmt in KDUMP_FORMATS.items():
        try:
            g.dom.coreDumpWithFormat(f.kdumps[comp], fmt,
                                     libvirt.VIR_DUMP_MEMORY_ONLY)
        except libvirt.libvirtError as e:
            f.kdump_errors[comp] = str(e)
    g.save(f.save)
    g.restore(f.save)
    g.resume()
    g.wait_for(r'HEARTBEAT \d+', timeout=60)
    snap = g.dom.snapshotCreateXML(
        "<domainsnapshot><name>ext1</name><memory snapshot='external' "
        "file='%s'/></domainsnapshot>" % f.snapshot_mem, 0)
    f.snapshot = snap
    yield f
    try:
        snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    except libvirt.libvirtError:
        pass


def ps(path: str) -> list[tuple[int, str]]:
    res = scen.sparc('checkpoint', 'ps', path, '--format', 'json', check=0)
    return sorted((p['pid'], p['comm'])
                  for p in json.loads(res.stdout)['processes'])


def markers(path: str, *names, files) -> dict:
    args = ['checkpoint', 'verify', path, '--format', 'json']
    for n in names:
        args += ['--marker', files.marker(n)]
    res = scen.sparc(*args)
    return {n: m['in_memory'] for n, m in
            zip(names, json.loads(res.stdout)['markers'])}


def test_elf_dump_is_a_checkpoint(files):
    info = json.loads(scen.sparc('checkpoint', 'info', files.dump,
                                 '--format', 'json', check=0).stdout)
    assert info['kind'] == 'elf-dump'
    assert info['elf']['segments']
    # The vCPUs of QEMU's notes are the save image's (same paused guest).
    saved = json.loads(scen.sparc('checkpoint', 'info', files.save,
                                  '--format', 'json', check=0).stdout)
    keys = ('rip', 'rsp', 'cr0', 'cr3', 'cr4', 'cpl', 'long_mode',
            'gs_base', 'kernel_gs_base')
    assert len(info['vcpus']) == 2
    assert [[c[k] for k in keys] for c in info['vcpus']] == \
        [[c[k] for k in keys] for c in saved['vcpus']]
    # ps on the dump lists what it lists on the save image of the same
    # paused guest.
    listed = ps(files.dump)
    assert listed == ps(files.save)
    pids = {pid for pid, _ in listed}
    assert set(files.pids.values()) <= pids
    scen.sparc('checkpoint', 'deps', files.dump, check=0)
    assert markers(files.dump, 'simple', 'control', files=files) == \
        markers(files.save, 'simple', 'control', files=files)


def _scrub_dump(files, path: str, name: str) -> str:
    """``sparc checkpoint scrub`` of the memory dump ``path`` into
    ``NAME`` in the work directory; checks the report (verified, no kill
    planted: nothing resumes from a dump) and returns the output's path.
    """
    out = os.path.join(files.workdir, name)
    report_path = os.path.join(files.workdir, name + '.report.json')
    args = ['checkpoint', 'scrub', path, '--output', out, '--report',
            report_path]
    for sel in files.selectors():
        args += ['--exclude-process', sel]
    scen.sparc(*args, check=0)
    with open(report_path) as f:
        report = json.load(f)
    assert report['verification']['result'] == 'ok'
    assert planner.NO_RESTORE_NOTE in report['notes']
    assert report['processes']
    assert all('kill' not in p for p in report['processes'])
    assert report['threads_killed'] == 0
    return out


def test_elf_dump_scrubbed(files):
    out = _scrub_dump(files, files.dump, 'scrubbed.elf')
    assert os.path.getsize(out) == os.path.getsize(files.dump)
    found = markers(out, 'simple', 'control', files=files)
    assert found['simple'] == 0
    assert found['control'] > 0
    # A raw scan of the whole file, not only guest memory.
    with open(out, 'rb') as f:
        data = f.read()
    assert files.marker('simple').encode() not in data
    assert files.marker('control').encode() in data
    assert ps(out) == ps(files.dump)
    os.unlink(out)


def test_elf_dump_scrubbed_in_place(files):
    path = os.path.join(files.workdir, 'inplace.elf')
    shutil.copyfile(files.dump, path)
    args = ['checkpoint', 'scrub', path, '--in-place', '--format', 'json']
    for sel in files.selectors():
        args += ['--exclude-process', sel]
    rep = json.loads(scen.sparc(*args, check=0).stdout)
    assert rep['rewrite']['in_place'] and rep['output'] == path
    assert planner.NO_RESTORE_NOTE in rep['notes']
    with open(path, 'rb') as f:
        data = f.read()
    assert files.marker('simple').encode() not in data
    assert files.marker('control').encode() in data
    assert len(data) == os.path.getsize(files.dump)
    assert not [f for f in os.listdir(files.workdir) if '.sparc-' in f]
    os.unlink(path)


def _kdump(files, comp: str) -> str | None:
    """The kdump-``comp`` dump, or None when there is none to read here,
    after checking why: QEMU was built without that compression (Debian
    12's QEMU 7.2 writes kdump-zlib only: "unsupported dumpformat"), or
    the library its pages need is missing and our refusal names it.
    """
    if comp in files.kdump_errors:
        assert 'unsupported dumpformat' in files.kdump_errors[comp], \
            files.kdump_errors[comp]
        return None
    path = files.kdumps[comp]
    with open(path, 'rb') as f:
        # libvirt hands QEMU a pipe: the flattened layout.
        assert f.read(12) == b'makedumpfile'
    module, package = KDUMP_LIBRARY.get(comp, (None, None))
    if module:
        try:
            __import__(module)
        except ImportError:
            res = scen.sparc('checkpoint', 'info', path, check=2)
            assert package in res.stderr
            return None
    return path


def _raw(path: str, out: str) -> bytes:
    scen.sparc('checkpoint', 'extract-ram', path, out, check=0)
    with open(out, 'rb') as f:
        data = f.read()
    os.unlink(out)
    return data


@pytest.mark.parametrize('comp', list(KDUMP_FORMATS))
def test_kdump_is_a_checkpoint(files, comp):
    path = _kdump(files, comp)
    if path is None:
        return
    info = json.loads(scen.sparc('checkpoint', 'info', path, '--format',
                                 'json', check=0).stdout)
    elf = json.loads(scen.sparc('checkpoint', 'info', files.dump,
                                '--format', 'json', check=0).stdout)
    assert info['kind'] == 'kdump-compressed'
    assert info['kdump']['layout'] == 'flattened'
    assert info['kdump']['compression'] == comp
    # QEMU writes the VMCOREINFO note into both when the guest has the
    # vmcoreinfo device.
    assert info['kdump']['vmcoreinfo'] == elf['elf']['vmcoreinfo']
    # The same guest-physical ranges and vCPUs as QEMU's ELF dump.
    assert info['guest_ram'] == elf['guest_ram']
    assert info['vcpus'] == elf['vcpus']
    listed = ps(path)
    assert listed == ps(files.dump) == ps(files.save)
    assert set(files.pids.values()) <= {pid for pid, _ in listed}
    scen.sparc('checkpoint', 'deps', path, check=0)
    found = markers(path, 'simple', 'control', files=files)
    assert found == markers(files.dump, 'simple', 'control', files=files)
    assert found['simple'] > 0 and found['control'] > 0
    # extract-ram of the kdump and of the ELF dump: the same bytes.
    raw = os.path.join(files.workdir, 'kdump.raw')
    ours = _raw(path, raw)
    assert len(ours) >= 256 << 20
    assert ours == _raw(files.dump, raw)


@pytest.mark.parametrize('comp', list(KDUMP_FORMATS))
def test_kdump_scrubbed(files, comp):
    path = _kdump(files, comp)
    if path is None:
        return
    out = _scrub_dump(files, path, 'scrubbed.kdump')
    with open(out, 'rb') as f:
        assert f.read(12) == b'makedumpfile'
    found = markers(out, 'simple', 'control', files=files)
    assert found['simple'] == 0
    assert found['control'] > 0
    # A raw scan of every decompressed page.
    data = _raw(out, os.path.join(files.workdir, 'scrubbed.raw'))
    assert files.marker('simple').encode() not in data
    assert files.marker('control').encode() in data
    assert ps(out) == ps(path)
    os.unlink(out)
    # Without --output the dump is replaced (atomically), never patched
    # in place.
    copy = os.path.join(files.workdir, 'replaced.kdump')
    shutil.copyfile(path, copy)
    res = scen.sparc('checkpoint', 'scrub', copy, '--in-place',
                     '--exclude-process', files.selectors()[0], check=2)
    assert re.search('in.place', res.stderr)
    with open(path, 'rb') as a, open(copy, 'rb') as b:
        assert a.read() == b.read()
    scen.sparc('checkpoint', 'scrub', copy, '--exclude-process',
               files.selectors()[0], check=0)
    assert markers(copy, 'simple', files=files)['simple'] == 0
    os.unlink(copy)
    assert not [f for f in os.listdir(files.workdir) if '.sparc-' in f]


def _reassemble(flat: str, out: str) -> None:
    """What ``makedumpfile -R`` does: write each piece of the flattened
    dump ``flat`` at its offset in ``out`` (the seekable layout).
    """
    with open(flat, 'rb') as src, open(out, 'wb') as dst:
        src.seek(4096)
        while True:
            offset, size = struct.unpack('>qq', src.read(16))
            if offset == size == -1:
                break
            dst.seek(offset)
            dst.write(src.read(size))


def test_kdump_seekable_layout(files):
    path = _kdump(files, 'zlib')
    seekable = os.path.join(files.workdir, 'seekable.kdump')
    _reassemble(path, seekable)
    with open(seekable, 'rb') as f:
        assert f.read(8) == b'KDUMP   '
    info = json.loads(scen.sparc('checkpoint', 'info', seekable, '--format',
                                 'json', check=0).stdout)
    assert info['kdump']['layout'] == 'seekable'
    assert ps(seekable) == ps(path)
    raw = os.path.join(files.workdir, 'seekable.raw')
    assert _raw(seekable, raw) == _raw(path, raw)
    out = os.path.join(files.workdir, 'seekable-scrubbed.kdump')
    args = ['checkpoint', 'scrub', seekable, '--output', out]
    for sel in files.selectors():
        args += ['--exclude-process', sel]
    scen.sparc(*args, check=0)
    with open(out, 'rb') as f:
        assert f.read(8) == b'KDUMP   '
    data = _raw(out, raw)
    assert files.marker('simple').encode() not in data
    assert files.marker('control').encode() in data
    os.unlink(out)
    os.unlink(seekable)


def test_extract_ram_elf_matches_qemu_dump(files):
    out = os.path.join(files.workdir, 'extracted.elf')
    scen.sparc('checkpoint', 'extract-ram', files.save, out, '--format',
               'elf', check=0)
    result = elfdump.compare_cores(out, files.dump)
    assert result['uncovered'] == [] and result['differing'] == []
    assert result['compared_bytes'] >= 256 << 20
    ours, theirs = result['ours'], result['theirs']
    # The BIOS below 4 GiB is in both.
    assert any(p + s == 1 << 32 for p, _, s in theirs)
    assert any(p + s == 1 << 32 for p, _, s in ours)
    _drgn_reads_the_core(out, files)
    os.unlink(out)


def _drgn_reads_the_core(path, files):
    pytest.importorskip('drgn')
    prog = elfdump.drgn_reads_release(path)
    # drgn's own helpers list the tasks, with the kernel's kallsyms (found
    # through the core's VMCOREINFO note) and its BTF served by our type
    # finder.
    from drgn.helpers.linux import kallsyms
    from drgn.helpers.linux import pid as pid_helpers
    prog.register_symbol_finder(
        'kallsyms', kallsyms.load_vmlinux_kallsyms(prog), enable_index=0)

    def address(name):
        try:
            return prog.symbol(name).address
        except LookupError:
            return None
    start, stop = address('__start_BTF'), address('__stop_BTF')
    btf_finder.register(btf.BtfTypes(prog.read(start, stop - start)), prog,
                        address)
    objects.GlobalsFinder(address).register(prog)
    tasks = {int(t.pid): t.comm.string_().decode()
             for t in pid_helpers.for_each_task(prog)}
    assert {files.pids['simple'], files.pids['control']} <= set(tasks)
    assert tasks[1]


def test_external_snapshot(files):
    mem = files.snapshot_mem
    with open(mem, 'rb') as f:
        assert f.read(16) == b'LibvirtQemudSave'
    info = json.loads(scen.sparc('checkpoint', 'info', mem, '--format',
                                 'json', check=0).stdout)
    assert info['kind'] == 'libvirt-save'
    pids = {pid for pid, _ in ps(mem)}
    assert set(files.pids.values()) <= pids
    scen.sparc('checkpoint', 'deps', mem, check=0)
    raw = os.path.join(files.workdir, 'snapshot.raw')
    scen.sparc('checkpoint', 'extract-ram', mem, raw, check=0)
    os.unlink(raw)
    assert markers(mem, 'simple', 'control', files=files)['simple'] > 0
    args = ['checkpoint', 'scrub', mem]
    for sel in files.selectors():
        args += ['--exclude-process', sel]
    scen.sparc(*args, check=0)
    found = markers(mem, 'simple', 'control', files=files)
    assert found['simple'] == 0 and found['control'] > 0
    with open(mem, 'rb') as f:
        assert files.marker('simple').encode() not in f.read()
    # Revert to the scrubbed snapshot (libvirt < 9.7 cannot revert an
    # external snapshot: restore its memory file, the same image).
    g = files.guest
    g.disconnect_console()
    g.dom.destroy()
    # The console log keeps what the guest printed before; the reverted
    # guest counts its heartbeats on from the snapshot's, lower, number.
    since = g.console_size()
    try:
        g.dom.revertToSnapshot(files.snapshot,
                               libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
        g.connect_console()
        route = 'snapshot-revert'
    except libvirt.libvirtError as e:
        assert 'external' in str(e) or 'not supported' in str(e), e
        g.restore(mem)
        route = 'restore (%s)' % e
    print('external snapshot reverted by', route)
    beat = int(g.wait_for(r'HEARTBEAT (\d+)', 60, since).group(1))
    procs = scen.wait_gone(g, [files.pids[n] for n in SELECTED])
    alive = {p['pid'] for p in procs}
    assert files.pids['simple'] not in alive
    assert files.pids['control'] in alive
    g.wait_for(r'HEARTBEAT %d\b' % (beat + 2), timeout=60, since=since)
    assert g.oopses() == []
    # The running guest holds no copy of the excluded marker either.
    live = os.path.join(files.workdir, 'after-revert.save')
    g.save(live)
    assert markers(live, 'simple', files=files)['simple'] == 0
    os.unlink(live)
