"""Synthetic libvirt save images and QEMU migration streams.

Used by unit tests, fuzzing seeds and benchmarks. The layout follows what
QEMU 7.2 and libvirt 9.0 write (see sparc_nova/checkpoint/qemu_stream.py);
the device part holds a ``cpu`` and ``cpu_common`` section described by a
vmdesc, like a real single-vCPU guest.
"""

import json
import struct
import threading
import time

import numpy as np

PAGE = 4096
ZERO, MEM_SIZE, PAGE_F, EOS, CONT = 0x02, 0x04, 0x08, 0x10, 0x20

CPU_VMDESC = {
    'name': 'cpu', 'instance_id': 0, 'vmsd_name': 'cpu', 'version': 12,
    'fields': [
        {'name': 'env.regs', 'array_len': 16, 'type': 'uint64', 'size': 8},
        {'name': 'env.eip', 'type': 'uint64', 'size': 8},
        {'name': 'env.hflags', 'type': 'uint32', 'size': 4},
        {'name': 'env.segs', 'array_len': 6, 'type': 'struct',
         'struct': {'vmsd_name': 'segment', 'version': 1, 'fields': [
             {'name': 'selector', 'type': 'uint32', 'size': 4},
             {'name': 'base', 'type': 'uint64', 'size': 8},
             {'name': 'limit', 'type': 'uint32', 'size': 4},
             {'name': 'flags', 'type': 'uint32', 'size': 4}]},
         'size': 20},
        {'name': 'env.cr[0]', 'type': 'uint64', 'size': 8},
        {'name': 'env.cr[2]', 'type': 'uint64', 'size': 8},
        {'name': 'env.cr[3]', 'type': 'uint64', 'size': 8},
        {'name': 'env.cr[4]', 'type': 'uint64', 'size': 8},
        {'name': 'env.efer', 'type': 'uint64', 'size': 8},
        {'name': 'env.kernelgsbase', 'type': 'uint64', 'size': 8},
        {'name': 'env.blob', 'type': 'buffer', 'size': 12},
    ],
    'subsections': [{'vmsd_name': 'cpu/extra', 'version': 1, 'fields': [
        {'name': 'extra', 'type': 'uint32', 'size': 4}]}],
}
COMMON_VMDESC = {'name': 'cpu_common', 'instance_id': 0,
                 'vmsd_name': 'cpu_common', 'version': 1,
                 'fields': [{'name': 'halted', 'type': 'uint32', 'size': 4},
                            {'name': 'interrupt_request', 'type': 'uint32',
                             'size': 4}]}

CPU_VALUES = {'cr0': 0x80050033, 'cr3': 0x1234000, 'cr4': 0x6f0,
              'efer': 0xd01, 'gs_base': 0xffff888000000000,
              'kernel_gs_base': 0x7f0000000000, 'rip': 0xffffffff81000000,
              'hflags': (1 << 14)}


def _be32(v):
    return struct.pack('>I', v)


def _be64(v):
    return struct.pack('>Q', v)


def _idstr(s):
    b = s.encode()
    return bytes([len(b)]) + b


def cpu_section_payload() -> bytes:
    v = CPU_VALUES
    out = b''.join(_be64(i * 0x1111) for i in range(16))
    out += _be64(v['rip']) + _be32(v['hflags'])
    for seg in range(6):
        base = v['gs_base'] if seg == 5 else 0
        out += _be32(seg) + _be64(base) + _be32(0xffffffff) + _be32(0)
    out += (_be64(v['cr0']) + _be64(0) + _be64(v['cr3']) + _be64(v['cr4']) +
            _be64(v['efer']) + _be64(v['kernel_gs_base']) + b'\xab' * 12)
    out += b'\x05' + _idstr('cpu/extra') + _be32(1) + _be32(7)
    return out


