"""Internal snapshots of qcow2 images as checkpoints: reading the
vmstate, scrubbing it in place and into a copy, and hostile images."""

import fcntl
import hashlib
import os
import shutil
import struct
import subprocess

import pytest

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import qcow2
from sparc_nova.checkpoint import qcow2_vmstate
from sparc_nova.checkpoint import rewrite
from sparc_nova import exception
from tests import streamgen
from tests.unit.checkpoint import qcow2_image as img

PAGES = 64


SECRET = b'SECRET-OF-FRAME-2'


def stream(secret: bool = False) -> bytes:
    data = streamgen.simple_save(ram_pages=PAGES, secret_pfns=(2,) if secret
                                 else (), secret=SECRET)
    return data[len(streamgen.libvirt_header(PAGES * 4)):]


def write(tmp_path, data: bytes, name='disk.qcow2') -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def digest(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def qemu_img_check(path: str) -> None:
    if shutil.which('qemu-img'):
        subprocess.run(['qemu-img', 'check', '-q', path], check=True)


def vmstate(path: str, name: str) -> bytes:
    with checkpoint_mod.open_checkpoint(path, snapshot=name) as ck:
        return bytes(ck.stream)


def disk_bytes(path: str) -> bytes:
    """The disk data cluster (every L1 maps it) as the image holds it."""
    with open(path, 'rb') as f:
        data = f.read()
    return data[data.index(img.DISK_BYTES[:64]):][:img.CS]


@pytest.fixture
def image(tmp_path):
    return write(tmp_path, img.build(
        {'s1': stream(secret=True), 's2': stream()},
        compress={('s1', 20), ('s1', 25)}, share_active='s1'))


def test_reads_every_cluster_kind(image):
    qemu_img_check(image)
    want = stream(secret=True)
    with checkpoint_mod.open_checkpoint(image, snapshot='s1') as ck:
        assert bytes(ck.stream) == want
        assert ck.kind == 'qcow2-snapshot'
        kinds = ck.info()['qcow2']['vmstate_clusters']
        assert kinds['compressed'] == 2 and kinds['normal'] > 0
        assert ck.memory.read_page(0) == streamgen.page_of(0)
    assert vmstate(image, '1') == want      # by ID
    listing = checkpoint_mod.internal_snapshots(image)
    assert [s['name'] for s in listing['snapshots']] == ['s1', 's2']
    assert listing['snapshots'][0]['vm_state_size'] == len(want)


def test_zero_and_unallocated_clusters(tmp_path):
    raw = (b'A' * img.CS + bytes(3 * img.CS) + b'B' * 100)
    path = write(tmp_path, img.build({'s1': raw}, compress={('s1', 4)}))
    qemu_img_check(path)
    with open(path, 'rb') as f:
        vm = qcow2_vmstate.open_vmstate(f, path, 's1')
        assert sorted(vm.map.kind.tolist()) == [
            qcow2.UNALLOCATED, qcow2.ZERO, qcow2.ZERO, qcow2.NORMAL,
            qcow2.COMPRESSED]
        assert qcow2_vmstate.VmstateView(vm).read() == raw


def test_view_is_bounded_and_seekable(image):
    want = stream(secret=True)
    with open(image, 'rb') as f:
        vm = qcow2_vmstate.open_vmstate(f, image, 's1')
        view = qcow2_vmstate.VmstateView(vm)
        assert view.read() == want
        view.seek(img.CS * 3 - 10)
        assert view.read(20) == want[img.CS * 3 - 10:img.CS * 3 + 10]
        view.seek(5, os.SEEK_END)
        assert view.read(10) == b''


def test_needs_a_snapshot_and_names_them(image, tmp_path):
    with pytest.raises(exception.CheckpointError, match='--snapshot.*s1, '
                       's2'):
        checkpoint_mod.open_checkpoint(image)
    with pytest.raises(exception.CheckpointError, match="no internal "
                       "snapshot 'nope'"):
        checkpoint_mod.open_checkpoint(image, snapshot='nope')
    save = write(tmp_path, streamgen.simple_save(), 'x.save')
    with pytest.raises(exception.CheckpointError, match='qcow2 disk'):
        checkpoint_mod.open_checkpoint(save, snapshot='s1')


def _scrub(path, out=None, in_place=False, key=None, pfns=(0, 2, 8)):
    """Zero ``pfns`` of s1 and put a kill-like page at frame 4."""
    with checkpoint_mod.open_checkpoint(path, snapshot='s1') as ck:
        rep = {pfn: bytes(4096) for pfn in pfns}
        rep[4] = streamgen.page_of(4, b'KILL')
        res = rewrite.rewrite_pages(ck, rep, output=out, in_place=in_place,
                                    journal_key=key)
    assert res.verify()['pages_checked'] == len(rep)
    return rep


@pytest.mark.parametrize('mode', ['in_place', 'output', 'replace'])
def test_scrub_touches_only_the_snapshot(image, tmp_path, journal_key,
                                         mode):
    s2, disk, orig = vmstate(image, 's2'), disk_bytes(image), digest(image)
    out = str(tmp_path / 'out.qcow2') if mode == 'output' else None
    rep = _scrub(image, out=out, in_place=mode == 'in_place',
                 key=journal_key)
    result = out or image
    qemu_img_check(result)
    with checkpoint_mod.open_checkpoint(result, snapshot='s1') as ck:
        for pfn, data in rep.items():
            assert ck.memory.read_page(pfn) == data
        # Unchanged frames still read as they were.
        assert ck.memory.read_page(6) == streamgen.page_of(6)
        assert len(ck.stream) == len(stream(secret=True))
    assert vmstate(result, 's2') == s2
    assert disk_bytes(result) == disk
    with open(result, 'rb') as f:
        data = f.read()
    # No copy of the zeroed frame's secret is left anywhere in the file.
    assert SECRET not in data
    if mode == 'output':
        assert digest(image) == orig
    assert not journal.pending(result)
    assert not [n for n in os.listdir(tmp_path) if '.sparc-' in n]


def test_scrub_recompresses_compressed_clusters(tmp_path, journal_key):
    s = stream()
    # Every cluster of the stream compressed.
    n = -(-len(s) // img.CS)
    path = write(tmp_path, img.build(
        {'s1': s}, compress={('s1', i) for i in range(n)}))
    with open(path, 'rb') as f:
        vm = qcow2_vmstate.open_vmstate(f, path, 's1')
        assert (vm.map.kind == qcow2.COMPRESSED).all()
    rep = _scrub(path, in_place=True, key=journal_key,
                 pfns=tuple(range(0, PAGES, 2)))
    qemu_img_check(path)
    with checkpoint_mod.open_checkpoint(path, snapshot='s1') as ck:
        for pfn, data in rep.items():
            assert ck.memory.read_page(pfn) == data
    with open(path, 'rb') as f:
        data = f.read()
    # Old compressed bytes are not left in the padding.
    assert img.deflate(streamgen.page_of(2))[:64] not in data


def test_scrub_refuses_a_cluster_that_no_longer_fits(tmp_path,
                                                     journal_key):
    # Page data that compressed well, replaced by bytes that do not.
    path = write(tmp_path, img.build({'s1': stream()}, compress={
        ('s1', i) for i in range(1, 6)}))
    before = digest(path)
    with checkpoint_mod.open_checkpoint(path, snapshot='s1') as ck:
        with pytest.raises(exception.CheckpointError,
                           match='recompresses to .* more than'):
            rewrite.rewrite_pages(ck, {pfn: os.urandom(4096)
                                       for pfn in range(2, 10, 2)},
                                  in_place=True, journal_key=journal_key)
    assert digest(path) == before
    assert not journal.pending(path)


def test_scrub_refuses_a_shared_cluster(tmp_path, journal_key):
    # The cluster holding frame 2's page has refcount 2: something else
    # (unknown) holds it.
    s = stream()
    path = write(tmp_path, img.build({'s1': s}, bump_refcount={
        ('s1', i) for i in range(1, 4)}))
    before = digest(path)
    for kw in ({'in_place': True, 'key': journal_key},
               {'out': str(tmp_path / 'out.qcow2')}):
        with pytest.raises(exception.CheckpointError,
                           match='refcount 2.*nothing written'):
            _scrub(path, **kw)
        assert digest(path) == before
        assert not journal.pending(path)
        assert not os.path.exists(tmp_path / 'out.qcow2')


def test_scrub_refuses_a_cluster_another_snapshot_reads(
        tmp_path, journal_key):
    # s2's vmstate is s1's (one L2 table, as QEMU shares it between two
    # L1 tables): scrubbing s1 would change s2.
    path = write(tmp_path, img.build({'s1': stream(), 's2': stream()},
                                     share=('s2', 's1')))
    qemu_img_check(path)
    before = digest(path)
    with pytest.raises(exception.CheckpointError,
                       match="data of snapshot 's2'.*nothing written"):
        _scrub(path, in_place=True, key=journal_key)
    assert digest(path) == before


def test_scrub_refuses_an_image_in_use(image, journal_key):
    before = digest(image)
    with open(image, 'r+b') as holder:
        fcntl.lockf(holder, fcntl.LOCK_SH, 1, 100)
        with pytest.raises(exception.CheckpointError, match='in use'):
            _scrub(image, in_place=True, key=journal_key)
    assert digest(image) == before


def test_in_place_scrub_is_recovered(image, journal_key, monkeypatch):
    """A crash after the journal is written is finished by recover."""
    def crash(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(journal, 'apply', crash)
    with pytest.raises(KeyboardInterrupt):
        _scrub(image, in_place=True, key=journal_key)
    monkeypatch.undo()
    assert journal.pending(image)
    with pytest.raises(exception.CheckpointError, match='recover'):
        checkpoint_mod.open_checkpoint(image, snapshot='s1')
    assert journal.recover(image, journal_key) == 'replayed'
    with checkpoint_mod.open_checkpoint(image, snapshot='s1') as ck:
        assert ck.memory.read_page(2) == bytes(4096)
    qemu_img_check(image)


# -- hostile images ----------------------------------------------------------


def _field(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _snapshot_entry(data: bytes) -> int:
    return struct.unpack_from('>Q', data, 64)[0]


def _vm_l2(data: bytes, snapshot_index: int = 0) -> int:
    """The vmstate L2 table offset of snapshot ``snapshot_index``."""
    pos = _snapshot_entry(data)
    for _ in range(snapshot_index):
        extra, id_len, name_len = (struct.unpack_from('>I', data, pos + 36)[0],
                                   *struct.unpack_from('>HH', data, pos + 12))
        n = 40 + extra + id_len + name_len
        pos += n + (-n % 8)
    l1 = struct.unpack_from('>Q', data, pos)[0]
    return struct.unpack_from('>Q', data, l1 + 8 * img.vmstate_l1_index())[0]


def _refused(tmp_path, data, match, error=exception.CheckpointFormatError):
    path = write(tmp_path, data, 'bad.qcow2')
    with pytest.raises(error, match=match) as e:
        with checkpoint_mod.open_checkpoint(path, snapshot='s1'):
            pass
    assert path in str(e.value)


def test_vmstate_past_the_end_of_the_file(tmp_path):
    data = img.build({'s1': stream()})
    l2 = _vm_l2(data)
    bad = _field(data, l2 + 8, '>Q', len(data) + 16 * img.CS)
    _refused(tmp_path, bad, 'lies outside the file')
    # Truncated: the last clusters are gone.
    _refused(tmp_path, data[:len(data) - 3 * img.CS], 'outside the file')


def test_vmstate_size_past_the_l1_table(tmp_path):
    data = img.build({'s1': stream()})
    pos = _snapshot_entry(data)
    bad = _field(data, pos + 40, '>Q', 1 << 33)
    _refused(tmp_path, bad, 'needs L1 entries')
    small = limits_mod.Limits(max_guest_ram=1 << 20)
    path = write(tmp_path, bad, 'big.qcow2')
    with pytest.raises(exception.LimitExceeded, match='vmstate'):
        checkpoint_mod.open_checkpoint(path, snapshot='s1', limits=small)


def test_snapshot_table_bounds(tmp_path):
    data = img.build({'s1': stream(), 's2': stream()})
    _refused(tmp_path, _field(data, 60, '>I', 1 << 20), 'snapshots',
             exception.LimitExceeded)
    _refused(tmp_path, _field(data, 60, '>I', 50),
             'snapshot 2|past the end')
    _refused(tmp_path, _field(data, 64, '>Q', len(data) + img.CS),
             'past the end')
    pos = _snapshot_entry(data)
    _refused(tmp_path, _field(data, pos + 36, '>I', 1 << 16), 'extra data')
    _refused(tmp_path, _field(data, pos + 36, '>I', 8), 'extra data')


def test_overlapping_snapshots_and_loops(tmp_path):
    data = img.build({'s1': stream(), 's2': stream()})
    pos = _snapshot_entry(data)
    l1_s1 = struct.unpack_from('>Q', data, pos)[0]
    # s2's entry made to use s1's L1 table.
    n = 40 + 16 + 1 + 2
    pos2 = pos + n + (-n % 8)
    _refused(tmp_path, _field(data, pos2, '>Q', l1_s1), 'overlap')
    # The same name twice.
    dup = bytearray(data)
    dup[pos2 + n - 2:pos2 + n] = b's1'
    _refused(tmp_path, bytes(dup), 'same ID or name')
    # An L1 table on the snapshot table.
    _refused(tmp_path, _field(data, pos, '>Q', pos - pos % img.CS),
             'overlaps the snapshot table')
    # L1 table outside the file, L2 table in the header.
    _refused(tmp_path, _field(data, pos, '>Q', len(data)), 'outside the file')
    bad = _field(data, l1_s1 + 8 * img.vmstate_l1_index(), '>Q', 512)
    _refused(tmp_path, bad, 'header')
    # A vmstate whose L1 table points twice at its L2 table.
    big = stream() + bytes(img.CS * img.L2E)
    data = img.build({'s1': big})
    pos = _snapshot_entry(data)
    l1 = struct.unpack_from('>Q', data, pos)[0]
    l2 = _vm_l2(data)
    bad = _field(data, pos + 8, '>I', img.vmstate_l1_index() + 2)
    bad = _field(bad, l1 + 8 * (img.vmstate_l1_index() + 1), '>Q', l2)
    _refused(tmp_path, bad, 'same L2 table')


def test_compressed_cluster_that_inflates_past_its_size(tmp_path):
    s = stream()
    data = bytearray(img.build({'s1': s}, compress={('s1', 0)}))
    l2 = _vm_l2(bytes(data))
    entry = struct.unpack_from('>Q', data, l2)[0]
    shift = 62 - (img.CLUSTER_BITS - 8)
    off = entry & ((1 << shift) - 1)
    bomb = img.deflate(bytes(img.CS * 4))
    data[off:off + len(bomb)] = bomb
    sectors = (off % 512 + len(bomb) + 511) // 512
    struct.pack_into('>Q', data, l2, (1 << 62) | ((sectors - 1) << shift) |
                     off)
    _refused(tmp_path, bytes(data), 'inflates past the cluster size')
    short = img.deflate(b'x' * 100)
    data[off:off + len(short)] = short
    _refused(tmp_path, bytes(data), 'not a cluster')
    data[off:off + 16] = b'\xff' * 16
    _refused(tmp_path, bytes(data), 'does not inflate')


def test_header_refusals(tmp_path):
    data = img.build({'s1': stream()})
    _refused(tmp_path, _field(data, 4, '>I', 4), 'version 4',
             exception.UnsupportedCheckpoint)
    _refused(tmp_path, _field(data, 20, '>I', 30), 'cluster_bits')
    _refused(tmp_path, _field(data, 32, '>I', 1), 'encrypted',
             exception.UnsupportedCheckpoint)
    _refused(tmp_path, _field(data, 72, '>Q', qcow2.INCOMPAT_DATA_FILE),
             'external data file', exception.UnsupportedCheckpoint)
    _refused(tmp_path, _field(data, 72, '>Q', qcow2.INCOMPAT_EXTL2),
             'extended L2', exception.UnsupportedCheckpoint)
    _refused(tmp_path, _field(data, 72, '>Q', 1 << 40), 'unknown',
             exception.UnsupportedCheckpoint)
    _refused(tmp_path, data[:50], 'shorter than a qcow2 header')
    path = write(tmp_path, _field(data, 72, '>Q', qcow2.INCOMPAT_DIRTY),
                 'dirty.qcow2')
    before = digest(path)
    with pytest.raises(exception.CheckpointError, match='dirty'):
        _scrub(path, out=str(tmp_path / 'o.qcow2'))
    assert digest(path) == before


def test_disk_only_snapshot(tmp_path):
    data = img.build({'s1': stream()})
    pos = _snapshot_entry(data)
    bad = _field(_field(data, pos + 40, '>Q', 0), pos + 32, '>I', 0)
    _refused(tmp_path, bad, 'no memory state', exception.CheckpointError)


def _qemu_reads_vmstate(path: str, size: int) -> bytes:
    """The active state's vmstate as QEMU reads it (``qemu-io -c 'read -b
    -v'``), which the images of these tests share with snapshot s1.
    """
    out = subprocess.run(['qemu-io', '-r', '-f', 'qcow2', '-c',
                          'read -b -v 0 %d' % (-(-size // 512) * 512),
                          path], capture_output=True, text=True,
                         check=True).stdout
    data = bytearray()
    for line in out.splitlines():
        head, sep, rest = line.partition(':  ')
        if sep and len(head) == 8:
            data += bytes.fromhex(rest[:48])
    return bytes(data[:size])


@pytest.mark.parametrize('codec', [img.deflate, img.zstd])
def test_compressed_clusters_as_qemu_reads_them(tmp_path, journal_key,
                                                codec):
    if codec is img.zstd and not shutil.which('zstd'):
        pytest.skip('no zstd program')
    s = stream(secret=True)
    n = -(-len(s) // img.CS)
    path = write(tmp_path, img.build(
        {'s1': s}, compress={('s1', i) for i in range(n)},
        share_active='s1', codec=codec))
    qemu_img_check(path)
    assert vmstate(path, 's1') == s
    have_qemu_io = shutil.which('qemu-io')
    if have_qemu_io:
        assert _qemu_reads_vmstate(path, len(s)) == s
    rep = _scrub(path, in_place=True, key=journal_key,
                 pfns=tuple(range(0, PAGES, 2)))
    qemu_img_check(path)
    with checkpoint_mod.open_checkpoint(path, snapshot='s1') as ck:
        for pfn, data in rep.items():
            assert ck.memory.read_page(pfn) == data
        scrubbed = bytes(ck.stream)
    # QEMU decompresses the recompressed clusters to the same bytes.
    if have_qemu_io:
        assert _qemu_reads_vmstate(path, len(s)) == scrubbed
    with open(path, 'rb') as f:
        assert codec(streamgen.page_of(2))[:32] not in f.read()


def test_zstd_frame_bounds(tmp_path):
    if not shutil.which('zstd'):
        pytest.skip('no zstd program')
    s = stream()
    data = bytearray(img.build({'s1': s}, compress={('s1', 0)},
                               codec=img.zstd))
    l2 = _vm_l2(bytes(data))
    entry = struct.unpack_from('>Q', data, l2)[0]
    shift = 62 - (img.CLUSTER_BITS - 8)
    off = entry & ((1 << shift) - 1)
    good = bytes(data)
    # A frame that declares more than a cluster (a bomb) is refused
    # before the program runs.
    big = img.zstd(bytes(img.CS * 64))
    data[off:off + len(big)] = big
    sectors = (off % 512 + len(big) + 511) // 512
    struct.pack_into('>Q', data, l2, (1 << 62) | ((sectors - 1) << shift) |
                     off)
    _refused(tmp_path, bytes(data), 'declares 262144 bytes of zstd content')
    bad = bytearray(good)
    bad[off:off + 4] = b'\0\0\0\0'
    _refused(tmp_path, bytes(bad), 'not a zstd frame')
    bad = bytearray(good)
    bad[off + 10:off + 40] = b'\xff' * 30
    _refused(tmp_path, bytes(bad), 'zstd')
