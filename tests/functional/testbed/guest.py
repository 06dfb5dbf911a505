"""Run test bed guests under libvirt (domain type ``qemu``: TCG).

A :class:`Guest` is a persistent libvirt domain booting the test bed's
kernel and initramfs. Its serial console is a unix socket (the tests type
shell commands into it) logged to a file (the tests wait for patterns in
it). The guest prints heartbeats once a second.
"""

import os
import re
import socket
import subprocess
import threading
import time
import uuid
from xml.sax import saxutils

import libvirt

from tests.functional.testbed import build

URI = os.environ.get('SPARC_TEST_LIBVIRT_URI', 'qemu:///system')

DISK_XML = """    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
"""

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
{cpu}  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='unix'>
      <source mode='bind' path='{socket}'/>
      <log file='{log}' append='on'/>
      <target port='0'/>
    </serial>
{disk}    <memballoon model='none'/>
  </devices>
</domain>
"""

DEFAULT_CMDLINE = 'console=ttyS0 panic=-1 loglevel=4'
#: A CPU with 5-level paging (TCG's ``max`` model has it): the guest
#: kernel then runs with ``pgtable_l5_enabled``.
LA57_CPU = """  <cpu mode='maximum'>
    <feature policy='require' name='la57'/>
  </cpu>
