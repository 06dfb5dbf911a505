"""Where the guest kernel holds copies of data that passed through IPC.

For one object each reader returns a :class:`KernelCopies`: whole frames
the object owns (anonymous pipe pages), kernel virtual byte ranges inside
shared allocations (socket buffers, tty buffers), and the parts it leaves
alone with the reason (a page-cache page spliced into a pipe belongs to a
file, not to the writer).

* Pipes: only the live slots ``[tail, head)`` of the ring and the spare
  ``tmp_page``. A stale slot may point at a page that is now someone
  else's, so it is never touched.
* Unix sockets: every ``sk_buff`` on the receive queue: its linear data
  ``[data, tail)`` and its page fragments.
* Terminals: the n_tty line discipline's read and echo buffers, the
  driver write buffer, and the flip buffers of the port (queued and on
  the free list).
* Shared memory (memfd, tmpfs, SysV, ``MAP_SHARED`` anonymous): the frames
  of the inode's page cache.

All walks are bounded; counts and pointers that contradict the kernel's
own limits raise :class:`~.walk.CorruptStructure`.
"""

import dataclasses

import drgn

from sparc_nova.introspect import pagecache
from sparc_nova.introspect import walk

AF_UNIX = 1
SOCK_TYPES = {1: 'stream', 2: 'dgram', 5: 'seqpacket'}
#: Pipe rings are at most ``pipe_max_size`` (1 MiB by default; raised
#: sysctls allow more) pages.
MAX_PIPE_SLOTS = 1 << 20
#: Most sk_buffs walked on one receive queue (unix sockets are limited by
#: ``sk_rcvbuf``; 1 Mi is far beyond any real queue).
MAX_SKBS = 1 << 20
#: Most fragments per sk_buff (MAX_SKB_FRAGS is 17, configurable to 45).
MAX_SKB_FRAGS = 64
#: Largest linear sk_buff area accepted (bytes).
MAX_SKB_LINEAR = 1 << 24
#: Most flip buffers on one tty port (tty_bufhead.mem_limit is 64 KiB of
#: at least 256-byte buffers).
MAX_TTY_BUFFERS = 4096
MAX_TTY_BUFFER_SIZE = 1 << 20
TTY_DRIVER_TYPE_PTY = 0x0004
PTY_TYPE_MASTER = 0x0001


@dataclasses.dataclass
class KernelCopies:
    """Kernel-held copies of one IPC object's data.

    :ivar frames: frames owned by the object (scrubbed whole).
    :ivar ranges: ``(kernel virtual address, length)`` byte ranges.
    :ivar phys_ranges: ``(guest physical address, length)`` byte ranges
        (page fragments, addressed by frame).
    :ivar data_bytes: bytes of data queued or held.
    :ivar flag_clears: ``(struct page *, bit)``: page flags to clear
        (``PG_uptodate`` of a page-cache page whose content is dropped,
        so that the guest reads it again from its disk).
    :ivar left: parts not scrubbed, each with the reason.
    """

    object: str
    kind: str
    frames: list[int] = dataclasses.field(default_factory=list)
    ranges: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    phys_ranges: list[tuple[int, int]] = dataclasses.field(
        default_factory=list)
    data_bytes: int = 0
    flag_clears: list[tuple[int, int]] = dataclasses.field(
        default_factory=list)
    left: list[str] = dataclasses.field(default_factory=list)


def _corrupt(what, e):
    return walk.CorruptStructure('%s is unreadable (%s)' % (what, e))


