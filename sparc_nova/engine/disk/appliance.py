"""The libguestfs appliance one scrub runs in.

One appliance is launched per scrub and every step works on that handle.
The direct backend is used (no libvirt round trip). Where /dev/kvm exists
but QEMU cannot run a KVM vCPU (nested or restricted hosts abort with
"failed to set MSR"), the appliance is forced onto TCG; ``accel='auto'``
finds out with a one-off QEMU probe that takes well under a second.
"""

import functools
import os
import re
import shlex
import subprocess
import time

from sparc_nova import exception
from sparc_nova import printable

ACCELS = ('auto', 'kvm', 'tcg')

_RC_MARK = 'sparc-rc='
#: Attempts of a command whose device node vanished for a moment, and
#: how long (seconds) each attempt waits for the node to come back.
_ATTEMPTS = 3
_NODE_WAIT_S = 30
#: A device as the libguestfs API names it: the drive's place in the
#: order drives were added (sda is the first), and the partition number.
_API_DEVICE_RE = re.compile(r'^/dev/[sv]d([a-z]+)(\d*)$')
#: The link udev makes in the appliance for added drive N (libguestfs
#: gives each drive the serial hdN) and for its partitions.
_BY_ID = '/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_hd%d%s'


@functools.lru_cache(maxsize=1)
def kvm_usable() -> bool:
    """True when QEMU can create a KVM vCPU on this host (cached)."""
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return False
    try:
        result = subprocess.run(
            ['qemu-system-x86_64', '-accel', 'kvm', '-cpu', 'host',
             '-machine', 'pc', '-m', '64', '-nodefaults', '-no-user-config',
             '-display', 'none', '-monitor', 'stdio'],
            input='quit\n', capture_output=True, text=True, timeout=30,
            check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def backend_settings(accel: str) -> list[str]:
    """libguestfs backend settings for ``accel`` (auto, kvm or tcg)."""
    if accel not in ACCELS:
        raise ValueError('accel must be one of %s' % ', '.join(ACCELS))
    if accel == 'tcg' or (accel == 'auto' and not kvm_usable()):
        return ['force_tcg']
    return []


def launch(path: str, drives: list[tuple[str, bool]], accel: str = 'auto',
           memsize_mib: int = 0):
    """A launched appliance with ``drives`` attached, in order.

    ``drives`` are ``(raw_file, readonly)`` pairs; writable ones are
    attached with discard enabled so that trims punch holes in the file.
    ``path`` is the image named in errors.

    :raises DiskScrubError: the appliance did not start.
    """
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    g.set_backend('direct')
    g.set_backend_settings(backend_settings(accel))
    if memsize_mib:
        g.set_memsize(memsize_mib)
    for drive, readonly in drives:
        g.add_drive_opts(drive, format='raw', readonly=readonly,
                         discard='disable' if readonly else 'enable')
    try:
        g.launch()
    except RuntimeError as e:
        g.close()
        # The message can hold the appliance console's tail: escaped, and
        # not chained (the chain would show it unescaped).
        raise exception.DiskScrubError(
            path, 'the libguestfs appliance did not start: %s'
            % printable.printable(' '.join(str(e).split()), limit=800)
        ) from None
    return g


def run(g, argv: list[str]) -> str:
    """Run a command of the appliance's own userland and return its
    output (stdout and stderr).

    libguestfs has no API for some steps a scrub needs (removing and
    re-creating an ext4 journal, checking a filesystem without repairing
    it, scanning a decrypted volume for byte strings); they run the
    appliance's e2fsprogs, xfsprogs, btrfs-progs and grep through the
    debug shell. Devices in ``argv`` are named as the libguestfs API
    names them (see :func:`kernel_device`).

    :raises RuntimeError: the command exited non-zero (its output is in
        the message; callers wrap it into a DiskScrubError).
    """
    devices = [a for a in argv if a.startswith('/dev/')]
    for attempt in range(_ATTEMPTS):
        status, body = run_status(g, argv)
        if status == 0:
            return body
        if not _device_vanished(body, devices):
            break
        # udev re-reads a whole disk's partition table when a writer
        # closes it, and the partition links disappear for a moment: the
        # command could not open its device and did nothing. Ask the
        # kernel to read the table of the disk again, then try again.
        _reread_partitions(g, devices)
        time.sleep(2)
    if _device_vanished(body, devices):
        body += '\n' + _block_devices(g)
    raise RuntimeError('%s exited %d: %s' % (argv[0], status,
                                             body.strip()[-800:]))


def _block_devices(g) -> str:
    """What the appliance's kernel and /dev hold (for an error message:
    device names and sizes only).
    """
    try:
        return g.debug('sh', [
            'echo "kernel:"; cat /proc/partitions; echo "/dev:"; '
            'ls /dev | grep -E "^[sv]d" | tr "\\n" " "'])
    except RuntimeError as e:
        return 'appliance devices unknown: %s' % e


def _reread_partitions(g, devices: list[str]) -> None:
    partitions = [m for m in map(_API_DEVICE_RE.match, devices)
                  if m and m.group(2)]
    for disk in sorted({m.group(0)[:-len(m.group(2))] for m in partitions}):
        try:
            g.blockdev_rereadpt(disk)
        except RuntimeError:
            pass    # busy or gone: the next attempt reports the error


def _device_vanished(output: str, devices: list[str]) -> bool:
    return bool(devices) and 'No such file or directory' in output and \
        '/dev/' in output


def kernel_device(device: str) -> str | None:
    """The appliance's udev link to ``device``, a device as the
    libguestfs API names it (``/dev/sda1``); None if it is not one.

    The appliance kernel names disks in the order it probes them, which
    is not always the order the drives were added: the appliance's own
    root disk can take ``sda`` and push the first drive to ``sdb``.
    libguestfs translates names in its API calls; a command run through
    the debug shell must do the same, or it opens another disk (or a
    partition that does not exist).
    """
    m = _API_DEVICE_RE.match(device)
    if not m:
        return None
    index = 0
    for letter in m.group(1):
        index = index * 26 + ord(letter) - ord('a') + 1
    part = m.group(2)
    return _BY_ID % (index - 1, '-part' + part if part else '')


def run_status(g, argv: list[str]) -> tuple[int, str]:
    """Like :func:`run` but return ``(exit_status, output)``."""
    # Wait for udev first, as libguestfs' own calls do, then for the link
    # of each device the command names (a partition disappears while
    # udev re-reads its disk's partition table, which can take seconds
    # under TCG), and give the command the kernel's name it points to.
    # Where the appliance has no such links the name is used as it is.
    lines = ['udevadm settle >/dev/null 2>&1',
             'have_ids() { [ -e %s ]; }' % (_BY_ID % (0, ''))]
    args = []
    for a in argv:
        link = kernel_device(a)
        if link is None:
            args.append(shlex.quote(a))
            continue
        var = 'sparc_dev%d' % len(args)
        lines.append(
            'if have_ids; then n=0; while [ ! -e %(l)s ] && [ $n -lt %(w)d ];'
            ' do sleep 0.1; n=$((n+1)); done; %(v)s=$(readlink -f %(l)s); '
            'else %(v)s=%(a)s; fi'
            % {'l': link, 'w': _NODE_WAIT_S * 10, 'v': var,
               'a': shlex.quote(a)})
        args.append('"$%s"' % var)
    lines.append('%s 2>&1; echo %s$?' % (' '.join(args), _RC_MARK))
    out = g.debug('sh', ['\n'.join(lines)])
    body, _, rc = out.rpartition(_RC_MARK)
    return int(rc.strip() or '255'), body
