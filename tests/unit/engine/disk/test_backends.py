"""Backend helpers that parse tool output, and the backend registry."""

from sparc_nova.engine.disk import backends
from sparc_nova.engine.disk.backends import btrfs
from sparc_nova.engine.disk.backends import ext
from sparc_nova.engine.disk import batch


def test_registry_has_builtins():
    classes = backends.backend_classes()
    assert classes['ext4'] is ext.ExtBackend
    assert classes['xfs'].rebuilds_directories
    assert not classes['btrfs'].overwrites_in_place


def test_journal_size_from_dumpe2fs():
    header = ('Filesystem features:      has_journal ext_attr dir_index\n'
              'Total journal size:       64M\n')
    assert ext._journal_mib(header) == 64
    assert ext._journal_mib(header.replace('64M', '4096k')) == 4
    assert ext._journal_mib('Filesystem features:      ext_attr\n') == 0


def test_btrfs_geometry():
    dump = ('csum_type\t\t0 (crc32c)\nfsid\t\t\t1234-abcd\n'
            'label\t\t\troot\nnodesize\t\t16384\nsectorsize\t\t4096\n')
    assert btrfs._geometry(dump) == {
        'fsid': '1234-abcd', 'label': 'root', 'nodesize': '16384',
        'sectorsize': '4096', 'csum': 'crc32c'}


def test_sha256sum_name_unescaping():
    assert batch._unescape('a\\nb\\\\c') == 'a\nb\\c'


def test_batches_respect_limits():
    items = ['x' * 1000] * 200
    chunks = list(batch._batches(items, len))
    assert sum(len(c) for c in chunks) == 200
    assert all(sum(len(i) + 16 for i in c) <= batch._ARG_BYTES
               for c in chunks)
    big = [('f', batch._PAYLOAD_BYTES // 2)] * 5
    assert [len(c) for c in batch._batches(big, lambda f: 1,
                                           lambda f: f[1])] == [2, 2, 1]
