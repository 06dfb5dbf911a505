"""Trees of an image's filesystems, and the operating system of one
that was not inspected.
"""

import pytest

from sparc_nova.engine.disk import discover
from sparc_nova.engine.disk import volumes


def volume(device, fstype, role=volumes.ROLE_FILESYSTEM):
    return volumes.Volume(device, fstype, role, None)


class Inspecting:
    """A libguestfs handle whose inspection finds one OS on /dev/sda2
    that mounts /dev/sda3 at /home.
    """

    def __init__(self):
        self.inspected = 0

    def inspect_os(self):
        self.inspected += 1
        return ['/dev/sda2']

    def inspect_get_mountpoints(self, root):
        return {'/': '/dev/sda2', '/home': '/dev/sda3', '/boot': '/dev/vdz'}


def test_one_filesystem_is_not_inspected():
    g = Inspecting()
    found = volumes.trees(g, [volume('/dev/sda1', 'ext4'),
                              volume('/dev/sda5', 'swap', volumes.ROLE_SWAP)])
    assert g.inspected == 0
    assert [(t.mounts, t.os_root, t.inspected) for t in found] == [
        ([('/', '/dev/sda1', '/dev/sda1')], '', False)]


def test_several_filesystems_or_btrfs_are_inspected():
    g = Inspecting()
    found = volumes.trees(g, [volume('/dev/sda2', 'ext4'),
                              volume('/dev/sda3', 'xfs'),
                              volume('/dev/sda4', 'vfat',
                                     volumes.ROLE_FOREIGN)])
    assert g.inspected == 1
    assert [(t.mounts, t.os_root, t.inspected) for t in found] == [
        ([('/', '/dev/sda2', '/dev/sda2'),
          ('/home', '/dev/sda3', '/dev/sda3')], '/dev/sda2', True),
        ([('/', '/dev/sda4', '/dev/sda4')], '', True)]
    volumes.trees(g, [volume('/dev/sda2', 'btrfs')])
    assert g.inspected == 2


class Files:
    """A handle whose mounted tree holds ``files`` (path: bytes; a str
    value is a symbolic link to that path).
    """

    def __init__(self, files):
        self.files = files
        self.read = []

    def _resolve(self, path):
        target = self.files.get(path)
        return self._resolve(target) if isinstance(target, str) else path

    def is_file(self, path, followsymlinks=False):
        return self._resolve(path) in self.files

    def filesize(self, path):
        return len(self.files[self._resolve(path)])

    def read_file(self, path):
        self.read.append(path)
        return self.files[self._resolve(path)]


DEBIAN = (b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian '
          b'GNU/Linux"\nVERSION_ID="12"\nID=debian\n')


@pytest.mark.parametrize('files, expected', [
    ({'/etc/os-release': '/usr/lib/os-release',
      '/usr/lib/os-release': DEBIAN},
     'debian Debian GNU/Linux 12 (bookworm)'),
    ({'/usr/lib/os-release': b"ID='alpine'\n"}, 'alpine'),
    ({}, ''),
    # Larger than an os-release file is: not read.
    ({'/etc/os-release': b'ID=x\n' + b'#' * 20000}, ''),
    # A guest's name is cut.
    ({'/etc/os-release': b'ID=' + b'n' * 500 + b'\n'}, 'n' * 200),
    ({'/etc/os-release': b'ID=\xff\xfe\n'}, '\ufffd\ufffd'),
])
def test_operating_system_from_os_release(files, expected):
    g = Files(files)
    assert discover.operating_system(g, ['/'] + sorted(files)) == expected
    if len(files.get('/etc/os-release', b'')) > 16384:
        assert g.read == []
