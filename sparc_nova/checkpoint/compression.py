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

import os
import shutil
import signal
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


def _bounded(argv: list[str], max_bytes: int | None, path: str
             ) -> list[str]:
    """``argv`` run so that it cannot write a file beyond ``max_bytes``
    (util-linux ``prlimit`` sets ``RLIMIT_FSIZE``, then execs ``argv``; a
    write beyond the limit kills it with ``SIGXFSZ``). Not a
    ``preexec_fn``: that is unsafe in a process with threads.
    """
    if max_bytes is None:
        return argv
    prlimit = shutil.which('prlimit')
    if not prlimit:
        raise exception.UnsupportedCheckpoint(
            path, 'the image is compressed and prlimit (util-linux), needed '
                  'to bound its decompression, is not installed')
    return [prlimit, '--fsize=%d' % max_bytes, '--'] + argv


def decompress(fmt: int, src: typing.BinaryIO, offset: int,
               dst: typing.BinaryIO, path: str,
               run_as: RunAs = DEFAULT_RUN_AS,
               max_bytes: int | None = None) -> None:
    """Decompress ``src`` from ``offset`` to its end into ``dst`` (a
    regular file, written from its start): the program reads a pipe and
    writes ``dst``'s descriptor, as ``run_as`` when this process is root.

    :param max_bytes: most bytes the stream may decompress to. The
        decompressor cannot write more (``RLIMIT_FSIZE``); a stream that
        would is refused (a decompression bomb would fill the disk).
    :raises CheckpointFormatError: the program failed, or the stream
        expands beyond ``max_bytes``.
    """
    prog = program(fmt, path)
    src.seek(offset)
    proc = subprocess.Popen(_bounded([prog, '-dc'], max_bytes, path),
                            stdin=subprocess.PIPE, stdout=dst,
                            stderr=subprocess.PIPE,
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
    err = proc.stderr.read(64 * 1024)
    proc.stderr.close()
    if proc.wait() == -signal.SIGXFSZ or (
            proc.returncode and max_bytes is not None and
            os.fstat(dst.fileno()).st_size >= max_bytes):
        raise exception.CheckpointFormatError(
            path, 'the %s memory stream decompresses to more than %d bytes, '
                  'more than a guest within the configured limits saves'
                  % (name(fmt), max_bytes), offset)
    if proc.returncode != 0:
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
