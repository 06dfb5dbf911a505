"""The memory state of a qcow2 internal snapshot as a checkpoint stream,
and its scrubbed bytes written back into the image.

Reading: :class:`Vmstate` maps a snapshot's vmstate (:mod:`.qcow2`) and
:meth:`Vmstate.extract` writes it into a private temporary file (named
like a decompressed save image's stream, so that the sweep removes the
leftover of a killed run); the stream parser, the guest views and the
engine then work on it as on any migration stream.
:class:`VmstateView` is the same bytes as a bounded, seekable, read-only
file object.

Writing: the engine's page patches (offsets in the stream, as for an
in-place scrub of a save image) are applied to the private stream and
carried into the image by :meth:`Vmstate.file_patches`: a patch inside
one normal cluster goes to that cluster's host offset; a patch across
two clusters, and a compressed cluster (recompressed whole, within the
bytes it already has, zero padded), become 4096-byte windows holding the
final bytes of what they cover. Only clusters that belong to this
snapshot's vmstate alone are written: each has the refcount its vmstate
references account for (1 for a normal cluster), is mapped once, and is
no metadata cluster; otherwise nothing is written. The image's disk,
its other snapshots and every table stay byte-identical; the snapshot's
vmstate size does not change (a scrubbed page keeps its record).

Compressed clusters (deflate or zstd) are read and written by
:mod:`.qcow2_codec`. A scrub refuses clusters smaller than 4096 bytes,
an image a running QEMU holds (its lock bytes are locked, or cannot be
queried) and an image whose refcounts may be out of date (the dirty
bit).
"""

import dataclasses
import fcntl
import io
import mmap
import os
import struct

import numpy as np

from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import qcow2
from sparc_nova.checkpoint import qcow2_codec
from sparc_nova.checkpoint import tempfiles
from sparc_nova import exception

__all__ = ['Vmstate', 'VmstateView', 'in_use', 'list_snapshots',
           'open_vmstate', 'max_vmstate_bytes']

PAGE = journal.PAGE_SIZE
#: QEMU's image lock bytes (``block/file-posix.c``: permission bits from
#: 100, shared-permission bits from 200).
_LOCK_START, _LOCK_LEN = 100, 200
_F_OFD_GETLK = 36
_FLOCK = struct.Struct('hhqqi4x')
_PATCH_LENGTH = {journal.FILL_PAGE: PAGE, journal.FILL_BYTE: 1,
                 journal.FULL_PAGE: PAGE}
_COPY_CHUNK = 64 * 1024 * 1024


def max_vmstate_bytes(limits: limits_mod.Limits) -> int:
    """Largest vmstate accepted: a record for every page of the largest
    guest the limits allow, and room for device state.
    """
    return limits.max_guest_ram // PAGE * (PAGE + 8) + 512 * 1024 * 1024


def in_use(fd: int) -> bool:
    """Whether another process (a running QEMU) holds a lock on the
    image's lock bytes; True when the locks cannot be queried.
    """
    req = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, _LOCK_START, _LOCK_LEN, 0)
    try:
        res = fcntl.fcntl(fd, _F_OFD_GETLK, req)
    except OSError:
        return True
    return _FLOCK.unpack(res)[0] != fcntl.F_UNLCK


