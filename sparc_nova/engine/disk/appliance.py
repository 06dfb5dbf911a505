"""The libguestfs appliance one scrub runs in.

One appliance is launched per scrub and every step works on that handle.
The direct backend is used (no libvirt round trip), with the
``qemu-system-x86_64`` found on ``PATH`` (the one the KVM probe ran).

KVM is used only where it is proven to run guest code: on some hosts
``/dev/kvm`` opens and QEMU creates a vCPU, and then the vCPU never runs
(nested virtualisation gone wrong) or QEMU aborts ("failed to set MSR").
``accel='auto'`` finds out with a probe that boots the host's kernel and
waits, under a deadline, for its first message (:func:`kvm_usable`).
Whatever the probe said, a launch that does not finish within its deadline
is killed and, if it was not on TCG, tried once more on TCG
(:func:`launch`); every command run in the appliance has a deadline too
(:func:`run`).
"""

import functools
import glob
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time

from sparc_nova import exception
from sparc_nova import printable

__all__ = ['ACCELS', 'QEMU', 'KVM_PROBE_TIMEOUT', 'LAUNCH_TIMEOUT',
           'CALL_TIMEOUT', 'ApplianceTimeout', 'kvm_usable', 'kernel_runs',
           'backend_settings', 'launch', 'supermin_dir', 'run',
           'kernel_device', 'run_status']

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

QEMU = 'qemu-system-x86_64'
#: Seconds the KVM probe waits for the kernel's first message (well
#: under a second on a working KVM, 1-2 s even under TCG).
KVM_PROBE_TIMEOUT = 10
#: The kernel's first message on an early serial console.
_KERNEL_BANNER = b'Linux version'
#: Default seconds an appliance launch may take (21-28 s measured under
#: TCG); scrubs take theirs from [sparc] disk_appliance_launch_timeout_s.
LAUNCH_TIMEOUT = 300
#: Seconds one command in the appliance may take (wiping free space runs
#: at 30-40 MB/s under TCG: an hour covers 100 GB).
CALL_TIMEOUT = 3600


class ApplianceTimeout(exception.SparcError):
    """The appliance did not answer within its deadline; it was killed."""


@functools.lru_cache(maxsize=1)
def kvm_usable(timeout: float = KVM_PROBE_TIMEOUT) -> bool:
    """True when QEMU runs a Linux kernel on a KVM vCPU here (cached):
    see :func:`kernel_runs`. Creating the vCPU is not enough, and neither
    is the firmware: on some hosts real-mode code runs and the kernel then
    stops before its first message.
    """
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return False
    return kernel_runs('kvm', timeout)


def _probe_kernel() -> str | None:
    """A readable kernel of the host (linux-image-amd64 is a dependency:
    libguestfs boots its appliance from it too).
    """
    for path in sorted(glob.glob('/boot/vmlinuz-*'), reverse=True):
        if os.access(path, os.R_OK):
            return path
    return None


def kernel_runs(accel: str, timeout: float) -> bool:
    """Whether QEMU with accelerator ``accel`` runs the host's kernel to
    its first message (``Linux version``, printed from 64-bit code early
    in boot) on the serial console within ``timeout`` seconds, with the
    host CPU model on KVM as the appliance would run. QEMU is killed
    either way; no kernel to boot means False.
    """
    kernel = _probe_kernel()
    if kernel is None:
        return False
    argv = [QEMU, '-accel', accel, '-machine', 'pc', '-m', '256',
            '-nodefaults', '-no-user-config', '-display', 'none',
            '-kernel', kernel, '-append',
            'console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1',
            '-serial', 'stdio', '-no-reboot']
    if accel == 'kvm':
        argv[3:3] = ['-cpu', 'host']
    try:
        # In the caller's process group: whoever kills the caller's group
        # (a timeout, the crash tests) kills the probe with it; a probe in
        # a session of its own would outlive a killed caller, stuck in
        # its vCPU.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return False
    seen = b''
    deadline = time.monotonic() + timeout
    try:
        while _KERNEL_BANNER not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if not ready:
                return False
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:           # QEMU exited (e.g. an MSR abort)
                return False
            seen = (seen + chunk)[-4096:]
        return True
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


def backend_settings(accel: str) -> list[str]:
    """libguestfs backend settings for ``accel`` (auto, kvm or tcg)."""
    if accel not in ACCELS:
        raise ValueError('accel must be one of %s' % ', '.join(ACCELS))
    if accel == 'tcg' or (accel == 'auto' and not kvm_usable()):
        return ['force_tcg']
    return []


def launch(path: str, drives: list[tuple[str, bool]], accel: str = 'auto',
           memsize_mib: int = 0, timeout: float = LAUNCH_TIMEOUT,
           notes: list | None = None, appliance_dir: str | None = None):
    """A launched appliance with ``drives`` attached, in order.

    ``drives`` are ``(raw_file, readonly)`` pairs; writable ones are
    attached with discard enabled so that trims punch holes in the file.
    ``path`` is the image named in errors. ``appliance_dir`` is a fixed
    appliance to boot (:func:`.fast_boot.prepare`); None boots
    libguestfs' own. A launch that takes longer than ``timeout`` seconds
    is killed. A launch with KVM allowed that was killed, or that failed
    (a half-working KVM can also make QEMU abort at once, e.g. on a vCPU
    register it cannot set), is tried once more on TCG, and a line
    saying so is appended to ``notes``. When ``appliance_dir`` does not
    start either way, libguestfs' own appliance is tried the same way,
    and ``notes`` says so too.

    :raises DiskScrubError: the appliance did not start.
    """
    if appliance_dir is None:
        return _launch_any_accel(path, drives, accel, memsize_mib, timeout,
                                 notes, None)
    try:
        return _launch_any_accel(path, drives, accel, memsize_mib, timeout,
                                 notes, appliance_dir)
    except exception.DiskScrubError as e:
        if notes is not None:
            notes.append('the libguestfs appliance in %s did not start (%s); '
                         "libguestfs' own appliance was booted"
                         % (appliance_dir, e.reason))
    return _launch_any_accel(path, drives, accel, memsize_mib, timeout,
                             notes, None)


