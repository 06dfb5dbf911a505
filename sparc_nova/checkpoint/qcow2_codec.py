"""Compressed qcow2 clusters: deflate and zstd, bounded to one cluster.

The header's compression type says which (QEMU ``block/qcow2-threads.c``):

* deflate: a raw deflate stream with a 4 KiB window, inflated here with
  zlib; at most one cluster plus one byte is ever produced.
* zstd: one zstd frame (QEMU compresses a cluster in one call, so the
  frame header carries the content size), decompressed and compressed by
  the ``zstd`` program as the save-image decompressors are run
  (:mod:`.compression`): as ``run_as`` when this process is root, on
  pipes. The frame is measured here first (its header and block
  headers), so that the program gets the frame alone and not the bytes
  that pad the cluster's last sector; a frame that does not declare
  exactly one cluster is refused, and no more than one cluster plus one
  byte of the program's output is read.

A cluster whose data does not decompress to exactly one cluster is an
error naming the file and the cluster.
"""

import subprocess
import threading
import zlib

from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import qcow2
from sparc_nova import exception
from sparc_nova import unprivileged

__all__ = ['compress', 'decompress', 'zstd_frame_length']

#: zlib window QEMU compresses and decompresses clusters with.
_DEFLATE_WBITS = -12
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_TIMEOUT = 60


def _error(path: str, index: int, what: str):
    return exception.CheckpointFormatError(
        path, 'vmstate cluster %d %s' % (index, what))


def decompress(ctype: int, data: bytes, cluster_size: int, path: str,
               index: int,
               run_as: compression.RunAs = compression.DEFAULT_RUN_AS
               ) -> bytes:
    """Cluster ``index``'s bytes from its compressed ``data`` (read up to
    the end of its last sector): exactly ``cluster_size`` bytes.

    :raises CheckpointFormatError: it does not decompress, or not to one
        cluster.
    """
    if ctype == qcow2.ZSTD:
        out = _unzstd(data, cluster_size, path, index, run_as)
    else:
        d = zlib.decompressobj(_DEFLATE_WBITS)
        try:
            out = d.decompress(data, cluster_size + 1)
            if len(out) <= cluster_size and not d.eof:
                out += d.flush(cluster_size + 1 - len(out))
        except zlib.error as e:
            raise _error(path, index, 'does not inflate: %s' % e)
    if len(out) > cluster_size:
        raise _error(path, index, 'inflates past the cluster size (%d '
                                  'bytes)' % cluster_size)
    if len(out) < cluster_size:
        raise _error(path, index, 'inflates to %d bytes, not a cluster (%d)'
                     % (len(out), cluster_size))
    return out


def compress(ctype: int, data: bytes, path: str,
             run_as: compression.RunAs = compression.DEFAULT_RUN_AS
             ) -> bytes:
    """``data`` (one cluster) compressed as QEMU decompresses it: for
    deflate the shorter of zlib's default and best levels.
    """
    if ctype == qcow2.ZSTD:
        # The size given, the frame declares it, as QEMU's do.
        return _run(['-q', '-c', '--no-check', '-19',
                     '--stream-size=%d' % len(data)], data, None, path,
                    run_as, 'compress a cluster')
    out = []
    for level in (zlib.Z_DEFAULT_COMPRESSION, zlib.Z_BEST_COMPRESSION):
        c = zlib.compressobj(level, zlib.DEFLATED, _DEFLATE_WBITS)
        out.append(c.compress(data) + c.flush())
    return min(out, key=len)


def zstd_frame_length(data: bytes, cluster_size: int, path: str,
                      index: int) -> int:
    """Bytes of the zstd frame at the start of ``data`` (RFC 8878: the
    frame header, the blocks, the optional checksum), which must declare
    a content size of ``cluster_size``.
    """
    if len(data) < 6 or int.from_bytes(data[:4], 'little') != _ZSTD_MAGIC:
        raise _error(path, index, 'is not a zstd frame')
    fhd = data[4]
    fcs_flag, single, checksum, dict_flag = (
        fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3)
    if fhd & 0x08:
        raise _error(path, index, 'has a reserved zstd header bit set')
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    fcs_len = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if not fcs_len or pos + fcs_len > len(data):
        raise _error(path, index, 'declares no zstd content size')
    fcs = int.from_bytes(data[pos:pos + fcs_len], 'little')
    fcs += 256 if fcs_len == 2 else 0
    if fcs != cluster_size:
        raise _error(path, index, 'declares %d bytes of zstd content, not '
                                  'a cluster (%d)' % (fcs, cluster_size))
    pos += fcs_len
    # Each block adds at least one byte of input and one of output.
    for _ in range(cluster_size + 1):
        if pos + 3 > len(data):
            raise _error(path, index, 'ends inside a zstd block header')
        head = int.from_bytes(data[pos:pos + 3], 'little')
        last, kind, size = head & 1, head >> 1 & 3, head >> 3
        if kind == 3:
            raise _error(path, index, 'has a reserved zstd block type')
        pos += 3 + (1 if kind == 1 else size)
        if pos > len(data):
            raise _error(path, index, 'ends inside a zstd block')
        if last:
            pos += 4 * checksum
            if pos > len(data):
                raise _error(path, index, 'ends inside its zstd checksum')
            return pos
    raise _error(path, index, 'has more zstd blocks than bytes')


def _unzstd(data, cluster_size, path, index, run_as) -> bytes:
    frame = data[:zstd_frame_length(data, cluster_size, path, index)]
    return _run(['-q', '-d', '-c'], frame, cluster_size + 1, path, run_as,
                'decompress cluster %d' % index)


def _run(args, data: bytes, limit: int | None, path: str, run_as,
         what: str) -> bytes:
    """The ``zstd`` program's output for ``data`` (at most ``limit``
    bytes are read; the program is then stopped).
    """
    proc = subprocess.Popen(
        [compression.program(compression.ZSTD, path)] + args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, **unprivileged.popen_credentials(*run_as))

    def feed():
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except OSError:
            pass
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    over = False
    try:
        out = proc.stdout.read(limit) if limit else proc.stdout.read()
        over = bool(limit) and len(out) >= limit
    finally:
        proc.stdout.close()
        if over:
            proc.kill()
        try:
            proc.wait(timeout=_ZSTD_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        writer.join()
    if proc.returncode and not over:
        raise exception.CheckpointFormatError(path, 'zstd could not %s'
                                              % what)
    return out