class Vmstate:
    """The vmstate of snapshot ``name`` of the qcow2 image open in ``fd``.

    :raises CheckpointError: no such snapshot, or one without memory.
    :raises CheckpointFormatError: a malformed image or mapping.
    :raises UnsupportedCheckpoint: a qcow2 feature :mod:`.qcow2` refuses.
    :raises LimitExceeded: a vmstate larger than the limits allow.
    """

    def __init__(self, fd: int, path: str, name: str,
                 limits: limits_mod.Limits = limits_mod.DEFAULT):
        self.path = path
        self.run_as = (limits.helper_user, limits.helper_group)
        self.image = qcow2.Image(fd, path, limits)
        self.snapshot = sn = self.image.find_snapshot(name)
        if not sn.vm_state_size:
            raise exception.CheckpointError(
                path, 'internal snapshot %r holds no memory state (a '
                      'disk-only snapshot)' % sn.name)
        if sn.vm_state_size > max_vmstate_bytes(limits):
            raise exception.LimitExceeded(
                path, 'snapshot %r declares %d bytes of vmstate, more than '
                      'the limits allow (%d)' % (sn.name, sn.vm_state_size,
                                                 max_vmstate_bytes(limits)))
        self.size = sn.vm_state_size
        self.cluster_size = self.image.header.cluster_size
        self.map = self.image.cluster_map(
            sn, self.image.vmstate_offset(sn), self.size)

    @property
    def fd(self) -> int:
        return self.image.fd

    def describe(self) -> dict:
        """The snapshot and its vmstate's clusters, for ``info``."""
        kinds = np.bincount(self.map.kind, minlength=4)
        h = self.image.header
        return {'snapshot': self.snapshot.as_dict(),
                'qcow2_version': h.version, 'cluster_size': h.cluster_size,
                'vmstate_offset': self.image.vmstate_offset(self.snapshot),
                'vmstate_clusters': {qcow2.KIND_NAMES[k]: int(kinds[k])
                                     for k in range(4)}}

    # -- reading --------------------------------------------------------------

    def read_cluster(self, i: int) -> bytes:
        """Guest cluster ``i`` of the vmstate, whole (``cluster_size``
        bytes, also for the last one).
        """
        cs = self.cluster_size
        kind = int(self.map.kind[i])
        host = int(self.map.host[i])
        if kind == qcow2.NORMAL:
            return self.image.read(host, cs, 'vmstate cluster %d' % i)
        if kind == qcow2.COMPRESSED:
            n = min(int(self.map.csize[i]), self.image.file_size - host)
            data = self.image.read(host, n, 'compressed vmstate cluster %d'
                                   % i)
            return qcow2_codec.decompress(
                self.image.header.compression_type, data, cs, self.path, i,
                self.run_as)
        return bytes(cs)

    def extract(self, dst: io.BufferedRandom) -> None:
        """Write the vmstate into ``dst`` (a new, empty regular file) from
        its start: normal clusters copied inside the kernel, compressed
        ones inflated, zero and unallocated ones left as holes.
        """
        cs = self.cluster_size
        out = dst.fileno()
        os.ftruncate(out, self.size)
        kind = self.map.kind
        normal = np.nonzero(kind == qcow2.NORMAL)[0]
        # Runs of clusters contiguous in both views are one copy.
        if len(normal):
            gaps = np.nonzero((np.diff(normal) != 1) |
                              (np.diff(self.map.host[normal]) != cs))[0] + 1
            for run in np.split(normal, gaps):
                first = int(run[0])
                start = first * cs
                length = min(len(run) * cs, self.size - start)
                self._copy(int(self.map.host[first]), out, start, length)
        for i in np.nonzero(kind == qcow2.COMPRESSED)[0].tolist():
            data = self.read_cluster(i)
            start = i * cs
            os.pwrite(out, data[:min(cs, self.size - start)], start)

    def _copy(self, src_off: int, out: int, dst_off: int, length: int
              ) -> None:
        while length:
            n = os.copy_file_range(self.fd, out, min(length, _COPY_CHUNK),
                                   src_off, dst_off)
            if n <= 0:
                raise exception.CheckpointError(
                    self.path, 'short copy of the vmstate', src_off)
            src_off += n
            dst_off += n
            length -= n

    # -- writing --------------------------------------------------------------

    def check_writable(self) -> None:
        """Refuse an image a running QEMU holds, or whose refcounts may
        be out of date.
        """
        if in_use(self.fd):
            raise exception.CheckpointError(
                self.path, 'the image is in use (a QEMU process holds its '
                           'lock, or its locks cannot be queried): shut the '
                           'domain off before scrubbing its internal '
                           'snapshot')
        if self.image.dirty:
            raise exception.CheckpointError(
                self.path, 'the image was not closed cleanly (dirty bit): '
                           'its refcounts may be out of date; run "qemu-img '
                           'check -r leaks" first')
        if self.cluster_size < PAGE:
            raise exception.UnsupportedCheckpoint(
                self.path, 'clusters of %d bytes: scrubbing needs clusters '
                           'of at least %d bytes' % (self.cluster_size,
                                                     PAGE))

    def file_patches(self, stream_fd: int, groups: list[journal.Group]
                     ) -> list[journal.Group]:
        """The image patches that carry ``groups`` (patches at offsets of
        the vmstate) into the image.

        ``stream_fd`` is the private, writable extracted vmstate: the
        groups are applied to it first, so that it holds the final
        vmstate. Writes nothing to the image.

        :raises CheckpointError: a patch would change a zero or
            unallocated cluster, a recompressed cluster does not fit in
            its bytes, or a cluster to write does not belong to this
            vmstate alone (refcount, aliasing, metadata).
        """
        self.check_writable()
        new = _Mapped(stream_fd, self.size)
        try:
            journal.apply_to(new.arr, groups)
            return _Planner(self, new.arr).plan(groups)
        finally:
            new.close()

    def patch_in_place(self, groups: list[journal.Group], stream_fd: int,
                       journal_key: str,
                       journal_dir: str | None = None) -> None:
        """Patch the image through the journal (:mod:`.journal`, kept in
        ``journal_dir`` or next to the image): a crash leaves a journal
        that ``sparc checkpoint recover`` replays.
        """
        patches = self.file_patches(stream_fd, groups)
        target = journal.Identity.of(os.fstat(self.fd))
        journal.write(self.path, patches, journal_key, target=target,
                      directory=journal_dir)
        journal.apply(self.path, patches, target)
        journal.remove(self.path, journal_dir)

    def write_copy(self, groups: list[journal.Group], stream_fd: int,
                   target: str) -> None:
        """Write a patched copy of the whole image to ``target`` (sparse,
        renamed into place atomically; owner and mode of the original).
        """
        patches = self.file_patches(stream_fd, groups)
        st = os.fstat(self.fd)
        with tempfiles.replacement(target) as (f, _):
            _sparse_copy(self.fd, f.fileno(), st.st_size, self.path)
            mapped = _Mapped(f.fileno(), st.st_size)
            try:
                journal.apply_to(mapped.arr, patches)
                mapped.flush()
            finally:
                mapped.close()
            os.fchmod(f.fileno(), st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)


