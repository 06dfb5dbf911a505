"""Compression of libvirt save images (qemu.conf ``save_image_format``).

libvirt pipes the QEMU stream through an external program; so do we, with
the same programs, so that a rewritten image decompresses exactly as
libvirt's own would. Python's gzip/bz2/lzma modules would cover three of
the five formats only.

The programs parse guest-controlled bytes. When sparc-nova runs as root
(the CLI under sudo, the privsep daemon) they run as an unprivileged user
(``run_as``: ``[sparc] sandbox_user``/``sandbox_group`` through
:class:`~.limits.Limits`), with no supplementary groups and no
capabilities, on a pipe and a descriptor this process opened: they never
open the checkpoint or the temporary file themselves.
"""

import shutil
import subprocess
import typing

from sparc_nova import exception
from sparc_nova import unprivileged

#: (user, group) of the programs when sparc-nova runs as root.
RunAs = tuple[str | None, str | None]
DEFAULT_RUN_AS: RunAs = ('nobody', 'nogroup')

#: libvirt's virQEMUSaveFormat values, as stored in the save header.
RAW, GZIP, BZIP2, XZ, LZOP, ZSTD = range(6)

NAMES = {RAW: 'raw', GZIP: 'gzip', BZIP2: 'bzip2', XZ: 'xz', LZOP: 'lzop',
         ZSTD: 'zstd'}

_PROGRAMS = {GZIP: 'gzip', BZIP2: 'bzip2', XZ: 'xz', LZOP: 'lzop',
             ZSTD: 'zstd'}

_CHUNK = 4 * 1024 * 1024


def name(fmt: int) -> str:
    return NAMES.get(fmt, 'unknown(%d)' % fmt)


def program(fmt: int, path: str) -> str:
    """The compressor binary for ``fmt``; a clear error when missing."""
    prog = _PROGRAMS.get(fmt)
    if prog is None:
        raise exception.UnsupportedCheckpoint(
            path, 'unknown compression format %d in the save header '
                  '(known: %s)' % (fmt, ', '.join(NAMES.values())))
    found = shutil.which(prog)
    if not found:
        raise exception.UnsupportedCheckpoint(
            path, 'the image is %s-compressed but %r is not installed'
                  % (prog, prog))
    return found


def decompress(fmt: int, src: typing.BinaryIO, offset: int,
               dst: typing.BinaryIO, path: str,
               run_as: RunAs = DEFAULT_RUN_AS) -> None:
    """Decompress ``src`` from ``offset`` to its end into ``dst`` (the
    program reads a pipe and writes ``dst``'s descriptor, as ``run_as``
    when this process is root).
    """
    prog = program(fmt, path)
    src.seek(offset)
    proc = subprocess.Popen([prog, '-dc'], stdin=subprocess.PIPE,
                            stdout=dst, stderr=subprocess.PIPE,
                            **unprivileged.popen_credentials(*run_as))
    try:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise exception.CheckpointFormatError(
            path, '%s could not decompress the memory stream: %s'
                  % (name(fmt), err.decode('utf-8', 'replace').strip()[:200]),
            offset)


class Compressor:
    """A write-only file object that compresses into ``dst`` (the program
    runs as ``run_as`` when this process is root).
    """

    def __init__(self, fmt: int, dst: typing.BinaryIO, path: str,
                 run_as: RunAs = DEFAULT_RUN_AS):
        self._path = path
        self._fmt = fmt
        dst.flush()
        self._proc = subprocess.Popen(
            [program(fmt, path), '-c'], stdin=subprocess.PIPE, stdout=dst,
            stderr=subprocess.PIPE, **unprivileged.popen_credentials(*run_as))

    def write(self, data) -> int:
        self._proc.stdin.write(data)
        return len(data)

    def close(self) -> None:
        self._proc.stdin.close()
        err = self._proc.stderr.read()
        if self._proc.wait() != 0:
            raise exception.CheckpointError(
                self._path, '%s failed while compressing: %s'
                % (name(self._fmt), err.decode('utf-8', 'replace')[:200]))
