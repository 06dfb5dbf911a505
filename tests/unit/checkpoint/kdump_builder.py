"""Build small kdump-compressed dumps (both layouts) the way QEMU lays
them out, for the unit tests.
"""

import struct
import zlib

import numpy as np

from sparc_nova.checkpoint import kdump

PAGE = kdump.PAGE_SIZE


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name0 = name + b'\0'
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack('<III', len(name0), len(desc), ntype) + \
        pad(name0) + pad(desc)


def logical_image(pages: dict[int, bytes], *, compression=kdump.COMPRESS_ZLIB,
                  vmcoreinfo=b'OSRELEASE=6.1.0\n', max_mapnr=None,
                  compress=None) -> tuple[bytes, dict]:
    """The logical bytes of a dump of ``pages`` (frame to 4096 bytes), and
    where its parts lie (``desc``, ``data``, ``bitmap``).
    """
    pfns = sorted(pages)
    max_mapnr = max_mapnr or pfns[-1] + 1
    notes = _note(b'VMCOREINFO', 0, vmcoreinfo)
    sub_blocks = -(-(kdump._SUB_HEADER.size + len(notes)) // PAGE)
    bitmap_len = -(-(-(-max_mapnr // 8)) // PAGE) * PAGE
    bitmap_blocks = bitmap_len // PAGE * 2
    header = kdump._HEADER.pack(kdump.KDUMP_SIGNATURE, 6, b'', b'',
                                compression, PAGE, sub_blocks, bitmap_blocks,
                                max_mapnr, 0, 0, 0, 0, 1)
    sub = kdump._SUB_HEADER.pack(0, 1, 0, 0, 0, 0, 0,
                                 PAGE + kdump._SUB_HEADER.size, len(notes),
                                 0, 0, 0, 0, max_mapnr)
    bits = np.zeros(bitmap_len * 8, dtype=np.uint8)
    bits[pfns] = 1
    bitmap = np.packbits(bits, bitorder='little').tobytes()
    bitmap_off = (1 + sub_blocks) * PAGE
    desc_off = bitmap_off + bitmap_blocks * PAGE
    data_off = desc_off + len(pfns) * kdump.DESCRIPTOR.itemsize
    compress = compress or (lambda b: zlib.compress(b))
    descs = np.zeros(len(pfns), dtype=kdump.DESCRIPTOR)
    data = bytearray(bytes(PAGE))  # the shared zero page
    for i, pfn in enumerate(pfns):
        page = pages[pfn]
        if page == bytes(PAGE):
            descs[i] = (data_off, PAGE, 0, 0)
            continue
        stored = compress(page) if compression else page
        flags = compression
        if len(stored) >= PAGE:
            stored, flags = page, 0
        descs[i] = (data_off + len(data), len(stored), flags, 0)
        data += stored
    img = bytearray(data_off + len(data))
    img[0:len(header)] = header
    img[PAGE:PAGE + len(sub)] = sub
    img[PAGE + len(sub):PAGE + len(sub) + len(notes)] = notes
    img[bitmap_off:bitmap_off + bitmap_len] = bitmap
    img[bitmap_off + bitmap_len:bitmap_off + 2 * bitmap_len] = bitmap
    img[desc_off:data_off] = descs.tobytes()
    img[data_off:] = data
    return bytes(img), {'desc': desc_off, 'data': data_off,
                        'bitmap': bitmap_off, 'bitmap_len': bitmap_len}


def flatten(img: bytes, piece=16384, pieces=None) -> bytes:
    """``img`` in the flattened layout, in pieces of ``piece`` bytes (or
    the given ``(offset, size)`` pieces).
    """
    out = bytearray(kdump._FLAT_HEADER.pack(kdump.FLAT_SIGNATURE, 1, 1))
    out += bytes(kdump.FLAT_HEADER_SIZE - len(out))
    if pieces is None:
        pieces = [(o, min(piece, len(img) - o))
                  for o in range(0, len(img), piece)]
    for off, size in pieces:
        out += kdump._PIECE.pack(off, size) + img[off:off + size]
    out += kdump._PIECE.pack(-1, -1)
    return bytes(out)
