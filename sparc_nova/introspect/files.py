"""Open files of guest processes and what each one is.

A process's files are its file descriptor table (``task->files->fdt``)
and the files its shared mappings map (``vma->vm_file`` of ``VM_SHARED``
VMAs: SysV segments, memfds, ``MAP_SHARED`` anonymous memory, mapped
files). Each file is classified by its ``file_operations`` and its inode:
pipe, socket, tty, memfd, shmem, sysv-shm, regular file, other.

Object names follow what ``readlink /proc/PID/fd/N`` shows in the guest:
``pipe:[INODE]``, ``socket:[INODE]``, a path otherwise.

Everything is read under a read budget and with bounded counts: a file
table whose size or pointers are implausible raises
:class:`~.walk.CorruptStructure`.
"""

import dataclasses

import drgn
from drgn.helpers.linux import fs as fs_helpers
import numpy as np

from sparc_nova.introspect import addrspace
from sparc_nova.introspect import walk

#: Largest fd table accepted (the kernel's ``sysctl_nr_open`` ceiling
#: is INT_MAX, its default 1 Mi; a table beyond this is treated as
#: corrupt).
MAX_FDS = 1 << 20
#: Reads allowed to resolve one file name.
NAME_BUDGET = 20000

FMODE_READ = 0x1
FMODE_WRITE = 0x2
VM_SHARED = 0x8
S_IFMT = 0o170000
S_IFREG = 0o100000
S_IFIFO = 0o010000
S_IFSOCK = 0o140000
PIPEFS_MAGIC = 0x50495045

#: ``file_operations`` symbols that mark a tty.
TTY_FOPS = ('tty_fops', 'ptmx_fops', 'console_fops', 'hung_up_tty_fops')


@dataclasses.dataclass
class OpenFile:
    """One file a process holds, through an fd or a shared mapping.

    :ivar fd: the descriptor, or -1 for a mapping.
    :ivar file: ``struct file *``.
    :ivar inode: ``struct inode *``.
    :ivar kind: pipe, socket, tty, memfd, shmem, sysv-shm, file, other.
    :ivar mode: ``r``, ``w`` or ``rw`` (``f_mode``).
    :ivar object: the name ``/proc/PID/fd/N`` shows.
    """

    pid: int
    fd: int
    file: int
    inode: int
    ino: int
    kind: str
    mode: str
    object: str

    def as_dict(self) -> dict:
        out = {'fd': self.fd, 'kind': self.kind, 'object': self.object,
               'mode': self.mode}
        if self.fd < 0:
            del out['fd']
        return out


class FileClassifier:
    """Classify ``struct file`` objects of one kernel by their
    ``file_operations`` (symbols read once).
    """

    def __init__(self, kernel):
        self.kernel = kernel
        sym = kernel.symbol_address
        self.pipe_fops = sym('pipefifo_fops')
        self.socket_fops = sym('socket_file_ops')
        self.sysv_fops = {a for a in (sym('shm_file_operations'),
                                      sym('shm_file_operations_huge'))
                          if a}
        self.tty_fops = {a for a in map(sym, TTY_FOPS) if a}
        self.shmem_aops = sym('shmem_aops')
        self._cache: dict[int, tuple] = {}

    def classify(self, file: drgn.Object) -> tuple[int, int, str, str, str]:
        """``(inode address, inode number, kind, mode, object)`` of
        ``file`` (a ``struct file *``); cached per file.
        """
        addr = file.value_()
        hit = self._cache.get(addr)
        if hit is not None:
            return hit
        fops = file.f_op.value_()
        inode = file.f_inode.read_()
        ino = inode.i_ino.value_()
        imode = inode.i_mode.value_() & S_IFMT
        fmode = file.f_mode.value_()
        mode = ('r' if fmode & FMODE_READ else '') + \
            ('w' if fmode & FMODE_WRITE else '')
        if fops == self.pipe_fops and imode == S_IFIFO:
            anon = inode.i_sb.s_magic.value_() == PIPEFS_MAGIC
            kind, name = 'pipe', ('pipe:[%d]' % ino if anon else None)
        elif fops == self.socket_fops and imode == S_IFSOCK:
            kind, name = 'socket', 'socket:[%d]' % ino
        elif fops in self.sysv_fops:
            kind, name = 'sysv-shm', self.sysv_name(file)
        elif fops in self.tty_fops:
            kind, name = 'tty', None
        elif self.shmem_aops and \
                inode.i_mapping.a_ops.value_() == self.shmem_aops:
            kind, name = 'shmem', None
        elif imode == S_IFREG:
            kind, name = 'file', None
        else:
            kind, name = 'other', None
        if name is None:
            name = self.path(file)
            if name.startswith('['):
                # An internal mount (shm_mnt for memfds, SysV segments
                # and shared anonymous memory): the guest prints
                # "/" + the dentry's name.
                name = '/' + self.dentry_name(file)
            if kind == 'shmem' and name.startswith('/memfd:'):
                kind = 'memfd'
            if kind in ('shmem', 'memfd', 'file') and \
                    inode.i_nlink.value_() == 0:
                name += ' (deleted)'
        out = (inode.value_(), ino, kind, mode, name)
        self._cache[addr] = out
        return out

    def sysv_name(self, file: drgn.Object) -> str:
        """``sysv-shm:[key 0xKEY id ID]`` of a SysV segment's file: the id
        from its ``shm_file_data``, the key from the name the kernel gave
        its shmem file (``SYSV%08x``).
        """
        sfd = drgn.cast('struct shm_file_data *', file.private_data)
        ident = sfd.id.value_()
        base = self.dentry_name(sfd.file.read_())
        key = int(base[4:], 16) if base.startswith('SYSV') and \
            len(base) == 12 and all(c in '0123456789abcdef'
                                    for c in base[4:]) else -1
        return 'sysv-shm:[key %s id %d]' % (
            '0x%x' % key if key >= 0 else '?', ident)

    def dentry_name(self, file: drgn.Object) -> str:
        try:
            name = file.f_path.dentry.d_name
            size = min(name.len.value_(), 255)
            return self.kernel.prog.read(name.name.value_(), size).decode(
                'utf-8', 'replace')
        except (drgn.FaultError, LookupError, ValueError):
            return '?'

    def path(self, file: drgn.Object) -> str:
        """The file's path as the guest would print it (``?`` if it
        cannot be resolved within the read budget).
        """
        try:
            with self.kernel.budget(NAME_BUDGET, 'resolving a file name'):
                return fs_helpers.d_path(file.f_path.address_of_()).decode(
                    'utf-8', 'replace')
        except (drgn.FaultError, LookupError, ValueError):
            return '?'