class StreamBuilder:
    """Builds a stream in memory, record by record.

    ``pages``: list of (block, page number, content) where content is
    bytes (a PAGE record) or an int (a ZERO record with that fill byte).
    Records are written in list order; the first record of a block (and
    after a block change) carries the block name, the others CONTINUE.
    """

    def __init__(self, blocks: dict[str, int],
                 machine: str = 'pc-i440fx-7.2', vmdesc: bool = True,
                 footers: bool = True):
        self.blocks = blocks
        self.machine = machine
        self.vmdesc = vmdesc
        self.footers = footers

    def ram_start(self) -> bytes:
        total = sum(self.blocks.values())
        out = _be64(total | MEM_SIZE)
        for name, size in self.blocks.items():
            out += _idstr(name) + _be64(size)
        return out + _be64(EOS)

    def ram_records(self, pages) -> bytes:
        out = bytearray()
        current = None
        for block, page, content in pages:
            cont = CONT if block == current else 0
            if isinstance(content, int):
                out += _be64((page << 12) | ZERO | cont)
                if not cont:
                    out += _idstr(block)
                out += bytes([content])
            else:
                assert len(content) == PAGE
                out += _be64((page << 12) | PAGE_F | cont)
                if not cont:
                    out += _idstr(block)
                out += content
            current = block
        return bytes(out) + _be64(EOS)

    def footer(self, sid: int) -> bytes:
        return (b'\x7e' + _be32(sid)) if self.footers else b''

    def build(self, passes: list[list]) -> bytes:
        """A complete stream; ``passes`` are the RAM records of the END
        section and any PART sections before it.
        """
        out = bytearray(_be32(0x5145564d) + _be32(3))
        out += b'\x07' + _be32(len(self.machine)) + self.machine.encode()
        sid = 2
        out += (b'\x01' + _be32(sid) + _idstr('ram') + _be32(0) + _be32(4) +
                self.ram_start() + self.footer(sid))
        for i, records in enumerate(passes):
            kind = b'\x03' if i == len(passes) - 1 else b'\x02'
            out += kind + _be32(sid) + self.ram_records(records)
            out += self.footer(sid)
        out += (b'\x04' + _be32(3) + _idstr('cpu_common') + _be32(0) +
                _be32(1) + _be32(1) + _be32(0) + self.footer(3))
        out += (b'\x04' + _be32(4) + _idstr('cpu') + _be32(0) + _be32(12) +
                cpu_section_payload() + self.footer(4))
        out += b'\x00'
        if self.vmdesc:
            desc = json.dumps({'page_size': 4096,
                               'devices': [COMMON_VMDESC, CPU_VMDESC]})
            out += b'\x06' + _be32(len(desc)) + desc.encode()
        return bytes(out)


DOMAIN_XML = ("<domain type='qemu'><name>synthetic</name><uuid>"
              "00000000-0000-0000-0000-000000000001</uuid><memory unit='KiB'>"
              "%d</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='%s'>"
              "hvm</type></os></domain>")


def libvirt_header(ram_kib: int, machine: str = 'pc-i440fx-7.2',
                   compressed: int = 0, magic: bytes = b'LibvirtQemudSave',
                   version: int = 2) -> bytes:
    xml = (DOMAIN_XML % (ram_kib, machine)).encode() + b'\0'
    cookie = b'<cookie/>\0'
    data = xml + cookie
    data += b'\0' * (-len(data) % 4096 + 64)
    hdr = struct.pack('<16s5I14I', magic, version, len(data), 1, compressed,
                      len(xml), *([0] * 14))
    return hdr + data


