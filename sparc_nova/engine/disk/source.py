"""The format of a source image, found without letting qemu guess, and
the other files that reading it would open.

A guest controls every byte of its disk. A raw snapshot whose first
sector holds a qcow2, vmdk or similar header is, to a format probe, an
image with a backing file, a data file or extents that name any host
file; reading it without an explicit format would copy that host file
into the output. So:

* the caller's format (Nova knows it: the snapshot's ``disk_format``) is
  used as it is and checked, never replaced by a probe;
* without one, the format is found with oslo.utils' format inspector
  (:func:`detect`), the detector Nova, Glance and Cinder use since
  CVE-2024-32498;
* either way the image must pass the inspector's safety checks
  (:func:`check`): no backing file, no qcow2 data file, no vmdk extent
  outside the file, no unknown qcow2 feature. A refusal names what the
  header points at. Backing files can be allowed by the operator for a
  chain they trust (``allow_backing_chain``).

Nothing in this module runs qemu-img; it reads at most the first MiB of
the file.
"""

import dataclasses
import re
import struct

from oslo_utils.imageutils import format_inspector

from sparc_nova import exception

__all__ = ['FORMATS', 'Reference', 'check', 'detect', 'references']

#: Source formats a scrub accepts, as qemu-img names them. Formats the
#: inspector bans (qed) or cannot check are not offered.
FORMATS = ('raw', 'qcow2', 'vmdk', 'vdi', 'vhdx', 'vpc')

#: qemu-img's format name -> the inspector's.
_INSPECTOR_NAMES = {'vpc': 'vhd'}

#: Inspector results whose content qemu reads as raw: a disk with a GPT,
#: an ISO 9660 filesystem, a LUKS volume (opened inside the appliance).
_RAW_CONTENT = ('raw', 'gpt', 'iso', 'luks')

#: The safety check that fails on a backing file (qcow2).
_BACKING_CHECK = 'backing_file'

#: Bytes of the file read to find the names a header points at: qemu
#: reads vmdk descriptors of at most 1 MiB - 1.
_MAX_HEADER_BYTES = (1 << 20) - 1
#: qemu refuses longer backing file names.
_MAX_NAME_BYTES = 1023
#: Bytes qemu reads to probe a format.
_PROBE_BYTES = 2048
_QCOW2_DATA_FILE_EXT = 0x44415441
_VMDK_VERSION_LINES = (b'version=1', b'version=2', b'version=3')
_VMDK_EXTENT_RE = re.compile(
    r'^\s*(?:rw|rdonly|noaccess)\s+\d+\s+\w+\s+"([^"]*)"', re.I | re.M)
_VMDK_PARENT_RE = re.compile(r'^\s*parentFileNameHint\s*=\s*"([^"]*)"',
                             re.I | re.M)


@dataclasses.dataclass(frozen=True)
class Reference:
    """A file an image header names: ``kind`` is ``backing file``,
    ``data file`` or ``extent``; ``name`` is as written in the header
    (a path, or a ``json:`` specification).
    """
    kind: str
    name: str

    def __str__(self) -> str:
        return '%s %r' % (self.kind, self.name)


def detect(path: str) -> str:
    """The format of ``path`` as qemu-img names it (see :data:`FORMATS`),
    found by the format inspector reading the file once.

    :raises DiskImageError: the content matches several formats, a
        format that cannot be scrubbed, or a header the inspector cannot
        parse.
    """
    try:
        inspector = format_inspector.detect_file_format(path)
    except format_inspector.ImageFormatError as e:
        named = [r for fmt in _matching_formats(path)
                 for r in references(path, fmt)]
        raise exception.DiskImageError(
            path, 'refused: the image format cannot be determined safely '
                  '(%s)%s; give it with --source-format' % (
                      e, ', a header in it points at %s'
                      % ', '.join(map(str, named)) if named else '')) from e
    except OSError as e:
        raise exception.DiskImageError(
            path, 'cannot read the image (%s)' % e.strerror) from e
    name = str(inspector) if inspector is not None else 'raw'
    if name in _RAW_CONTENT:
        _refuse_vmdk_text(path)
        return 'raw'
    fmt = {v: k for k, v in _INSPECTOR_NAMES.items()}.get(name, name)
    if fmt not in FORMATS:
        raise exception.DiskImageError(
            path, 'the image is in %s format, which cannot be scrubbed '
                  '(supported: %s)' % (name, ', '.join(FORMATS)))
    return fmt


def _refuse_vmdk_text(path: str) -> None:
    """Refuse a file the inspector takes for raw but qemu would probe as
    a vmdk text descriptor (the inspector requires the whole first
    sector to be text; qemu only a ``version=`` line after comments and
    blank lines, as in a boot sector whose partition table follows).
    """
    with open(path, 'rb') as f:
        head = f.read(_PROBE_BYTES)
    if not _qemu_probes_vmdk_text(head):
        return
    named = references(path, 'vmdk')
    raise exception.DiskImageError(
        path, 'refused: the image starts with a vmdk descriptor%s; give '
              'the format with --source-format' % (
                  ' that points at %s' % ', '.join(map(str, named))
                  if named else ''))


