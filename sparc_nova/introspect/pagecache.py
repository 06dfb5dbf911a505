"""Files with pages in the guest's page cache, by path.

Every mounted filesystem's inodes are on its superblock's ``s_inodes``
list; a regular file with cached pages is named by its first dentry
(drgn's ``dentry_path``) under each place its filesystem is mounted in
the initial mount namespace (drgn's ``for_each_mount`` and
``mount_dst``). Walks are bounded: superblocks, inodes per superblock
and pages per file.
"""

import dataclasses
import posixpath

import drgn
from drgn.helpers.linux import fs as fs_helpers
from drgn.helpers.linux import mm as mm_helpers
from drgn.helpers.linux import xarray as xarray_helpers

from sparc_nova.introspect import walk

MAX_SUPERBLOCKS = 10000
MAX_MOUNTS = 100000
MAX_INODES = 4 * 1024 * 1024
MAX_FILE_PAGES = 1 << 26
S_IFMT = 0o170000
S_IFREG = 0o100000


@dataclasses.dataclass
class CachedFile:
    """A regular file with pages in the page cache.

    :ivar paths: absolute guest paths (one per mount of its filesystem),
        and, for a disk-backed file, its path from the root of its
        filesystem too (what the disk scrubber sees of a filesystem that
        is not mounted at ``/``).
    :ivar backed: whether the pages have a backing store (a block
        device): False for tmpfs and ramfs, whose page cache is the file.
    """

    inode: int
    paths: list[str]
    nrpages: int
    backed: bool


def _mount_points(prog) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    count = 0
    for mnt in fs_helpers.for_each_mount(prog):
        count += 1
        if count > MAX_MOUNTS:
            raise walk.CorruptStructure('more than %d mounts' % MAX_MOUNTS)
        dst = fs_helpers.mount_dst(mnt).decode('utf-8', 'replace')
        out.setdefault(mnt.mnt.mnt_sb.value_(), []).append(dst)
    return out


def cached_files(kernel) -> list[CachedFile]:
    """Every mounted regular file with cached pages."""
    prog = kernel.prog
    sym = kernel.symbol_address
    unbacked = {a for a in (sym('shmem_aops'), sym('ram_aops')) if a}
    with kernel.budget(200 * MAX_MOUNTS, 'listing mounts'):
        mounts = _mount_points(prog)
    out = []
    head = prog['super_blocks'].address_of_().value_()
    for sb in walk.list_entries(prog, head, 'struct super_block',
                                's_list', MAX_SUPERBLOCKS,
                                'the superblock list'):
        points = mounts.get(sb.value_())
        if not points:
            continue
        ihead = sb.s_inodes.address_of_().value_()
        with kernel.budget(20 * MAX_INODES,
                           'walking the inodes of a filesystem'):
            for inode in walk.list_entries(
                    prog, ihead, 'struct inode', 'i_sb_list', MAX_INODES,
                    'the inodes of superblock 0x%x' % sb.value_()):
                if inode.i_mode.value_() & S_IFMT != S_IFREG:
                    continue
                mapping = inode.i_mapping.read_()
                nrpages = mapping.nrpages.value_()
                if not nrpages:
                    continue
                rel = _inode_path(inode)
                if rel is None:
                    continue
                paths = [posixpath.join(p, rel.lstrip('/')) for p in points]
                backed = mapping.a_ops.value_() not in unbacked
                if backed:
                    paths.append(posixpath.join('/', rel.lstrip('/')))
                out.append(CachedFile(inode.value_(),
                                      list(dict.fromkeys(paths)), nrpages,
                                      backed))
    return out


def _inode_path(inode) -> str | None:
    for dentry in fs_helpers.hlist_for_each_entry(
            'struct dentry', inode.i_dentry.address_of_(), 'd_u.d_alias'):
        return fs_helpers.dentry_path(dentry).decode('utf-8', 'replace')
    return None


def file_folios(kernel, inode_addr: int, what: str) -> list[tuple[int, int]]:
    """``(struct page *, pages)`` of each folio cached for an inode
    (swap and shadow entries skipped).
    """
    prog = kernel.prog
    inode = drgn.Object(prog, 'struct inode *', value=inode_addr)
    mapping = inode.i_mapping.read_()
    nrpages = mapping.nrpages.value_()
    if not 0 <= nrpages <= MAX_FILE_PAGES:
        raise walk.CorruptStructure('%s: %d pages cached' % (what, nrpages))
    out = []
    total = 0
    with kernel.budget(64 * (nrpages + 16) + 10000,
                       'walking the pages of %s' % what):
        for _, entry in xarray_helpers.xa_for_each(
                mapping.i_pages.address_of_()):
            if xarray_helpers.xa_is_value(entry):
                continue
            page = drgn.cast('struct page *', entry)
            nr = 1 << mm_helpers.compound_order(page).value_()
            total += nr
            if total > nrpages + 16:
                raise walk.CorruptStructure('%s: more pages than its '
                                            'nrpages %d' % (what, nrpages))
            out.append((page.value_(), nr))
    return out
