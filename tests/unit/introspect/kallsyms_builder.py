"""Build kallsyms tables the way ``scripts/kallsyms`` lays them out, for
tests of the finder: every byte value is a token (printable characters
stand for themselves, the rest for ``~XX``), names are encoded one
character per byte, addresses use the absolute-per-CPU offset encoding.
"""

import struct

ALIGN = 8
TOKENS = [bytes([b]) if 0x21 <= b < 0x7f else b'~%02x' % b
          for b in range(256)]


def _pad(data: bytes) -> bytes:
    return data + b'\0' * (-len(data) % ALIGN)


def symbols(count: int, base: int) -> list[tuple[bytes, int]]:
    """``count`` (name with its type letter, address) pairs from ``base``,
    ``_stext`` and ``init_uts_ns`` among them.
    """
    out = [(b'T_stext', base), (b'Dinit_uts_ns', base + 0x1000)]
    out += [(b'tfunc_%d' % i, base + 0x2000 + 16 * i)
            for i in range(count - len(out))]
    return out


def sections(syms: list[tuple[bytes, int]], relative_base: int) -> dict:
    """The tables of ``syms``, each padded to its 8-byte label."""
    names = b''
    markers = []
    for i, (name, _) in enumerate(syms):
        if i % 256 == 0:
            markers.append(len(names))
        names += bytes([len(name)]) + name
    table = b''
    index = []
    for token in TOKENS:
        index.append(len(table))
        table += token + b'\0'
    offsets = [-(addr - relative_base) - 1 for _, addr in syms]
    return {
        'offsets': _pad(struct.pack('<%di' % len(syms), *offsets)),
        'relative_base': struct.pack('<Q', relative_base),
        'num_syms': _pad(struct.pack('<I', len(syms))),
        'names': _pad(names),
        'markers': _pad(struct.pack('<%dI' % len(markers), *markers)),
        'token_table': _pad(table),
        'token_index': struct.pack('<256H', *index),
    }


OLD_ORDER = ('offsets', 'relative_base', 'num_syms', 'names', 'markers',
             'token_table', 'token_index')
NEW_ORDER = ('num_syms', 'names', 'markers', 'token_table', 'token_index',
             'offsets', 'relative_base')


def image(syms, relative_base: int, order=OLD_ORDER, lead: int = 4096
          ) -> tuple[bytes, dict]:
    """An image: ``lead`` bytes of filler, then the tables in ``order``;
    returns it and each table's offset in it.
    """
    parts = sections(syms, relative_base)
    data = bytes(range(7, 7 + 64)) * (lead // 64)
    where = {}
    for name in order:
        where[name] = len(data)
        data += parts[name]
    # Whole pages, as guest memory is.
    data += b'\xcc' * (4096 + -len(data) % 4096)
    return data, where
