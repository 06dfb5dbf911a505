"""Read-only looks into a memory checkpoint's guest.

``sparc checkpoint ps`` (:func:`list_processes`), ``deps``
(:func:`list_dependencies`), both introspected in the sandbox child like
a scrub (:func:`listing_in_sandbox`), and ``verify``
(:func:`count_markers`: byte strings in guest memory and in the file).
Nothing here writes; the listings are only displayed, never acted upon.
"""

import string

from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.engine import errors
from sparc_nova.engine import ipc
from sparc_nova.engine import sandbox as sandbox_mod
from sparc_nova.engine import sandbox_calls
from sparc_nova.engine import session as session_mod
from sparc_nova.introspect import pages
from sparc_nova.introspect import tasks

__all__ = ['LISTING_ENTRY', 'MAX_LISTED', 'MAX_VMCOREINFO', 'count_markers',
           'kernel_vmcoreinfo', 'list_dependencies', 'list_processes',
           'listing_in_sandbox']

#: Entries of one list ``list_processes``/``list_dependencies`` accept
#: from the sandbox.
MAX_LISTED = 1 << 20


def _processes(kernel) -> dict:
    procs = tasks.processes(kernel)
    return {'kernel': kernel.summary(),
            'processes': [p.as_dict() for p in procs]}


def _dependencies(kernel) -> dict:
    procs = tasks.processes(kernel, details=False)
    graph = ipc.build_graph(kernel, pages.PageModel(kernel), procs)
    out = {'kernel': kernel.summary()}
    out.update(graph.as_dict())
    return out


def _vmcoreinfo(kernel) -> dict:
    vmci = kernel.vmcoreinfo
    return {'kernel': kernel.summary(),
            'vmcoreinfo': [{'text': bytes(vmci.raw).decode('latin-1')}]}


#: What the listings compute from the guest kernel.
_LISTINGS = {'processes': _processes, 'dependencies': _dependencies,
             'vmcoreinfo': _vmcoreinfo}
#: Bytes of vmcoreinfo text accepted (Linux keeps it in one page).
MAX_VMCOREINFO = 4096


def listing_in_sandbox(args: dict, files: dict) -> dict:
    """Sandbox child side of :func:`list_processes` and
    :func:`list_dependencies` (``args['listing']`` names which).
    """
    try:
        s = sandbox_calls.child_session(args, files)
        try:
            return _LISTINGS[args['listing']](s.kernel)
        finally:
            s.close()
    except session_mod.GUEST_ERRORS as e:
        raise sandbox_calls.child_error(e)


LISTING_ENTRY = __name__ + ':listing_in_sandbox'


def _check_listing(path, doc) -> dict:
    """A listing from the child: ``kernel`` (a dict) and lists of at most
    :data:`MAX_LISTED` dicts; it is only displayed, never acted upon.
    """
    doc.pop('_sandbox', None)
    if not isinstance(doc.get('kernel'), dict) or not all(
            isinstance(v, list) and len(v) <= MAX_LISTED and
            all(isinstance(x, dict) for x in v)
            for k, v in doc.items() if k != 'kernel'):
        raise errors.ScrubError(path, 'introspection sandbox: the listing '
                                      'is out of shape')
    return doc


def _listing(path, listing, work_dir, limits, buildid_cache_dir,
             sandbox, snapshot=None) -> dict:
    sandbox_policy = sandbox or sandbox_mod.SandboxPolicy()
    s = session_mod.open_session(path, work_dir=work_dir, limits=limits,
                                 buildid_cache_dir=buildid_cache_dir,
                                 model_kernel=not sandbox_policy.enabled,
                                 snapshot=snapshot)
    try:
        if sandbox_policy.enabled:
            cache = session_mod.buildid_cache(buildid_cache_dir)
            pending = sandbox_calls.start_in_sandbox(
                s.ck.stream_file, path, LISTING_ENTRY,
                {'listing': listing,
                 'buildid_cache_dir': cache.directory or ''},
                limits, sandbox_policy)
            return _check_listing(path, sandbox_calls.wait_for_result(
                pending, path))
        return _LISTINGS[listing](s.kernel)
    except session_mod.GUEST_ERRORS as e:
        raise session_mod.guest_failure(path, e)
    finally:
        s.close()


