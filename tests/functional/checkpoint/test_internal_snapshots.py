"""Internal snapshots of a real guest (Debian 6.1, 256 MiB, pc) with a
qcow2 disk: ``virsh snapshot-create-as DOM NAME`` of the running guest
stores its memory inside the disk image (QEMU's ``savevm``).

The guest boots once with one selected process (``simple``) and a
control, and two internal snapshots are taken of it while it runs
(``mem1``, ``mem2``); it is then shut off and its image kept pristine.
Each test scrubs a copy of that image (``--snapshot``, in place or
``--output``), checks the disk and the other snapshot are untouched,
scans the raw file, and reverts the domain to the scrubbed snapshot.
"""

import hashlib
import json
import os
import shutil
import subprocess

import libvirt
import pytest

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from tests.functional.engine import scenario as scen

pytestmark = pytest.mark.slow

SELECTED = ('simple',)
SNAPSHOTS = ('mem1', 'mem2')


class Files:
    """The guest and its pristine image with two internal snapshots."""

    def __init__(self, guest, image, workdir, disk, pids):
        self.guest = guest
        self.image = image
        self.workdir = workdir
        self.disk = disk
        self.pristine = disk + '.pristine'
        self.pids = pids

    def marker(self, name: str) -> bytes:
        return self.image.marker(scen.MARKERS[name]).encode()

    def scrub_args(self):
        out = []
        for n in SELECTED:
            out += ['--exclude-process', 'pid:%d' % self.pids[n]]
        return out


@pytest.fixture(scope='module')
def files(make_guest, guest_image, module_dir):
    disk = os.path.join(module_dir, 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'],
                   check=True)
    g = make_guest(memory_mib=256, machine='pc', disk=disk)
    pids = {'simple': g.start_workload('hold 1 --pages 16'),
            'control': g.start_workload('hold 4')}
    f = Files(g, guest_image, module_dir, disk, pids)
    snaps = [g.dom.snapshotCreateXML(
        '<domainsnapshot><name>%s</name></domainsnapshot>' % name, 0)
        for name in SNAPSHOTS]
    g.disconnect_console()
    g.dom.destroy()
    shutil.copyfile(disk, f.pristine)
    yield f
    for snap in snaps:
        try:
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        except libvirt.libvirtError:
            pass


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def views(path: str, workdir: str) -> dict:
    """Hashes of what must not change: the disk as qemu-img reads it,
    each snapshot's disk (qemu-img convert -l) and vmstate.
    """
    out = {}
    raw = os.path.join(workdir, 'view.raw')
    for name in (None,) + SNAPSHOTS:
        args = ['qemu-img', 'convert', '-U', '-O', 'raw']
        if name:
            args += ['-l', 'snapshot.name=%s' % name]
        subprocess.run(args + [path, raw], check=True)
        out['disk', name] = sha256(raw)
        os.unlink(raw)
    for name in SNAPSHOTS:
        with checkpoint_mod.open_checkpoint(path, snapshot=name) as ck:
            out['vmstate', name] = hashlib.sha256(ck.stream).hexdigest()
    return out


def markers(path: str, snapshot: str, files) -> dict:
    res = scen.sparc('checkpoint', 'verify', path, '--snapshot', snapshot,
                     '--format', 'json',
                     '--marker', files.marker('simple').decode(),
                     '--marker', files.marker('control').decode())
    rows = json.loads(res.stdout)['markers']
    return {'simple': rows[0]['in_memory'] + rows[0]['in_file'],
            'control': rows[1]['in_memory']}


def scrub(path: str, snapshot: str, files, *more) -> dict:
    return json.loads(scen.sparc(
        'checkpoint', 'scrub', path, '--snapshot', snapshot, '--format',
        'json', *(files.scrub_args() + list(more)), check=0).stdout)


