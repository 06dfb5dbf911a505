"""Zeroing the free blocks the working copy can hold data in, with the
appliance played by a fake that writes into the real sparse file.
"""

import os

import pytest

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk.backends import ext
from sparc_nova.engine.disk import free_blocks

MIB = 1024 * 1024
PART = MIB          # the partition starts 1 MiB into the drive
PART_SIZE = 15 * MIB


class FakeAppliance:
    """Answers the sysfs question and zeroes ranges in ``work`` (unless
    told to do nothing, as a zeroing that did not reach the file).
    """

    def __init__(self, work, zeroes=True):
        self.work = work
        self.zeroes = zeroes
        self.zeroed = []

    def run(self, g, argv):
        script = argv[2]
        if 'sys/class/block' in script:
            return '%d %d\n' % (PART // 512, PART_SIZE // 512)
        assert 'blkdiscard -z' in script and argv[4] == '/dev/sda1'
        for line in argv[5].splitlines():
            offset, length = map(int, line.split())
            self.zeroed.append((offset, length))
            if self.zeroes:
                with open(self.work, 'r+b') as f:
                    f.seek(PART + offset)
                    f.write(bytes(length))
        return ''

    def sync(self):
        pass


@pytest.fixture
def work(tmp_path):
    """A sparse drive: old data in the partition at 2 MiB (free) and
    5 MiB (in use), nothing else written.
    """
    path = str(tmp_path / 'work.raw')
    with open(path, 'wb') as f:
        f.truncate(PART + PART_SIZE)
        f.seek(PART + 2 * MIB)
        f.write(b'OLD SECRET ' * 1000)
        f.seek(PART + 5 * MIB)
        f.write(b'live data ' * 100)
    return path


def _use(monkeypatch, fake):
    monkeypatch.setattr(appliance, 'run', fake.run)


def test_only_free_ranges_that_hold_data_are_zeroed(work, monkeypatch):
    fake = FakeAppliance(work)
    _use(monkeypatch, fake)
    free = [(0, 5 * MIB), (6 * MIB, 9 * MIB)]
    zeroed = free_blocks.zero_allocated_free(fake, '/dev/sda1', work, free)
    assert zeroed > 0
    assert all(2 * MIB <= o and o + n <= 3 * MIB for o, n in fake.zeroed)
    with open(work, 'rb') as f:
        data = f.read()
    assert b'OLD SECRET' not in data
    assert b'live data' in data


def test_a_zeroing_that_did_nothing_fails_the_scrub(work, monkeypatch):
    fake = FakeAppliance(work, zeroes=False)
    _use(monkeypatch, fake)
    with pytest.raises(RuntimeError, match='still hold data'):
        free_blocks.zero_allocated_free(fake, '/dev/sda1', work,
                                        [(0, 5 * MIB)])


def test_not_on_the_working_copy_drive(work, monkeypatch):
    fake = FakeAppliance(work)
    _use(monkeypatch, fake)
    for device in ('/dev/vg/root', '/dev/mapper/luks', '/dev/sdb1'):
        assert free_blocks.zero_allocated_free(
            fake, device, work, [(0, MIB)]) is None
    assert free_blocks.zero_allocated_free(fake, '/dev/sda1', None,
                                           [(0, MIB)]) is None
    assert free_blocks.zero_allocated_free(fake, '/dev/sda1', work,
                                           None) is None
    # a free extent past the partition's end: the free list is not
    # trusted, the caller zeroes everything
    assert free_blocks.zero_allocated_free(
        fake, '/dev/sda1', work, [(PART_SIZE - 4096, 8192)]) is None
    assert fake.zeroed == []


def test_too_many_ranges_fall_back(work, monkeypatch):
    with open(work, 'r+b') as f:
        for i in range(free_blocks.MAX_ZERO_RANGES + 1):
            f.seek(PART + 8 * MIB + i * 8192)
            f.write(b'x' * 4096)
    fake = FakeAppliance(work)
    _use(monkeypatch, fake)
    free = [(8 * MIB + i * 8192, 4096)
            for i in range(free_blocks.MAX_ZERO_RANGES + 1)]
    if len(free_blocks.allocation.data_ranges(work)) < 3:
        pytest.skip('the filesystem of the test directory has no holes')
    assert free_blocks.zero_allocated_free(fake, '/dev/sda1', work,
                                           free) is None
    assert fake.zeroed == []


DUMP = '''Filesystem features:      has_journal ext_attr resize_inode extent
Block count:              262144
First block:              0
Block size:               4096
Group 0: (Blocks 0-32767) csum 0x1234 [ITABLE_ZEROED]
  Free blocks: 1000-1999, 3000
Group 1: (Blocks 32768-65535) csum 0x1234 [INODE_UNINIT, BLOCK_UNINIT]
  Free blocks: 32768-65535
Group 2: (Blocks 65536-98303) csum 0x1234
  Free blocks: '''


def test_free_extents_from_dumpe2fs():
    assert ext.parse_free_extents(DUMP) == [
        (1000 * 4096, 1000 * 4096), (3000 * 4096, 4096),
        (32768 * 4096, 32768 * 4096)]


@pytest.mark.parametrize('remove', [True, False])
def test_journal_removed_before_the_free_list_is_read(monkeypatch, remove):
    # The journal's blocks are free once it is removed: the list must be
    # read after the removal, in the same appliance call.
    calls = []

    def run(g, argv):
        calls.append(argv)
        return DUMP
    monkeypatch.setattr(appliance, 'run', run)
    assert ext.free_extents(None, '/dev/sda1', remove_journal=remove)
    ((sh, flag, script, name, device, answer),) = calls
    assert (sh, flag, name, device) == ('sh', '-c', 'sh', '/dev/sda1')
    assert answer == ('yes' if remove else 'no')
    assert script.index('tune2fs -O ^has_journal') < \
        script.index('dumpe2fs "$1"')


@pytest.mark.parametrize('bad', [
    DUMP.replace('extent', 'extent bigalloc'),
    DUMP.replace('3000', '300000'),           # past the last block
    DUMP.replace('1000-1999', '1999-1000'),   # reversed
    DUMP.replace('1000-1999', '1000-x'),
    DUMP.replace('Block size:               4096', 'Block size: 3000'),
    DUMP.replace('Block count', 'Blocks'),
])
def test_untrusted_free_lists_fall_back(bad):
    assert ext.parse_free_extents(bad) is None


def test_sparse_file_support():
    assert os.SEEK_DATA and os.SEEK_HOLE
