"""Appliance settings."""

import pytest

from sparc_nova.engine.disk import appliance


def test_backend_settings(monkeypatch):
    assert appliance.backend_settings('tcg') == ['force_tcg']
    assert appliance.backend_settings('kvm') == []
    monkeypatch.setattr(appliance, 'kvm_usable', lambda: False)
    assert appliance.backend_settings('auto') == ['force_tcg']
    monkeypatch.setattr(appliance, 'kvm_usable', lambda: True)
    assert appliance.backend_settings('auto') == []
    with pytest.raises(ValueError):
        appliance.backend_settings('hvf')


class FakeHandle:
    def __init__(self, output):
        self.output = output
        self.calls = []

    def debug(self, cmd, args):
        self.calls.append((cmd, args))
        return self.output

    def get_pid(self):
        raise RuntimeError('no hypervisor is running')


def test_run_quotes_arguments_and_checks_status():
    g = FakeHandle('done\nsparc-rc=0\n')
    assert appliance.run(g, ['tune2fs', '-O', '^has_journal',
                             "/dev/sd a'1"]) == 'done\n'
    assert "tune2fs -O '^has_journal' '/dev/sd a'\"'\"'1' 2>&1" in \
        g.calls[0][1][0]
    with pytest.raises(RuntimeError, match='exited 1'):
        appliance.run(FakeHandle('bad\nsparc-rc=1\n'), ['false'])


class SequenceHandle:
    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.rereads = []

    def debug(self, cmd, args):
        return self.outputs.pop(0)

    def get_pid(self):
        raise RuntimeError('no hypervisor is running')

    def blockdev_rereadpt(self, device):
        self.rereads.append(device)


def test_run_retries_when_the_device_node_vanished(monkeypatch):
    monkeypatch.setattr(appliance.time, 'sleep', lambda s: None)
    g = SequenceHandle([
        'ERROR: cannot open /dev/sda1: No such file or directory\n'
        'sparc-rc=1\n', 'ok\nsparc-rc=0\n'])
    assert appliance.run(g, ['btrfs', 'check', '/dev/sda1']) == 'ok\n'
    # The partition table of the disk was read again before the retry.
    assert g.rereads == ['/dev/sda']
    g = SequenceHandle(['ERROR: bad superblock\nsparc-rc=1\n'])
    with pytest.raises(RuntimeError, match='bad superblock'):
        appliance.run(g, ['btrfs', 'check', '/dev/sda1'])


@pytest.mark.parametrize('device,link', [
    ('/dev/sda', 'hd0'), ('/dev/sda1', 'hd0-part1'),
    ('/dev/sdb2', 'hd1-part2'),
    ('/dev/sdz', 'hd25'), ('/dev/sdaa1', 'hd26-part1'),
    ('/dev/mapper/crypt', None), ('/dev/sd a1', None)])
def test_kernel_device(device, link):
    expect = link and '/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_' + link
    assert appliance.kernel_device(device) == expect


def test_commands_open_the_drive_libguestfs_means():
    """The kernel may name the first drive sdb (probe order): the command
    gets the device the drive's udev link points to, not /dev/sda1.
    """
    g = FakeHandle('ok\nsparc-rc=0\n')
    appliance.run(g, ['dumpe2fs', '-h', '/dev/sda1'])
    script = g.calls[0][1][0]
    assert 'readlink -f /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_hd0-part1' \
        in script
    assert script.splitlines()[-1].startswith('dumpe2fs -h "$sparc_dev2"')


def test_only_commands_on_devices_wait_for_udev():
    g = FakeHandle('ok\nsparc-rc=0\n')
    appliance.run(g, ['e2fsck', '-f', '-n', '/dev/sda1'])
    appliance.run(g, ['blkdiscard', '-z', '/dev/mapper/sparc-luks0'])
    appliance.run(g, ['sh', '-c', 'exec rm -f -- "$@"', 'sh',
                      '/sysroot/tmp/x'])
    settles = ['udevadm settle' in args[0] for _, args in g.calls]
    assert settles == [True, True, False]


def test_launch_failure_is_escaped_and_not_chained(monkeypatch):
    import guestfs

    class Handle:
        def __init__(self, **kwargs):
            pass

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

        def launch(self):
            raise RuntimeError('appliance closed the connection: '
                               'label \x1b]0;owned\x07\nFAKE')
    monkeypatch.setattr(guestfs, 'GuestFS', Handle)
    with pytest.raises(appliance.exception.DiskScrubError) as e:
        appliance.launch('img.qcow2', [('/w.raw', False)])
    assert '\x1b' not in str(e.value) and '\n' not in str(e.value)
    assert 'label \\x1b]0;owned\\x07 FAKE' in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__
