"""Raw disks whose first sector a guest has turned into the header of an
image format that reads another host file.

Each disk is a real guest disk: an MBR with one ext4 partition from
1 MiB holding files the rules remove. A guest owns its boot sector and
the gap before its first partition; here they hold the metadata of a
qcow2 image (backing file or external data file) or a vmdk descriptor
(flat extent) naming a host file. Read as raw (what the disk is), they
are guest data; probed by qemu, they are images whose content is the
host file.

The host file is another disk (ext4 holding :data:`HOST_FILE` with the
host marker): what a format probe would copy into the scrubbed snapshot.
"""

import os
import subprocess

__all__ = ['KINDS', 'HOST_FILE', 'build', 'host_disk']

MIB = 1024 * 1024
#: Bytes of the boot sector before the MBR partition entries.
_BOOT_CODE = 446
#: The MBR gap: from the second sector to the first partition.
_GAP = (512, MIB)
HOST_FILE = '/etc/host-secret'
#: Size of the host disk and of the virtual disk the header describes.
HOST_SIZE_MIB = 16

KINDS = ('qcow2-backing-file', 'qcow2-data-file', 'vmdk-flat-extent')


def _run(*argv: str, **kwargs) -> None:
    subprocess.run(argv, check=True, capture_output=True, **kwargs)


def host_disk(path: str, marker: str) -> str:
    """An ext4 disk image (no partition table) whose :data:`HOST_FILE`
    holds ``marker``: another tenant's disk, or any host file.
    """
    tree = path + '.tree'
    os.makedirs(os.path.join(tree, 'etc'), exist_ok=True)
    with open(tree + HOST_FILE, 'w') as f:
        f.write(('host data %s\n' % marker) * 64)
    if os.path.exists(path):
        os.unlink(path)
    with open(path, 'wb') as f:
        f.truncate(HOST_SIZE_MIB * MIB)
    _run('mkfs.ext4', '-q', '-F', '-d', tree, path)
    return path


def _qcow2_metadata(kind: str, host: str, scratch: str) -> bytes:
    """A qcow2 file (512-byte clusters, so that it fits in the MBR gap)
    whose guest view is ``host``: through its backing file, or through
    its external raw data file.
    """
    if kind == 'qcow2-backing-file':
        _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
             'compat=0.10,cluster_size=512', '-b', host, '-F', 'raw',
             scratch, '%dM' % HOST_SIZE_MIB)
    else:
        # Creating the image creates (truncates) its data file: create
        # it on a copy's name, then point the name at the host file.
        data = scratch + '.data'
        _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
             'cluster_size=512,data_file=%s,data_file_raw=on' % data,
             scratch, '%dM' % HOST_SIZE_MIB)
        os.unlink(data)
        with open(scratch, 'r+b') as f:
            header = f.read(512)
            old = data.encode()
            assert len(host.encode()) == len(old), 'same length names'
            f.seek(header.index(old))
            f.write(host.encode())
    with open(scratch, 'rb') as f:
        meta = f.read()
    os.unlink(scratch)
    return meta


def _vmdk_descriptor(host: str) -> bytes:
    return ('# Disk DescriptorFile\nversion=1\nCID=fffffffe\n'
            'parentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
            'RW %d FLAT "%s" 0\n\nddb.virtualHWVersion = "4"\n'
            % (HOST_SIZE_MIB * MIB // 512, host)).encode()


def build(kind: str, guest_raw: str, host: str, work_dir: str) -> str:
    """Write the header of ``kind`` into the boot sector and MBR gap of
    the partitioned raw disk ``guest_raw`` (in place) and return it.
    ``host`` is the absolute path of the host file it names.
    """
    if kind == 'vmdk-flat-extent':
        meta = _vmdk_descriptor(host)
    else:
        scratch = os.path.join(work_dir, 'x' * (len(host) - len(
            os.path.join(work_dir, '')) - len('.data')))
        meta = _qcow2_metadata(kind, host, scratch)
    boot, rest = meta[:512], meta[512:]
    assert not boot[_BOOT_CODE:].strip(b'\0'), 'header overlaps the MBR'
    assert len(meta) <= _GAP[1], 'metadata does not fit in the MBR gap'
    with open(guest_raw, 'r+b') as f:
        f.seek(0)
        f.write(boot[:_BOOT_CODE])
        f.seek(_GAP[0])
        f.write(rest)
    return guest_raw