class IpcReader:
    """Read IPC kernel objects of one guest kernel."""

    def __init__(self, kernel, page_model):
        self.kernel = kernel
        self.prog = kernel.prog
        self.pages = page_model
        sym = kernel.symbol_address
        self.anon_pipe_ops = {a for a in (sym('anon_pipe_buf_ops'),
                                          sym('packet_pipe_buf_ops'))
                              if a}
        self.n_tty_ops = sym('n_tty_ops')
        self.ring = kernel.has_member('struct pipe_inode_info', 'head')

    # -- pipes -----------------------------------------------------------

    def pipe(self, inode_addr: int, name: str) -> KernelCopies:
        """The live buffers of the pipe of inode ``inode_addr``."""
        prog = self.prog
        out = KernelCopies(name, 'pipe')
        try:
            inode = drgn.Object(prog, 'struct inode *', value=inode_addr)
            pipe = inode.i_pipe.read_()
            if not pipe:
                return out
            if self.ring:
                head = pipe.head.value_()
                tail = pipe.tail.value_()
                size = pipe.ring_size.value_()
                used = (head - tail) & 0xffffffff
                first = tail
            else:   # before 5.5: curbuf/nrbufs over `buffers` slots
                size = pipe.buffers.value_()
                used = pipe.nrbufs.value_()
                first = pipe.curbuf.value_()
            if not 0 <= size <= MAX_PIPE_SLOTS or size & (size - 1) \
                    or used > size:
                raise walk.CorruptStructure(
                    '%s: ring of %d slots with %d in use' % (name, size,
                                                             used))
            slots = [(first + i) & (size - 1) for i in range(used)]
            bufs = pipe.bufs.read_()
            for slot in slots:
                buf = bufs[slot]
                length = buf.len.value_()
                out.data_bytes += length
                page = buf.page.value_()
                if not page:
                    continue
                if buf.ops.value_() in self.anon_pipe_ops:
                    out.frames.append(self.pages.pfn_of_page(page))
                else:
                    out.left.append('a buffer of %d bytes holds a page '
                                    'the pipe does not own (spliced '
                                    'file or user page)' % length)
            tmp = pipe.tmp_page.value_()
            if tmp:
                out.frames.append(self.pages.pfn_of_page(tmp))
        except drgn.FaultError as e:
            raise _corrupt(name, e)
        return out

    # -- unix sockets ----------------------------------------------------

    def socket(self, file_addr: int) -> dict | None:
        """``{'sk', 'peer', 'type', 'socket'}`` of a unix socket file
        (None for other families).
        """
        prog = self.prog
        try:
            file = drgn.Object(prog, 'struct file *', value=file_addr)
            sock = drgn.cast('struct socket *', file.private_data)
            sk = sock.sk.read_()
            family = sk.member_('__sk_common').skc_family.value_() \
                if sk else None
            if family != AF_UNIX:
                return None
            usk = drgn.container_of(sk, 'struct unix_sock', 'sk')
            return {'socket': sock.value_(), 'sk': sk.value_(),
                    'peer': usk.peer.value_(),
                    'type': SOCK_TYPES.get(sock.type.value_(), 'other')}
        except drgn.FaultError as e:
            raise _corrupt('socket file 0x%x' % file_addr, e)

    def receive_queue(self, sk_addr: int, name: str) -> list[tuple]:
        """``(sender sk, KernelCopies)`` per sk_buff queued on the
        receive queue of ``sk_addr``.
        """
        prog = self.prog
        out = []
        what = 'the receive queue of %s' % name
        try:
            sk = drgn.Object(prog, 'struct sock *', value=sk_addr)
            queue = sk.sk_receive_queue
            qlen = queue.qlen.value_()
            head = queue.address_of_().value_()
            limit = min(MAX_SKBS, qlen + 16)
            for node in walk.list_nodes(prog, head, limit, what):
                skb = drgn.Object(prog, 'struct sk_buff *', value=node)
                out.append((skb.sk.value_(), self._skb(skb, name)))
        except drgn.FaultError as e:
            raise _corrupt(what, e)
        return out

    def _skb(self, skb, name) -> KernelCopies:
        out = KernelCopies(name, 'unix-socket')
        head = skb.head.value_()
        data = skb.data.value_()
        tail = skb.tail.value_()
        end = skb.end.value_()
        out.data_bytes = skb.len.value_()
        if not (head <= data <= head + tail <= head + end
                and end <= MAX_SKB_LINEAR):
            raise walk.CorruptStructure(
                '%s: sk_buff 0x%x has an impossible layout (head 0x%x, '
                'data 0x%x, tail %d, end %d)' % (name, skb.value_(), head,
                                                 data, tail, end))
        if head + tail > data:
            out.ranges.append((data, head + tail - data))
        shinfo = drgn.Object(self.prog, 'struct skb_shared_info *',
                             value=head + end)
        nr = shinfo.nr_frags.value_()
        if nr > MAX_SKB_FRAGS:
            raise walk.CorruptStructure('%s: sk_buff 0x%x claims %d '
                                        'fragments' % (name, skb.value_(),
                                                       nr))
        for i in range(nr):
            frag = shinfo.frags[i]
            page, off, length = self._frag(frag)
            if not length:
                continue
            pfn = self.pages.pfn_of_page(page) + (off >> 12)
            if self._page_cache(pfn):
                out.left.append('a fragment of %d bytes lies in a '
                                'page-cache page' % length)
                continue
            out.phys_ranges.append(((pfn << 12) + (off & 0xfff), length))
        return out

    @staticmethod
    def _frag(frag):
        try:
            return (frag.bv_page.value_(), frag.bv_offset.value_(),
                    frag.bv_len.value_())
        except AttributeError:      # before 6.4's bio_vec frags
            return (frag.page.p.value_(), frag.page_offset.value_(),
                    frag.size.value_())

    def _page_cache(self, pfn: int) -> bool:
        mapping = int(self.pages.read([pfn])['mapping'][0])
        return bool(mapping) and not mapping & \
            self.kernel.consts.PAGE_MAPPING_ANON

    # -- terminals -------------------------------------------------------

    def tty_of_file(self, file_addr: int) -> int:
        """``struct tty_struct *`` of a tty file (0 if none)."""
        try:
            file = drgn.Object(self.prog, 'struct file *', value=file_addr)
            priv = drgn.cast('struct tty_file_private *', file.private_data)
            return priv.tty.value_() if priv else 0
        except drgn.FaultError as e:
            raise _corrupt('tty file 0x%x' % file_addr, e)

    def tty_info(self, tty_addr: int) -> dict:
        """``{'name', 'link', 'master', 'session'}`` of a tty (session:
        pid number of its session leader, or 0).
        """
        try:
            tty = drgn.Object(self.prog, 'struct tty_struct *',
                              value=tty_addr)
            driver = tty.driver.read_()
            master = driver.type.value_() == TTY_DRIVER_TYPE_PTY and \
                driver.subtype.value_() == PTY_TYPE_MASTER
            try:
                session = tty.ctrl.session.read_()
            except AttributeError:      # before 5.12
                session = tty.session.read_()
            sid = session.numbers[0].nr.value_() if session else 0
            return {'name': tty.name.string_().decode('utf-8', 'replace'),
                    'link': tty.link.value_(), 'master': master,
                    'session': sid}
        except drgn.FaultError as e:
            raise _corrupt('tty 0x%x' % tty_addr, e)

    def tty(self, tty_addr: int, name: str) -> KernelCopies:
        """The line discipline, write and flip buffers of one tty."""
        prog = self.prog
        out = KernelCopies(name, 'tty')
        try:
            tty = drgn.Object(prog, 'struct tty_struct *', value=tty_addr)
            ldisc = tty.ldisc.read_()
            data = tty.disc_data.value_()
            if ldisc and data and ldisc.ops.value_() == self.n_tty_ops:
                ldata = drgn.Object(prog, 'struct n_tty_data *', value=data)
                for member in ('read_buf', 'echo_buf'):
                    buf = getattr(ldata, member)
                    out.ranges.append((buf.address_,
                                       drgn.sizeof(buf.type_)))
                out.data_bytes += (ldata.commit_head.value_() -
                                   ldata.read_tail.value_()) & 0xfff
            elif data:
                out.left.append('line discipline is not n_tty')
            wbuf = tty.write_buf.value_()
            wcnt = tty.write_cnt.value_()
            if wbuf and 0 < wcnt <= MAX_TTY_BUFFER_SIZE:
                out.ranges.append((wbuf, wcnt))
            port = tty.port.read_()
            if port:
                self._flip_buffers(port.buf, name, out)
        except drgn.FaultError as e:
            raise _corrupt(name, e)
        return out

    def _flip_buffers(self, bufhead, name, out) -> None:
        sentinel = bufhead.sentinel.address_
        chains = [(bufhead.head.value_(), 'next'),
                  (bufhead.free.first.value_(), 'free')]
        seen = set()
        for node, link in chains:
            while node and node != sentinel:
                if node in seen or len(seen) >= MAX_TTY_BUFFERS:
                    raise walk.CorruptStructure(
                        '%s: the flip buffer list is cyclic or longer '
                        'than %d' % (name, MAX_TTY_BUFFERS))
                seen.add(node)
                b = drgn.Object(self.prog, 'struct tty_buffer *',
                                value=node if link == 'next' else
                                node - self._free_offset())
                size = b.size.value_()
                if not 0 <= size <= MAX_TTY_BUFFER_SIZE:
                    raise walk.CorruptStructure(
                        '%s: a flip buffer claims %d bytes' % (name, size))
                if size:
                    # tty_buffer_alloc() allocates 2 * size: the chars
                    # and their flags.
                    out.ranges.append((b.data.address_, 2 * size))
                    out.data_bytes += max(0, b.commit.value_() -
                                          b.read.value_())
                node = b.next.value_() if link == 'next' else \
                    b.free.next.value_()

    def _free_offset(self) -> int:
        # ``free`` shares its union with ``next`` at offset 0 today; take
        # it from the type so that a layout change does not mislead us.
        t = self.prog.type('struct tty_buffer')
        return drgn.offsetof(t, 'free')

    # -- shared memory ---------------------------------------------------

    def shmem_frames(self, inode_addr: int, name: str) -> KernelCopies:
        """Frames of the page cache of a shmem inode (swap entries are
        skipped: they are not in the memory checkpoint).
        """
        out = KernelCopies(name, 'shmem')
        try:
            for page, nr in pagecache.file_folios(self.kernel, inode_addr,
                                                  name):
                pfn = self.pages.pfn_of_page(page)
                out.frames.extend(range(pfn, pfn + nr))
            inode = drgn.Object(self.prog, 'struct inode *',
                                value=inode_addr)
            out.data_bytes = inode.i_size.value_()
        except drgn.FaultError as e:
            raise _corrupt(name, e)
        return out