def open_files(kernel, classifier: FileClassifier, pid: int,
               task_addr: int) -> list[OpenFile]:
    """The fd table of the process whose leader is at ``task_addr``
    (an empty list for a task without one).

    :raises walk.CorruptStructure: the table is unreadable or implausible.
    """
    prog = kernel.prog
    task = drgn.Object(prog, 'struct task_struct *', value=task_addr)
    try:
        files = task.files.read_()
        if not files:
            return []
        fdt = files.fdt.read_()
        max_fds = fdt.max_fds.value_()
        if not 0 < max_fds <= MAX_FDS:
            raise walk.CorruptStructure(
                'pid %d: fd table claims %d slots (at most %d)'
                % (pid, max_fds, MAX_FDS))
        bitmap = prog.read(fdt.open_fds.value_(), (max_fds + 7) // 8)
        fds = np.nonzero(np.unpackbits(np.frombuffer(bitmap, np.uint8),
                                       bitorder='little'))[0]
        fds = fds[fds < max_fds]
        array = fdt.fd.value_()
        out = []
        for fd in fds.tolist():
            ptr = prog.read_u64(array + 8 * fd)
            if not ptr:
                continue
            file = drgn.Object(prog, 'struct file *', value=ptr)
            inode, ino, kind, mode, name = classifier.classify(file)
            out.append(OpenFile(pid, fd, ptr, inode, ino, kind, mode,
                                name))
        return out
    except drgn.FaultError as e:
        raise walk.CorruptStructure('pid %d: the fd table is unreadable '
                                    '(%s)' % (pid, e))


def shared_mappings(kernel, classifier: FileClassifier, pid: int,
                    mm_addr: int) -> list[OpenFile]:
    """Files mapped ``MAP_SHARED`` by the address space ``mm_addr``, one
    entry per file (fd -1; the mode is the mapping's access).
    """
    if not mm_addr:
        return []
    prog = kernel.prog
    mm = drgn.Object(prog, 'struct mm_struct *', value=mm_addr)
    out = {}
    try:
        for _, _, flags, file_addr in addrspace.vma_list(kernel, mm):
            if not flags & VM_SHARED or not file_addr:
                continue
            file = drgn.Object(prog, 'struct file *', value=file_addr)
            inode, ino, kind, _, name = classifier.classify(file)
            mode = ('r' if flags & 0x1 else '') + \
                ('w' if flags & 0x2 else '')
            prev = out.get(inode)
            if prev is not None:
                mode = ''.join(sorted(set(prev.mode + mode),
                                      key='rw'.index))
            out[inode] = OpenFile(pid, -1, file_addr, inode, ino, kind,
                                  mode, name)
    except drgn.FaultError as e:
        raise walk.CorruptStructure('pid %d: a shared mapping is '
                                    'unreadable (%s)' % (pid, e))
    return list(out.values())