def page_of(pfn: int, tag: bytes = b'PAGE') -> bytes:
    """A recognisable page: tag + frame number, repeated."""
    unit = tag + pfn.to_bytes(8, 'little')
    return (unit * (PAGE // len(unit) + 1))[:PAGE]


def simple_save(ram_pages: int = 256, machine: str = 'pc-i440fx-7.2',
                secret_pfns: tuple = (), secret: bytes = b'',
                twice: tuple = ()) -> bytes:
    """A libvirt save image with ``ram_pages`` pages of ``pc.ram``: even
    frames are data, odd frames zero; frames in ``secret_pfns`` hold
    ``secret``; frames in ``twice`` are sent in a PART pass and again in
    the END pass.
    """
    b = StreamBuilder({'pc.ram': ram_pages * PAGE, 'pc.bios': 2 * PAGE},
                      machine=machine)
    first = []
    for pfn in twice:
        first.append(('pc.ram', pfn, page_of(pfn, b'OLD!')))
    last = []
    for pfn in range(ram_pages):
        if pfn in secret_pfns:
            content = (secret + bytes(PAGE))[:PAGE]
        elif pfn % 2 == 0:
            content = page_of(pfn)
        else:
            content = 0
        last.append(('pc.ram', pfn, content))
    last += [('pc.bios', 0, page_of(0, b'BIOS')), ('pc.bios', 1, 0xff)]
    passes = [first, last] if first else [last]
    return libvirt_header(ram_pages * 4, machine) + b.build(passes)


def write_big_stream(path: str, ram_bytes: int, chunk_pages: int = 8192
                     ) -> int:
    """Write a bare QEMU stream of ``ram_bytes`` of ``pc.ram`` where every
    page is a data page (the worst case for size, the best for indexing),
    quickly with numpy. Returns the file size.
    """
    b = StreamBuilder({'pc.ram': ram_bytes}, vmdesc=True)
    head = bytearray(_be32(0x5145564d) + _be32(3))
    head += b'\x07' + _be32(len(b.machine)) + b.machine.encode()
    head += (b'\x01' + _be32(2) + _idstr('ram') + _be32(0) + _be32(4) +
             b.ram_start() + b.footer(2))
    head += b'\x03' + _be32(2)
    pages = ram_bytes // PAGE
    rec = 8 + PAGE
    with open(path, 'wb') as f:
        f.write(head)
        # The first record names the block; the rest CONTINUE.
        f.write(_be64(PAGE_F) + _idstr('pc.ram') + page_of(0))
        for start in range(1, pages, chunk_pages):
            n = min(chunk_pages, pages - start)
            arr = np.empty((n, rec), dtype=np.uint8)
            pfns = np.arange(start, start + n, dtype=np.uint64)
            hdr = (pfns << np.uint64(12)) | np.uint64(PAGE_F | CONT)
            arr[:, :8] = hdr.astype('>u8').view(np.uint8).reshape(n, 8)
            arr[:, 8:] = (pfns[:, None] + np.arange(PAGE, dtype=np.uint64)
                          ).astype(np.uint8)
            f.write(arr.tobytes())
        tail = _be64(EOS) + b.footer(2)
        tail += (b'\x04' + _be32(3) + _idstr('cpu_common') + _be32(0) +
                 _be32(1) + _be32(1) + _be32(0) + b.footer(3))
        tail += (b'\x04' + _be32(4) + _idstr('cpu') + _be32(0) + _be32(12) +
                 cpu_section_payload() + b.footer(4)) + b'\x00'
        desc = json.dumps({'page_size': 4096,
                           'devices': [COMMON_VMDESC, CPU_VMDESC]})
        tail += b'\x06' + _be32(len(desc)) + desc.encode()
        f.write(tail)
        return f.tell()


class LibvirtWriter(threading.Thread):
    """Writes ``data`` to ``path`` like libvirt: the header with the
    partial magic, the rest in pieces, then (unless ``stop_at``) the final
    magic.
    """

    def __init__(self, path, data, chunk=3000, pause=0.0005, stop_at=None):
        super().__init__(daemon=True)
        self.path, self.data = path, data
        self.chunk, self.pause, self.stop_at = chunk, pause, stop_at
        self.done = threading.Event()
        self.marked_at = None

    def run(self):
        partial = b'LibvirtQemudPart' + self.data[16:]
        end = len(self.data) if self.stop_at is None else self.stop_at
        try:
            with open(self.path, 'wb', buffering=0) as f:
                for pos in range(0, end, self.chunk):
                    f.write(partial[pos:min(end, pos + self.chunk)])
                    time.sleep(self.pause)
                if self.stop_at is None:
                    f.seek(0)
                    f.write(self.data[:16])
                    self.marked_at = time.monotonic()
        finally:
            self.done.set()


def start_writing(path: str, data: bytes,
                  **kw) -> tuple[str, LibvirtWriter]:
    """Create ``path`` with the partial magic and start a
    :class:`LibvirtWriter` writing ``data`` into it; returns ``(path,
    writer)``.
    """
    with open(path, 'wb') as f:
        f.write(b'LibvirtQemudPart')
    w = LibvirtWriter(path, data, **kw)
    w.start()
    return path, w