def revert_and_check(files, disk: str) -> None:
    """Put ``disk`` in the domain's place, revert to ``mem1`` (running)
    and check the selected process is gone and the control alive.
    """
    os.replace(disk, files.disk)
    g = files.guest
    snap = g.dom.snapshotLookupByName('mem1')
    g.dom.revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    g.connect_console()
    try:
        beat = g.heartbeat()
        procs = scen.wait_gone(g, [files.pids[n] for n in SELECTED])
        alive = {p['pid'] for p in procs}
        assert files.pids['simple'] not in alive
        assert files.pids['control'] in alive
        g.wait_for(r'HEARTBEAT %d\b' % (beat + 2), timeout=60, since=0)
        assert g.oopses() == []
    finally:
        g.disconnect_console()
        g.dom.destroy()


def test_info_and_ps(files):
    info = json.loads(scen.sparc('checkpoint', 'info', files.pristine,
                                 '--format', 'json', check=0).stdout)
    assert [s['name'] for s in info['snapshots']] == list(SNAPSHOTS)
    assert all(s['vm_state_size'] > 0 for s in info['snapshots'])
    info = json.loads(scen.sparc('checkpoint', 'info', files.pristine,
                                 '--snapshot', 'mem1', '--format', 'json',
                                 check=0).stdout)
    assert info['kind'] == 'qcow2-snapshot'
    assert info['qcow2']['snapshot']['name'] == 'mem1'
    res = scen.sparc('checkpoint', 'ps', files.pristine, '--snapshot',
                     'mem1', '--format', 'json', check=0)
    pids = {p['pid'] for p in json.loads(res.stdout)['processes']}
    assert set(files.pids.values()) <= pids
    scen.sparc('checkpoint', 'deps', files.pristine, '--snapshot', 'mem1',
               check=0)
    found = markers(files.pristine, 'mem1', files)
    assert found['simple'] > 0 and found['control'] > 0
    # Without --snapshot, a command that needs one says so.
    res = scen.sparc('checkpoint', 'ps', files.pristine, check=2)
    assert '--snapshot' in res.stderr


def test_scrub_in_place_and_revert(files):
    path = os.path.join(files.workdir, 'inplace.qcow2')
    shutil.copyfile(files.pristine, path)
    before = views(path, files.workdir)
    rep = scrub(path, 'mem1', files, '--in-place')
    assert rep['rewrite']['in_place'] and rep['output'] == path
    assert rep['verification']['result'] == 'ok'
    assert rep['threads_killed'] > 0
    after = views(path, files.workdir)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {('vmstate', 'mem1')}
    found = markers(path, 'mem1', files)
    assert found['simple'] == 0 and found['control'] > 0
    assert subprocess.run(['qemu-img', 'check', '-q', path]).returncode == 0
    # mem2 still holds the process; scrubbed too, the raw file holds no
    # copy of its marker anywhere.
    scrub(path, 'mem2', files, '--in-place')
    with open(path, 'rb') as f:
        data = f.read()
    assert files.marker('simple') not in data
    assert files.marker('control') in data
    assert not [n for n in os.listdir(files.workdir) if '.sparc-' in n]
    revert_and_check(files, path)


def test_scrub_to_output_and_revert(files):
    src = os.path.join(files.workdir, 'source.qcow2')
    out = os.path.join(files.workdir, 'scrubbed.qcow2')
    shutil.copyfile(files.pristine, src)
    digest = sha256(src)
    before = views(src, files.workdir)
    rep = scrub(src, 'mem1', files, '--output', out)
    assert not rep['rewrite']['in_place'] and rep['output'] == out
    assert sha256(src) == digest
    after = views(out, files.workdir)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {('vmstate', 'mem1')}
    assert markers(out, 'mem1', files)['simple'] == 0
    assert markers(src, 'mem1', files)['simple'] > 0
    # Sparse like the original.
    assert os.stat(out).st_blocks <= os.stat(src).st_blocks + 64
    # mem2 of that copy to a second one: no copy of the marker is left.
    out2 = os.path.join(files.workdir, 'scrubbed2.qcow2')
    scrub(out, 'mem2', files, '--output', out2)
    with open(out2, 'rb') as f:
        data = f.read()
    assert files.marker('simple') not in data
    assert files.marker('control') in data
    with open(src, 'rb') as f:
        assert files.marker('simple') in f.read()
    assert sha256(src) == digest
    revert_and_check(files, out2)
    os.unlink(src)
    os.unlink(out)