class _Mapped:
    """A shared, writable mapping of a file's first ``size`` bytes as a
    uint8 array.
    """

    def __init__(self, fd: int, size: int):
        self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.arr = np.frombuffer(self._mm, dtype=np.uint8)

    def flush(self) -> None:
        self._mm.flush()

    def close(self) -> None:
        self.arr = None
        try:
            self._mm.close()
        except BufferError:
            # An error's traceback still holds a view; the mapping goes
            # with it.
            pass


def _sparse_copy(src: int, dst: int, size: int, path: str) -> None:
    """Copy ``size`` bytes of ``src`` to ``dst``, holes left as holes."""
    pos = 0
    while pos < size:
        try:
            data = os.lseek(src, pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(src, data, os.SEEK_HOLE)
        off = data
        while off < end:
            n = os.copy_file_range(src, dst, min(end - off, _COPY_CHUNK),
                                   off, off)
            if n <= 0:
                raise exception.CheckpointError(path, 'short copy', off)
            off += n
        pos = end
    os.ftruncate(dst, size)


@dataclasses.dataclass
class _Planner:
    """Turns stream patches into image patches for one :class:`Vmstate`
    whose final bytes are ``new`` (see :meth:`Vmstate.file_patches`).
    """

    vm: Vmstate
    new: np.ndarray
    _normal: dict | None = None
    _others: list | None = None

    def plan(self, groups: list[journal.Group]) -> list[journal.Group]:
        vm = self.vm
        cs = vm.cluster_size
        kind, host = vm.map.kind, vm.map.host
        out, windows, written = [], set(), set()
        compressed = set()
        for g in groups:
            n = _PATCH_LENGTH[g.kind]
            offs = np.asarray(g.offsets, dtype=np.int64)
            first, last = offs // cs, (offs + n - 1) // cs
            inside = first == last
            k = kind[first]
            direct = inside & (k == qcow2.NORMAL)
            if direct.any():
                sel = offs[direct]
                out.append(dataclasses.replace(
                    g, offsets=host[first[direct]] + sel % cs))
                written.update((host[first[direct]] // cs).tolist())
            empty = inside & ((k == qcow2.ZERO) | (k == qcow2.UNALLOCATED))
            for c in np.unique(first[empty]).tolist():
                self._check_still_zero(c)
            compressed.update(first[inside & (k == qcow2.COMPRESSED)]
                              .tolist())
            for o in offs[~inside].tolist():
                for c in range(o // cs, (o + n - 1) // cs + 1):
                    a, b = max(o, c * cs), min(o + n, (c + 1) * cs)
                    self._straddle(c, a, b, windows, written, compressed)
        regions = self._recompress(sorted(compressed), written)
        self._check_owned(written)
        windows.update(self._region_windows(regions))
        out.extend(self._window_groups(sorted(windows), regions))
        return out

    def _check_still_zero(self, c: int) -> None:
        cs = self.vm.cluster_size
        if self.new[c * cs:min((c + 1) * cs, self.vm.size)].any():
            raise exception.CheckpointError(
                self.vm.path, 'vmstate cluster %d is %s in the image: it '
                              'cannot take new content in place'
                % (c, qcow2.KIND_NAMES[int(self.vm.map.kind[c])]))

    def _straddle(self, c, a, b, windows, written, compressed) -> None:
        """The part ``[a, b)`` (vmstate offsets) of a patch across a
        cluster boundary, in cluster ``c``.
        """
        vm = self.vm
        cs = vm.cluster_size
        k = int(vm.map.kind[c])
        if k == qcow2.COMPRESSED:
            compressed.add(c)
        elif k == qcow2.NORMAL:
            h = int(vm.map.host[c])
            start = h + a - c * cs
            windows.add(min(start, h + cs - PAGE))
            written.add(h // cs)
        else:
            self._check_still_zero(c)

    def _recompress(self, clusters: list[int], written: set) -> list:
        """``[(file offset, bytes)]``: each changed compressed cluster
        recompressed and zero padded to the bytes it may use.
        """
        vm = self.vm
        cs = vm.cluster_size
        if not clusters:
            return []
        comp = np.nonzero(vm.map.kind == qcow2.COMPRESSED)[0]
        starts = np.sort(vm.map.host[comp])
        if len(np.unique(starts)) != len(starts):
            raise exception.CheckpointError(
                vm.path, 'two compressed vmstate clusters share their '
                         'data: refused')
        regions = []
        for c in clusters:
            coff = int(vm.map.host[c])
            new = bytes(self.new[c * cs:min((c + 1) * cs, vm.size)])
            old = vm.read_cluster(c)
            new += old[len(new):]
            if new == old:
                continue
            nxt = starts[np.searchsorted(starts, coff, side='right'):]
            end = min(coff + int(vm.map.csize[c]), vm.image.file_size,
                      int(nxt[0]) if len(nxt) else coff + cs + 512)
            data = qcow2_codec.compress(
                vm.image.header.compression_type, new, vm.path, vm.run_as)
            if len(data) > end - coff:
                raise exception.CheckpointError(
                    vm.path, 'vmstate cluster %d recompresses to %d bytes, '
                             'more than the %d it has in the image'
                    % (c, len(data), end - coff))
            regions.append((coff, data + bytes(end - coff - len(data))))
            written.update(range(coff // cs, (end - 1) // cs + 1))
        return regions

    def _check_owned(self, written: set) -> None:
        """Every host cluster to write belongs to this vmstate alone."""
        vm = self.vm
        img = vm.image
        cs = vm.cluster_size
        kind, host = vm.map.kind, vm.map.host
        normal = host[kind == qcow2.NORMAL] // cs
        uniq, counts = np.unique(normal, return_counts=True)
        normal_refs = dict(zip(uniq.tolist(), counts.tolist()))
        comp_refs = {}
        comp = kind == qcow2.COMPRESSED
        for h0, size in zip(host[comp].tolist(),
                            vm.map.csize[comp].tolist()):
            for c in range((h0 & ~511) // cs, (h0 + size - 1) // cs + 1):
                comp_refs[c] = comp_refs.get(c, 0) + 1
        meta = img.metadata_clusters() | {t // cs for t in vm.map.l2_tables}
        refs = img.refcounts(written)
        for c in sorted(written):
            if c in meta:
                raise exception.CheckpointError(
                    vm.path, 'vmstate cluster at %d is also image metadata: '
                             'refused, nothing written' % (c * cs))
            n, k = normal_refs.get(c, 0), comp_refs.get(c, 0)
            if n > 1 or (n and k):
                raise exception.CheckpointError(
                    vm.path, 'host cluster at %d is mapped %d times by this '
                             'snapshot\'s vmstate: refused, nothing written'
                    % (c * cs, n + k))
            dead = self._dead_references(c) if refs[c] != n + k else 0
            if refs[c] != n + k + dead:
                raise exception.CheckpointError(
                    vm.path, 'host cluster at %d has refcount %d, but this '
                             'snapshot\'s vmstate accounts for %d: it is '
                             'shared (another snapshot, the disk or a '
                             'damaged image); refused, nothing written'
                    % (c * cs, refs[c], n + k))

    def _dead_references(self, c: int) -> int:
        """References to host cluster ``c`` from the other L1 tables (the
        active state's, the other snapshots') at this vmstate's own
        offsets where nothing reads them: past the active disk (QEMU
        leaves a snapshot's vmstate mapped in the active state it was
        saved from), or past another snapshot's disk and vmstate.

        :raises CheckpointError: another snapshot's vmstate or disk reads
            ``c`` there.
        """
        vm = self.vm
        img = vm.image
        cs = vm.cluster_size
        start = img.vmstate_offset(vm.snapshot)
        if self._others is None:
            self._others = [
                (other, img.cluster_map(other, start, vm.size,
                                        short_l1=True))
                for other in [img.active()] + img.snapshots
                if other.index != vm.snapshot.index]
        dead = 0
        for other, m in self._others:
            hit = np.nonzero(_touches(m, c, cs))[0]
            if not len(hit):
                continue
            live_end = img.vmstate_offset(other) + other.vm_state_size
            if start + int(hit[0]) * cs < live_end:
                raise exception.CheckpointError(
                    vm.path, 'host cluster at %d also holds data of %s: '
                             'refused, nothing written'
                    % (c * cs, 'snapshot %r' % other.name
                       if other.index >= 0 else 'the disk'))
            dead += len(hit)
        return dead

    def _region_windows(self, regions) -> set:
        size = self.vm.image.file_size
        out = set()
        for off, data in regions:
            end = off + len(data)
            for w in range(off, end, PAGE):
                out.add(min(w, end - PAGE, size - PAGE))
        return {max(0, w) for w in out}

    def _final(self, w: int, regions) -> bytes:
        """The final bytes of the image at ``[w, w + 4096)``."""
        vm = self.vm
        cs = vm.cluster_size
        buf = bytearray(vm.image.read(w, PAGE, 'a patched page'))
        normal = self._normal_index()
        for hc in range(w // cs, (w + PAGE - 1) // cs + 1):
            c = normal.get(hc)
            if c is None:
                continue
            a, b = max(w, hc * cs), min(w + PAGE, (hc + 1) * cs)
            s = c * cs + (a - hc * cs)
            chunk = bytes(self.new[s:max(s, min(s + b - a, vm.size))])
            buf[a - w:a - w + len(chunk)] = chunk
        for off, data in regions:
            a, b = max(w, off), min(w + PAGE, off + len(data))
            if a < b:
                buf[a - w:b - w] = data[a - off:b - off]
        return bytes(buf)

    def _normal_index(self) -> dict:
        if self._normal is None:
            cs = self.vm.cluster_size
            idx = np.nonzero(self.vm.map.kind == qcow2.NORMAL)[0]
            self._normal = dict(zip(
                (self.vm.map.host[idx] // cs).tolist(), idx.tolist()))
        return self._normal

    def _window_groups(self, windows, regions) -> list:
        by_content = {}
        for w in windows:
            by_content.setdefault(self._final(w, regions), []).append(w)
        out = []
        for content, offs in by_content.items():
            arr = np.array(offs, dtype=np.int64)
            if content == bytes([content[0]]) * PAGE:
                out.append(journal.Group(journal.FILL_PAGE, arr,
                                         fill=content[0]))
            else:
                out.append(journal.Group(journal.FULL_PAGE, arr,
                                         content=content))
        return out


def _touches(m: qcow2.ClusterMap, c: int, cs: int) -> np.ndarray:
    """Which clusters of map ``m`` reference host cluster ``c``."""
    normal = (m.kind == qcow2.NORMAL) & (m.host // cs == c)
    comp = (m.kind == qcow2.COMPRESSED) & \
        ((m.host & ~511) // cs <= c) & ((m.host + m.csize - 1) // cs >= c)
    return normal | comp


class VmstateView(io.RawIOBase):
    """The vmstate of a :class:`Vmstate` as a read-only, seekable file
    object bounded to its size (clusters read on demand).
    """

    def __init__(self, vm: Vmstate):
        super().__init__()
        self._vm = vm
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos,
                os.SEEK_END: self._vm.size}[whence]
        if base + offset < 0:
            raise ValueError('negative seek position')
        self._pos = base + offset
        return self._pos

    def readinto(self, buf) -> int:
        cs = self._vm.cluster_size
        n = max(0, min(len(buf), self._vm.size - self._pos))
        done = 0
        while done < n:
            c, within = divmod(self._pos, cs)
            take = min(n - done, cs - within)
            buf[done:done + take] = self._vm.read_cluster(c)[
                within:within + take]
            done += take
            self._pos += take
        return done


def open_vmstate(f, path: str, name: str,
                 limits: limits_mod.Limits = limits_mod.DEFAULT) -> Vmstate:
    """The :class:`Vmstate` of snapshot ``name`` of the image open in
    ``f`` (a binary file; it stays open and owned by the caller).
    """
    return Vmstate(f.fileno(), path, name, limits)


def list_snapshots(f, path: str,
                   limits: limits_mod.Limits = limits_mod.DEFAULT) -> dict:
    """The internal snapshots of the qcow2 image open in ``f``, for
    ``sparc checkpoint info`` without ``--snapshot``.
    """
    img = qcow2.Image(f.fileno(), path, limits)
    h = img.header
    return {'path': path, 'kind': 'qcow2', 'qcow2_version': h.version,
            'virtual_size': h.size, 'cluster_size': h.cluster_size,
            'snapshots': [sn.as_dict() for sn in img.snapshots]}
