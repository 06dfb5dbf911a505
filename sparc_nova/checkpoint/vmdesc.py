"""QEMU's device description (vmdesc) and the device sections it describes.

After the end of a migration stream QEMU appends ``0x06, be32 length, JSON``
describing every non-iterative section it wrote, field by field, with the
sizes it actually wrote (what ``scripts/analyze-migration.py`` reads). Device
sections carry no length of their own, so this description is the only way
to walk them.
"""

import json

from sparc_nova import exception

VMDESCRIPTION = 0x06
SUBSECTION = 0x05

#: Field types decoded as big-endian integers.
_INT_TYPES = {
    'uint8': (1, False), 'uint16': (2, False), 'uint32': (4, False),
    'uint64': (8, False), 'int8': (1, True), 'int16': (2, True),
    'int32': (4, True), 'int64': (8, True), 'bool': (1, False),
    'uint8 equal': (1, False), 'uint16 equal': (2, False),
    'uint32 equal': (4, False), 'int32 equal': (4, True),
    'int32 le': (4, True), 'uint64 equal': (8, False),
}

MAX_DEPTH = 16


def locate(buf, size: int, path: str, max_len: int):
    """Find the vmdesc at the end of a stream.

    :returns: ``(offset_of_0x06_byte, parsed_json)`` or ``None`` when the
        stream carries no vmdesc.
    :raises CheckpointFormatError: a vmdesc marker with broken JSON.
    """
    window = min(size, max_len + 5)
    start = size - window
    tail = bytes(buf[start:size])
    nul = tail.rfind(b'\0')
    brace = tail.find(b'{', nul + 1)
    if brace < 5:
        return None
    rec = start + brace - 5
    if tail[brace - 5] != VMDESCRIPTION:
        return None
    length = int.from_bytes(tail[brace - 4:brace], 'big')
    if length > max_len:
        raise exception.LimitExceeded(
            path, 'vmdesc claims %d bytes, more than the limit %d'
                  % (length, max_len), rec)
    if brace + length > len(tail):
        raise exception.CheckpointFormatError(
            path, 'vmdesc claims %d bytes but the file ends after %d'
                  % (length, len(tail) - brace), rec)
    try:
        desc = json.loads(tail[brace:brace + length])
    except ValueError as e:
        raise exception.CheckpointFormatError(
            path, 'vmdesc is not valid JSON: %s' % e, rec + 5)
    if not isinstance(desc, dict) or not isinstance(
            desc.get('devices'), list):
        raise exception.CheckpointFormatError(
            path, 'vmdesc has no device list', rec + 5)
    if desc.get('page_size', 4096) != 4096:
        raise exception.UnsupportedCheckpoint(
            path, 'target page size %r is not supported (4096 only)'
                  % desc.get('page_size'), rec + 5)
    return rec, desc


class SectionWalker:
    """Walks one device section's bytes following its vmdesc entry."""

    def __init__(self, reader):
        self.r = reader

    def walk(self, desc: dict, pos: int) -> tuple[int, dict]:
        """Parse the fields and subsections at ``pos``.

        :returns: (end offset, decoded values by field name).
        """
        return self._vmsd(desc, pos, 0)

    def _bad(self, msg, pos):
        raise exception.CheckpointFormatError(self.r.path, msg,
                                              self.r.file_offset(pos))

    def _vmsd(self, desc, pos, depth):
        if depth > MAX_DEPTH:
            self._bad('device description nested more than %d deep'
                      % MAX_DEPTH, pos)
        if not isinstance(desc, dict):
            self._bad('device description is not an object', pos)
        values = {}
        fields = desc.get('fields') or []
        if not isinstance(fields, list):
            self._bad('device description fields are not a list', pos)
        for field in fields:
            pos, val = self._field(field, pos, depth)
            if isinstance(field, dict) and isinstance(field.get('name'), str):
                values[field['name']] = val
        subs = desc.get('subsections') or []
        if not isinstance(subs, list):
            self._bad('device description subsections are not a list', pos)
        by_name = {s.get('vmsd_name'): s for s in subs
                   if isinstance(s, dict)}
        for _ in range(len(by_name)):
            if pos >= self.r.size or self.r.u8(pos) != SUBSECTION:
                break
            n = self.r.u8(pos + 1)
            name = self.r.bytes(pos + 2, n).decode('ascii', 'replace')
            if name not in by_name:
                break
            pos += 2 + n + 4    # type, length, name, be32 version
            pos, sub = self._vmsd(by_name.pop(name), pos, depth + 1)
            values[name] = sub
        return pos, values

    def _field(self, field, pos, depth):
        if not isinstance(field, dict):
            self._bad('device field description is not an object', pos)
        count = field.get('array_len', 1)
        size = field.get('size', 0)
        ftype = field.get('type')
        if (not isinstance(count, int) or not isinstance(size, int) or
                count < 0 or size < 0 or
                count * size > self.r.size - pos):
            self._bad('field %r claims %r x %r bytes past the end of the '
                      'stream' % (field.get('name'), count, size), pos)
        if ftype == 'struct' and isinstance(field.get('struct'), dict):
            out = []
            for _ in range(count):
                pos, val = self._vmsd(field['struct'], pos, depth + 1)
                out.append(val)
            return pos, out if 'array_len' in field else out[0]
        raw = self.r.bytes(pos, count * size)
        pos += count * size
        if ftype in _INT_TYPES and _INT_TYPES[ftype][0] == size:
            signed = _INT_TYPES[ftype][1]
            vals = [int.from_bytes(raw[i * size:(i + 1) * size], 'big',
                                   signed=signed) for i in range(count)]
            return pos, vals if 'array_len' in field else vals[0]
        return pos, raw