def _launch_any_accel(path, drives, accel, memsize_mib, timeout, notes,
                      appliance_dir):
    settings = backend_settings(accel)
    try:
        return _launch(path, drives, settings, memsize_mib, timeout,
                       appliance_dir)
    except ApplianceTimeout as e:
        if 'force_tcg' in settings:
            raise exception.DiskScrubError(
                path, 'the libguestfs appliance did not start: %s' % e)
        what = 'did not start within %d s with KVM allowed; it was ' \
               'killed' % timeout
    except exception.DiskScrubError:
        if 'force_tcg' in settings:
            raise
        what = 'failed to start with KVM allowed'
    if notes is not None:
        notes.append('the libguestfs appliance %s and started on TCG'
                     % what)
    try:
        return _launch(path, drives, ['force_tcg'], memsize_mib, timeout,
                       appliance_dir)
    except ApplianceTimeout as e:
        raise exception.DiskScrubError(
            path, 'the libguestfs appliance did not start on TCG either: '
                  '%s' % e)


def supermin_dir() -> str:
    """libguestfs' supermin input directory (``<path>/supermin.d``), from
    which its own appliance, and :mod:`.fast_boot`'s, are built.
    """
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    try:
        return os.path.join(g.get_path(), 'supermin.d')
    finally:
        g.close()


def _launch(path, drives, settings, memsize_mib, timeout, appliance_dir):
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    g.set_backend('direct')
    if appliance_dir is not None:
        g.set_path(appliance_dir)
    hv = shutil.which(QEMU)
    if hv:
        g.set_hv(hv)
    g.set_backend_settings(settings)
    if memsize_mib:
        g.set_memsize(memsize_mib)
    for drive, readonly in drives:
        g.add_drive_opts(drive, format='raw', readonly=readonly,
                         discard='disable' if readonly else 'enable')
    before = _children()
    watchdog = _Watchdog(timeout, lambda: _children() - before)
    try:
        with watchdog:
            g.launch()
    except RuntimeError as e:
        g.close()
        if watchdog.fired:
            raise ApplianceTimeout('no answer within %d s' % timeout)
        # The message can hold the appliance console's tail: escaped, and
        # not chained (the chain would show it unescaped).
        raise exception.DiskScrubError(
            path, 'the libguestfs appliance did not start: %s'
            % printable.printable(' '.join(str(e).split()), limit=800)
        ) from None
    return g


def _children() -> set[int]:
    """Pids of this process's children (libguestfs' direct backend runs
    QEMU as one).
    """
    me = str(os.getpid())
    out = set()
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name, 'rb') as f:
                stat = f.read().decode('ascii', 'replace')
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields
        # after it start after the last ')'.
        fields = stat[stat.rfind(')') + 2:].split()
        if len(fields) > 1 and fields[1] == me:
            out.add(int(name))
    return out


class _Watchdog:
    """Kill the processes ``victims()`` returns if the ``with`` block is
    still running after ``timeout`` seconds; ``fired`` tells whether it
    did. The block then fails on its own (libguestfs calls raise once
    their QEMU is gone).
    """

    def __init__(self, timeout: float, victims):
        self.fired = False
        self._victims = victims
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def _fire(self):
        self.fired = True
        for pid in self._victims():
            if pid <= 1:
                continue        # never a process group or init
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()


def _appliance_pid(g) -> set[int]:
    try:
        return {g.get_pid()}
    except RuntimeError:
        return set()


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


def run_status(g, argv: list[str], timeout: float = CALL_TIMEOUT
               ) -> tuple[int, str]:
    """Like :func:`run` but return ``(exit_status, output)``.

    :raises ApplianceTimeout: the command ran past ``timeout`` seconds
        (the appliance is killed: the handle is unusable afterwards).
    """
    # Wait for udev first, as libguestfs' own calls do, then for the link
    # of each device the command names (a partition disappears while
    # udev re-reads its disk's partition table, which can take seconds
    # under TCG), and give the command the kernel's name it points to.
    # Where the appliance has no such links the name is used as it is.
    # A command that names no device (it works on files of the mounted
    # tree) does not wait for udev: a settle costs 0.2-0.5 s under TCG.
    lines = ['have_ids() { [ -e %s ]; }' % (_BY_ID % (0, ''))]
    if any(a.startswith('/dev/') for a in argv):
        lines.insert(0, 'udevadm settle >/dev/null 2>&1')
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
    # The appliance's pid is taken now: libguestfs serialises calls on a
    # handle, so the watchdog could not ask for it while debug() runs.
    pids = _appliance_pid(g)
    watchdog = _Watchdog(timeout, lambda: pids)
    try:
        with watchdog:
            out = g.debug('sh', ['\n'.join(lines)])
    except RuntimeError:
        if watchdog.fired:
            raise ApplianceTimeout('%s ran longer than %d s in the '
                                   'appliance' % (argv[0], timeout))
        raise
    body, _, rc = out.rpartition(_RC_MARK)
    return int(rc.strip() or '255'), body