def _qemu_probes_vmdk_text(head: bytes) -> bool:
    """What qemu's vmdk probe accepts as a text descriptor: comment
    lines, lines of spaces, then ``version=1|2|3`` ending the line.
    """
    lines = iter(head.split(b'\n'))
    for line in lines:
        if line.startswith(b'#'):
            continue
        if line.startswith(b' ') and not line.strip(b' \r'):
            continue
        return line.rstrip(b'\r') in _VMDK_VERSION_LINES
    return False


def _matching_formats(path: str) -> list[str]:
    """The scrubbable formats (other than raw) whose header ``path``
    starts with.
    """
    found = []
    for fmt in FORMATS[1:]:
        cls = format_inspector.get_inspector(_INSPECTOR_NAMES.get(fmt, fmt))
        try:
            cls.from_file(path)
        except (format_inspector.ImageFormatError, OSError, ValueError,
                struct.error):
            continue
        found.append(fmt)
    return found


def check(path: str, fmt: str, allow_backing_chain: bool = False) -> None:
    """Refuse ``path`` unless it is a ``fmt`` image that reads no other
    file (or, with ``allow_backing_chain``, only backing files).

    A raw image reads nothing else by definition: whatever its first
    sector holds is guest data.

    :raises DiskImageError: an unknown format, content that is not
        ``fmt``, or a failed safety check; the message names what the
        header points at.
    """
    if fmt not in FORMATS:
        raise exception.DiskImageError(
            path, 'unknown source format %r (choose from %s)'
            % (fmt, ', '.join(FORMATS)))
    if fmt == 'raw':
        return
    cls = format_inspector.get_inspector(_INSPECTOR_NAMES.get(fmt, fmt))
    try:
        inspector = cls.from_file(path)
        inspector.safety_check()
    except format_inspector.SafetyCheckFailed as e:
        failures = dict(e.failures)
        if allow_backing_chain:
            failures.pop(_BACKING_CHECK, None)
        if failures:
            raise exception.DiskImageError(
                path, _refusal(path, fmt, failures)) from e
    except format_inspector.ImageFormatError as e:
        raise exception.DiskImageError(
            path, 'not a %s image, or its header cannot be checked (%s)'
            % (fmt, e)) from e
    except OSError as e:
        raise exception.DiskImageError(
            path, 'cannot read the image (%s)' % e.strerror) from e


def _refusal(path: str, fmt: str, failures: dict) -> str:
    why = '; '.join('%s: %s' % (name, failures[name])
                    for name in sorted(failures))
    named = references(path, fmt)
    points = (', it points at %s' % ', '.join(map(str, named))
              if named else '')
    hint = (' (--allow-backing-chain reads a backing chain the operator '
            'trusts)' if set(failures) == {_BACKING_CHECK} else '')
    return ('refused: reading this %s image would open other files or '
            'is unsafe (%s)%s%s' % (fmt, why, points, hint))


def references(path: str, fmt: str) -> list[Reference]:
    """The files the header of a ``fmt`` image at ``path`` names (qcow2
    backing and data files, vmdk extents and parent). Bounded: reads at
    most the first MiB; a header too short or malformed names nothing.
    """
    with open(path, 'rb') as f:
        head = f.read(_MAX_HEADER_BYTES)
    if fmt == 'qcow2':
        return _qcow2_references(head)
    if fmt == 'vmdk':
        return _vmdk_references(head)
    return []


def _name(data: bytes) -> str:
    return data[:_MAX_NAME_BYTES].decode('utf-8', 'backslashreplace')


def _qcow2_references(head: bytes) -> list[Reference]:
    if len(head) < 72 or head[:4] != b'QFI\xfb':
        return []
    version, bf_offset, bf_size, cluster_bits = struct.unpack_from(
        '>IQII', head, 4)
    found = []
    if bf_offset and 0 < bf_size <= _MAX_NAME_BYTES and \
            bf_offset + bf_size <= len(head):
        found.append(Reference('backing file',
                               _name(head[bf_offset:bf_offset + bf_size])))
    # Header extensions: from the end of the header to the backing file
    # name (or the end of the first cluster), each type, length, data
    # padded to 8 bytes, until type 0.
    offset = 72
    if version >= 3 and len(head) >= 104:
        offset = struct.unpack_from('>I', head, 100)[0]
    end = min(bf_offset or len(head), len(head),
              1 << min(max(cluster_bits, 9), 21))
    while offset + 8 <= end:
        kind, length = struct.unpack_from('>II', head, offset)
        if kind == 0:
            break
        data = head[offset + 8:offset + 8 + length]
        if kind == _QCOW2_DATA_FILE_EXT:
            found.append(Reference('data file', _name(data)))
        offset += 8 + (length + 7) // 8 * 8
    return found


def _vmdk_references(head: bytes) -> list[Reference]:
    text = head
    if head[:4] == b'KDMV' and len(head) >= 64:
        desc_sec, desc_num = struct.unpack_from('<QQ', head, 28)
        start = desc_sec * 512
        text = head[start:start + min(desc_num * 512, _MAX_HEADER_BYTES)]
    text = text.split(b'\0', 1)[0].decode('ascii', 'backslashreplace')
    return ([Reference('backing file', n[:_MAX_NAME_BYTES])
             for n in _VMDK_PARENT_RE.findall(text)] +
            [Reference('extent', n[:_MAX_NAME_BYTES])
             for n in _VMDK_EXTENT_RE.findall(text)])