"""
OOPS_RE = re.compile(r'(Oops|BUG:|Kernel panic|general protection fault|'
                     r'WARNING: CPU)')


class GuestError(Exception):
    pass


_event_loop_started = False


def embedded_uri(root: str, qemu_conf: str = '') -> str:
    """A private libvirt QEMU driver running inside this process
    (``qemu:///embed``) with its own ``qemu.conf``, e.g. to write save
    images with ``save_image_format = "xz"`` without touching the system
    libvirtd. Starts libvirt's event loop thread once per process.
    """
    global _event_loop_started
    os.makedirs(os.path.join(root, 'etc'), exist_ok=True)
    with open(os.path.join(root, 'etc', 'qemu.conf'), 'w') as f:
        f.write('stdio_handler = "file"\n' + qemu_conf)
    if not _event_loop_started:
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()
        threading.Thread(target=run, daemon=True).start()
        _event_loop_started = True
    return 'qemu:///embed?root=%s' % root


def ensure_daemons() -> None:
    """Start virtlogd and libvirtd when they are not running (no systemd
    in CI).
    """
    for daemon in ('virtlogd', 'libvirtd'):
        if subprocess.run(['pgrep', '-x', daemon],
                          capture_output=True).returncode != 0:
            subprocess.run([daemon, '-d'], check=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            libvirt.open(URI).close()
            return
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Guest:
    """A libvirt TCG guest booting a :class:`build.GuestImage`."""

    def __init__(self, image: build.GuestImage, memory_mib: int = 256,
                 vcpus: int = 2, machine: str = 'pc',
                 cmdline: str = DEFAULT_CMDLINE, name: str | None = None,
                 uri: str = URI, la57: bool = False,
                 disk: str | None = None):
        self.image = image
        #: A qcow2 image attached as vda (the guest does not use it; it
        #: holds the domain's internal snapshots).
        self.disk = disk
        self.la57 = la57
        self.memory_mib = memory_mib
        self.vcpus = vcpus
        self.machine = machine
        self.cmdline = cmdline
        self.name = name or 'sparc-test-%s' % uuid.uuid4().hex[:8]
        self.rundir = os.path.join(image.workdir, self.name)
        os.makedirs(self.rundir, exist_ok=True)
        os.chmod(self.rundir, 0o777)
        self.socket_path = os.path.join(self.rundir, 'console.sock')
        self.log_path = os.path.join(self.rundir, 'console.log')
        self.uri = uri
        self.conn = libvirt.open(uri)
        self.dom = None
        self._sock = None

    # -- lifecycle ---------------------------------------------------------

    def xml(self) -> str:
        q = saxutils.escape
        return DOMAIN_XML.format(
            name=self.name, memory_mib=self.memory_mib, vcpus=self.vcpus,
            machine=self.machine, kernel=q(self.image.kernel),
            initrd=q(self.image.initrd), cmdline=q(self.cmdline),
            socket=q(self.socket_path), log=q(self.log_path),
            cpu=LA57_CPU if self.la57 else '',
            disk=DISK_XML.format(path=q(self.disk)) if self.disk else '')

    def start(self, timeout: float = 120) -> None:
        """Define, boot and wait for the guest's shell."""
        self.dom = self.conn.defineXML(self.xml())
        self.dom.create()
        self.wait_for(r'SPARC-GUEST-SHELL', timeout=timeout, since=0)
        self.connect_console()
        self.wait_for(r'HEARTBEAT \d+', timeout=30)

    def connect_console(self, timeout: float = 30) -> None:
        if self._sock:
            self._sock.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.socket_path)
                self._sock = s
                # Keep reading the console: a full socket buffer makes
                # QEMU's serial device retry and garble the log.
                threading.Thread(target=self._drain_forever, args=(s,),
                                 daemon=True).start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise GuestError('console socket %s never appeared'
                                     % self.socket_path)
                time.sleep(0.2)

    def destroy(self) -> None:
        """Power off and undefine, removing any managed save. Never
        raises: used in cleanup.
        """
        if self._sock:
            self._sock.close()
            self._sock = None
        if self.dom is None:
            return
        try:
            if self.dom.isActive():
                self.dom.destroy()
        except libvirt.libvirtError:
            pass
        try:
            self.dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError:
            pass
        self.dom = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    # -- console -----------------------------------------------------------

    def console_text(self) -> str:
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def console_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def send(self, line: str) -> int:
        """Type a shell command on the console; return the log offset
        from which its output can be awaited.
        """
        offset = self.console_size()
        self._sock.sendall((line + '\n').encode())
        return offset

    @staticmethod
    def _drain_forever(sock) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def wait_for(self, pattern: str, timeout: float = 60,
                 since: int | None = None) -> re.Match:
        """Wait until ``pattern`` appears in the console log after byte
        offset ``since`` (default: the end of the log now).
        """
        if since is None:
            since = self.console_size()
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, 'rb') if os.path.exists(
                    self.log_path) else _Empty() as f:
                f.seek(since)
                text = f.read().decode('utf-8', 'replace')
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() > deadline:
                raise GuestError('timed out after %ss waiting for %r on '
                                 'the console of %s; last output:\n%s'
                                 % (timeout, pattern, self.name,
                                    text[-2000:]))
            time.sleep(0.2)

    def run(self, command: str, end_token: str, timeout: float = 60) -> str:
        """Run a shell command that prints ``end_token`` when done and
        return its output.
        """
        since = self.send(command)
        m = self.wait_for(end_token_pattern(end_token), timeout, since)
        with open(self.log_path, 'rb') as f:
            f.seek(since)
            text = f.read().decode('utf-8', 'replace')
        return text[:m.start()]

    def heartbeat(self) -> int:
        """The latest heartbeat number the guest printed."""
        beats = re.findall(r'HEARTBEAT (\d+)', self.console_text())
        return int(beats[-1]) if beats else 0

    def oopses(self) -> list[str]:
        return OOPS_RE.findall(self.console_text())

    # -- guest-side ground truth ------------------------------------------

    def start_workload(self, args: str, timeout: float = 60,
                       program: str = 'workload') -> int:
        """Start ``/bin/PROGRAM ARGS`` in the background (``workload`` or
        one of its aliases, see ``build.WORKLOAD_ALIASES``); return its pid
        once it printed READY.
        """
        # The shell prints the background job's pid (``$!``) and the
        # program its own on its READY line. The console garbles a
        # character now and then: a pid both lines agree on is taken;
        # otherwise the guest says which candidate runs ``program``.
        since = self.send('/bin/%s %s & echo "BGPID $!"' % (program, args))
        m = self.wait_for(r'READY hold marker=\d+ pid=(\d+)', timeout, since)
        with open(self.log_path, 'rb') as f:
            f.seek(since)
            shown = f.read().decode('utf-8', 'replace')
        ready = int(m.group(1))
        background = {int(p) for p in re.findall(r'(?m)^BGPID (\d+)\r?$',
                                                 shown)}
        if background == {ready}:
            return ready
        candidates = background | {ready}
        running = [pid for pid in sorted(candidates)
                   if self._comm(pid) == program[:15]]
        if len(running) != 1:
            raise GuestError('%s: cannot tell the pid of %s from the '
                             'console (candidates %s, running it: %s)'
                             % (self.name, program, sorted(candidates),
                                running))
        return running[0]

    def _comm(self, pid: int) -> str:
        """The command name of guest process ``pid`` ('' if none), read
        until two answers agree (the console may garble one).
        """
        answers = []
        for _ in range(5):
            out = self.run('echo "COMM %d $(cat /proc/%d/comm 2>/dev/null)"'
                           '; echo COMM-""END' % (pid, pid), 'COMM-END')
            found = re.findall(r'(?m)^COMM %d ?(.*?)\r?$' % pid, out)
            if found:
                answers.append(found[-1].strip())
                if answers.count(answers[-1]) >= 2:
                    return answers[-1]
        raise GuestError('%s: no two agreeing answers for the command of '
                         'pid %d: %r' % (self.name, pid, answers))

    def processes(self) -> list[dict]:
        """The guest's process list as it prints it: pid, ppid, uid,
        comm (from /proc/PID/stat and status).
        """
        script = ('for d in /proc/[0-9]*; do '
                  'if [ -r $d/stat ]; then '
                  'echo "PS $(cut -d" " -f1 $d/stat) '
                  '$(awk \'/^PPid:/{p=$2} /^Uid:/{u=$2} /^Threads:/{t=$2} '
                  'END{print p, u, t}\' $d/status) $(cat $d/comm)"; '
                  'fi; done; echo PS-""END')
        out = self.run(script, 'PS-END')
        procs = []
        for m in re.finditer(r'^PS (\d+) (\d+) (\d+) (\d+) (.*?)\r?$', out,
                             re.M):
            if not m.group(5).strip():
                # It exited between its status and its comm being read
                # (the listing's own short-lived helpers do).
                continue
            procs.append({'pid': int(m.group(1)), 'ppid': int(m.group(2)),
                          'uid': int(m.group(3)),
                          'threads': int(m.group(4)),
                          'comm': m.group(5).strip()})
        return procs

    def anon_frames(self, pids: list[int]) -> dict[int, set[int]]:
        """Exclusive anonymous frames of each pid, from the guest's own
        /proc/PID/pagemap.
        """
        # The serial console occasionally garbles a character: only
        # parts whose sum checks out are kept, and the rest asked for
        # again. Parts are kept per header (count and sum of a pid's
        # frames), so that a process whose memory changed between two
        # runs is never assembled from both.
        parts = {}
        frames = {}
        for _ in range(16):
            out = self.run('/bin/pagemap %s' % ' '.join(map(str, pids)),
                           'PAGEMAP-END', timeout=120)
            headers = {}
            for m in re.finditer(r'^PAGEMAP (\d+) (\d+) ([0-9a-f]+)\r?$',
                                 out, re.M):
                headers[int(m.group(1))] = (int(m.group(2)),
                                            int(m.group(3), 16))
            for m in re.finditer(r'^PAGEMAP-PART (\d+) (\d+) ([0-9a-f]+) '
                                 r'([0-9a-f,]+)\r?$', out, re.M):
                pid = int(m.group(1))
                try:
                    pfns = [int(x, 16) for x in m.group(4).split(',')]
                except ValueError:
                    continue
                if pid in headers and len(pfns) <= 32 and \
                        sum(pfns) == int(m.group(3), 16):
                    parts[pid, headers[pid], int(m.group(2))] = pfns
            for pid in pids:
                if pid in frames or pid not in headers:
                    continue
                count, total = headers[pid]
                got = [parts.get((pid, headers[pid], i))
                       for i in range((count + 31) // 32)]
                if None in got:
                    continue
                flat = [p for part in got for p in part]
                if len(flat) == count and sum(flat) == total:
                    frames[pid] = set(flat)
            if len(frames) == len(pids):
                return frames
        raise GuestError('pagemap output of %s stayed garbled'
                         % sorted(set(pids) - set(frames)))

    def start_ipc(self, scenario: str, idx: int,
                  timeout: float = 60) -> dict[str, int]:
        """Start ``/bin/ipc SCENARIO IDX`` in the background (see
        workloads/ipc.c); once every process of it holds its copy of
        marker IDX, return its processes as ``{role: pid}`` (e.g.
        ``{'writer': 101, 'reader': 102}``).
        """
        since = self.send('/bin/ipc %s %d &' % (scenario, idx))
        m = self.wait_for(r'READY ipc %s((?: \w+=\d+)+)\r?\n'
                          % re.escape(scenario), timeout, since)
        return {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', m.group(1))}

    def open_files(self, pids: list[int]) -> dict[int, dict[int, str]]:
        """Every open descriptor of each pid, ``{pid: {fd: link}}`` with
        link what ``readlink /proc/PID/fd/FD`` shows (``pipe:[123]``,
        ``socket:[456]``, ``/dev/pts/0``...), from the guest itself;
        ``{pid: None}`` for a pid that does not exist.
        """
        headers = {}
        links = {}
        for _ in range(8):
            out = self.run('/bin/fdlist %s' % ' '.join(map(str, pids)),
                           'FDS-END', timeout=60)
            for line in _checked_lines(out, 'FDS '):
                m = re.fullmatch(r'FDS (\d+) (-1|\d+)', line)
                if m:
                    headers[int(m.group(1))] = int(m.group(2))
            for line in _checked_lines(out, 'FD '):
                m = re.fullmatch(r'FD (\d+) (\d+) (.*)', line)
                if m:
                    links.setdefault(int(m.group(1)), {})[
                        int(m.group(2))] = m.group(3)
            if all(p in headers and
                   (headers[p] < 0 or len(links.get(p, {})) == headers[p])
                   for p in pids):
                return {p: None if headers[p] < 0 else links.get(p, {})
                        for p in pids}
        raise GuestError('fdlist output of %s stayed garbled' % pids)

    def ipc_reads(self, pids: list[int], timeout: float = 20) -> dict:
        """Make the IPC peers ``pids`` (readers, sinks, terminals of
        workloads/ipc.c) read once what is pending on their channel; return
        ``{pid: {'scenario', 'role', 'ret', 'found', 'data'}}``: ret the
        byte count or -errno (0: end of file), found whether the guest saw
        the marker in what it read, data its first 32 bytes.
        """
        got = {}
        for _ in range(8):
            since = self.send('kill -USR1 %s' % ' '.join(map(str, pids)))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                time.sleep(1)
                with open(self.log_path, 'rb') as f:
                    f.seek(since)
                    text = f.read().decode('utf-8', 'replace')
                for line in _checked_lines(text, 'IPC-READ '):
                    m = re.fullmatch(r'IPC-READ (\S+) (\S+) (\d+) (-?\d+) '
                                     r'([01]) (-|(?:[0-9a-f]{2})+)', line)
                    if not m:
                        continue
                    data = m.group(6)
                    got[int(m.group(3))] = {
                        'scenario': m.group(1), 'role': m.group(2),
                        'ret': int(m.group(4)), 'found': m.group(5) == '1',
                        'data': b'' if data == '-' else bytes.fromhex(data)}
                if set(pids) <= set(got):
                    return got
        raise GuestError('no readable IPC-READ line from %s on the console'
                         % sorted(set(pids) - set(got)))

    # -- checkpoints -------------------------------------------------------

    def disconnect_console(self) -> None:
        """Close the console connection (before the guest stops)."""
        if self._sock:
            self._sock.close()
            self._sock = None

    def save(self, path: str) -> None:
        """``virsh save``: write a save image and stop the guest."""
        self.disconnect_console()
        self.dom.save(path)

    def restore(self, path: str) -> None:
        """``virsh restore`` the save image at ``path``."""
        self.conn.restore(path)
        self.dom = self.conn.lookupByName(self.name)
        self.connect_console()

    def managed_save(self) -> str:
        """``virsh managedsave``; return the managed-save file's path."""
        self.disconnect_console()
        self.dom.managedSave()
        return '/var/lib/libvirt/qemu/save/%s.save' % self.name

    def resume_managed(self) -> None:
        self.dom.create()
        self.connect_console()

    def dump_memory(self, path: str) -> None:
        """QEMU's own memory dump (``virsh dump --memory-only``, ELF)."""
        self.dom.coreDumpWithFormat(
            path, libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_RAW,
            libvirt.VIR_DUMP_MEMORY_ONLY)

    def suspend(self) -> None:
        self.dom.suspend()

    def resume(self) -> None:
        self.dom.resume()


def end_token_pattern(token: str) -> str:
    """A regex for a line holding ``token`` as the serial console may show
    it: whole, or with one character changed, dropped or doubled (the
    console garbles a character now and then; a garbled end token must
    not turn into a minute's timeout). The token must start the line, so
    a shell's echo of the command that prints it never matches.
    """
    variants = {re.escape(token)}
    for i in range(len(token)):
        head, tail = re.escape(token[:i]), re.escape(token[i + 1:])
        variants.add(head + '.' + tail)
        variants.add(head + tail)
    for i in range(len(token) + 1):
        variants.add(re.escape(token[:i]) + '.' + re.escape(token[i:]))
    longest_first = sorted(variants, key=len, reverse=True)
    return r'(?m)^(?:%s)\r?\n' % '|'.join(longest_first)


def _checked_lines(text: str, prefix: str) -> list[str]:
    """The console lines starting with ``prefix`` that end in a valid
    checksum (the sum of the bytes before it, mod 65536, in hex), without
    it.
    """
    lines = []
    for m in re.finditer(r'^(%s.*) ([0-9a-f]{1,4})\r?$' % re.escape(prefix),
                         text, re.M):
        body = m.group(1)
        if sum(body.encode('utf-8', 'replace')) & 0xffff == \
                int(m.group(2), 16):
            lines.append(body)
    return lines


class _Empty:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def seek(self, n):
        pass

    def read(self):
        return b''