def list_processes(path: str, *, work_dir: str | None = None,
                   buildid_cache_dir: str | None = None,
                   limits: limits_mod.Limits | None = None,
                   sandbox: sandbox_mod.SandboxPolicy | None = None,
                   snapshot: str | None = None) -> dict:
    """The guest's processes: ``{'kernel': {...}, 'processes': [...]}``
    (each process as :meth:`~sparc_nova.introspect.tasks.Process.as_dict`).

    :param path: a memory checkpoint (libvirt save image or migration
        stream).
    :param work_dir: where a compressed image is decompressed.
    :param buildid_cache_dir: ``[sparc] buildid_cache_dir`` (None: no
        cache).
    :param limits: parser bounds (None: the defaults).
    :param sandbox: how the sandbox child is confined (None: the
        defaults, sandbox on).
    :param snapshot: the internal snapshot to read when ``path`` is a
        qcow2 disk image.
    :raises CheckpointError: the file cannot be parsed.
    :raises ScrubError: naming ``path``: the guest cannot be introspected
        or the child's listing is out of shape.
    """
    return _listing(path, 'processes', work_dir, limits, buildid_cache_dir,
                    sandbox, snapshot)


def list_dependencies(path: str, *, work_dir: str | None = None,
                      buildid_cache_dir: str | None = None,
                      limits: limits_mod.Limits | None = None,
                      sandbox: sandbox_mod.SandboxPolicy | None = None,
                      snapshot: str | None = None) -> dict:
    """The guest's IPC graph: ``{'kernel': {...}, 'processes': [...],
    'objects': [...], 'edges': [...]}``; see :meth:`.ipc.IpcGraph.as_dict`.
    Arguments and errors as :func:`list_processes`.
    """
    return _listing(path, 'dependencies', work_dir, limits,
                    buildid_cache_dir, sandbox, snapshot)


def kernel_vmcoreinfo(path: str, *, work_dir: str | None = None,
                      buildid_cache_dir: str | None = None,
                      limits: limits_mod.Limits | None = None,
                      sandbox: sandbox_mod.SandboxPolicy | None = None,
                      snapshot: str | None = None) -> bytes:
    """The guest kernel's own vmcoreinfo text (the one the kernel model
    accepted, checked against kallsyms), for the VMCOREINFO note of an
    ELF core. Arguments and errors as :func:`list_processes`; also a
    :class:`~.errors.ScrubError` when the child's text is not at most
    :data:`MAX_VMCOREINFO` printable bytes.
    """
    doc = _listing(path, 'vmcoreinfo', work_dir, limits, buildid_cache_dir,
                   sandbox, snapshot)
    entries = doc.get('vmcoreinfo') or [{}]
    text = entries[0].get('text')
    if not isinstance(text, str) or len(text) > MAX_VMCOREINFO or \
            any(c not in string.printable for c in text):
        raise errors.ScrubError(path, 'introspection sandbox: the '
                                      'vmcoreinfo text is out of shape')
    return text.encode('latin-1')


def count_markers(path: str, markers: list[bytes], *,
                  work_dir: str | None = None,
                  limits: limits_mod.Limits | None = None,
                  snapshot: str | None = None) -> dict:
    """Occurrences of each of ``markers`` (bytes) in checkpoint ``path``:
    ``{marker: {'memory': n, 'stale_copies': n, 'stream': n,
    'addresses': [...]}}``; see :meth:`.physview.CheckpointMemory.count`.
    The guest kernel is not modelled (no sandbox needed).

    :raises CheckpointError: the file cannot be parsed.
    """
    s = session_mod.KernelSession(path, work_dir, limits, None,
                                  snapshot=snapshot)
    try:
        return {m: s.memory.count(m) for m in markers}
    finally:
        s.close()
