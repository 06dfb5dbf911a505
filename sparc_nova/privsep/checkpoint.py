"""Privileged entry points on memory checkpoints.

Arguments and results are primitive (strings, lists of strings, booleans,
dicts): they cross the privsep channel as msgpack, which also turns lists
into tuples.
"""

import os
import re
import stat
import time

from oslo_log import log as logging

from sparc_nova.checkpoint import libvirt_save
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import sweep
from sparc_nova.checkpoint import write_mode
from sparc_nova import conf
from sparc_nova import exception
from sparc_nova import privsep
from sparc_nova.privsep import save_markers

LOG = logging.getLogger(__name__)

#: Seconds between two progress log lines of the daemon.
PROGRESS_INTERVAL = 10.0
#: What a libvirt domain name of a Nova instance may look like here
#: (``[DEFAULT] instance_name_template``, by default ``instance-%08x``).
INSTANCE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,254}')


class PrivilegedScrubError(exception.SparcError):
    """A privileged scrub failed; the message names the original error.

    oslo.privsep rebuilds an exception on the caller's side from its class
    and ``args``; this class takes the message as its only argument so that
    it always crosses the channel intact.
    """


def managed_save_file(path: str, instance_name: str) -> str:
    """``path`` when it is instance ``instance_name``'s managed-save file
    (``<managed_save_dir>/<instance_name>.save``), a regular file with
    one link, owned by the daemon's user and writable by no one else, in
    a directory only its owner may write; else
    :class:`PrivilegedScrubError`. Symbolic links are refused (the file
    and the directory are compared by their real paths), so the daemon
    cannot be pointed at another file.
    """
    save_dir = os.path.realpath(conf.CONF.sparc.managed_save_dir)
    name = os.path.basename(path)
    if (not os.path.isabs(path) or not name.endswith('.save') or
            os.path.realpath(os.path.dirname(path)) != save_dir):
        raise PrivilegedScrubError(
            '%s: refused: not a managed-save file in %s ([sparc] '
            'managed_save_dir)' % (path, save_dir))
    if not INSTANCE_NAME.fullmatch(instance_name) or \
            name != instance_name + '.save':
        raise PrivilegedScrubError(
            '%s: refused: not the managed-save file of instance %s'
            % (path, instance_name[:255]))
    try:
        st = os.lstat(path)
        dir_st = os.stat(save_dir)
    except FileNotFoundError:
        raise PrivilegedScrubError('%s: no such managed-save file' % path)
    if not stat.S_ISREG(st.st_mode):
        raise PrivilegedScrubError('%s: refused: not a regular file' % path)
    if st.st_nlink != 1:
        raise PrivilegedScrubError('%s: refused: %d hard links'
                                   % (path, st.st_nlink))
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PrivilegedScrubError(
            '%s: refused: owner %d, mode %o (expected owner %d, writable by '
            'the owner only)' % (path, st.st_uid,
                                 stat.S_IMODE(st.st_mode), os.geteuid()))
    if dir_st.st_mode & 0o022 and not dir_st.st_mode & stat.S_ISVTX:
        raise PrivilegedScrubError(
            '%s: refused: %s is writable by others' % (path, save_dir))
    return path


def _primitives(path, selectors, exclude_paths, follow_ipc,
                scrub_free_memory, instance_name) -> None:
    """Refuse arguments that are not the primitives the entry point
    documents (msgpack delivers lists as tuples).
    """
    def strings(v):
        return isinstance(v, (list, tuple)) and \
            all(isinstance(x, str) for x in v)
    if not (isinstance(path, str) and isinstance(instance_name, str) and
            strings(selectors) and strings(exclude_paths) and
            isinstance(follow_ipc, bool) and
            isinstance(scrub_free_memory, bool)):
        raise PrivilegedScrubError(
            'refused: arguments are not path: str, instance_name: str, '
            'selectors: [str], exclude_paths: [str], follow_ipc: bool, '
            'scrub_free_memory: bool')


class _ProgressLog:
    """A progress callback (done, total) that logs now and then."""

    def __init__(self, path: str):
        self.path = path
        self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if total > 0 and now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            LOG.info('Scrubbing %(path)s: %(pct)d%%',
                     {'path': self.path, 'pct': 100 * done // total})


@privsep.scrub_pctxt.entrypoint
def scrub_managed_save(*, path: str, instance_name: str,
                       selectors: list[str], exclude_paths: list[str],
                       follow_ipc: bool, scrub_free_memory: bool) -> dict:
    """Scrub a managed-save file in place with the memory engine.

    The guest's memory is introspected in the engine's unprivileged
    sandbox child (``[sparc] sandbox_enabled``): the daemon parses only
    the checkpoint format, checks the plan the child returns and writes.
    The daemon is locked down (see :mod:`sparc_nova.privsep`): the child,
    like a decompressor, switches to ``[sparc] sandbox_user`` in the fork
    (CAP_SETUID/CAP_SETGID) and ``exec`` s with no capability.

    Every argument is a keyword, named as in the instance's effective
    policy (:class:`sparc_nova.policy.EffectivePolicy`). The engine's
    configuration (sandbox, limits, BUILD-ID cache, work directory,
    journal key) is built here from the daemon's ``[sparc]`` options and
    handed to it.

    :param path: the managed-save file (checked by
        :func:`managed_save_file`)
    :param instance_name: the instance's libvirt domain name; ``path``
        must be its managed-save file. A raw image is patched in place
        (through the journal, ``[sparc] journal_key_file``) when its
        directory, or else ``[sparc] journal_dir``, is private to root,
        else rewritten.
    :param selectors: process selectors of the policy
        (``exclude_processes``)
    :param exclude_paths: guest path globs of the policy (``path_rules``)
    :param follow_ipc: also exclude the processes an excluded one talks to
    :param scrub_free_memory: also scrub free guest memory
    :returns: ``{'summary': str, 'report': dict}``
    :raises PrivilegedScrubError: the file was refused or the scrub failed;
        the engine writes nothing on failure
    """
    # The engine (drgn, numpy) is only ever loaded in the daemon, never
    # in nova-compute, which imports this module for the entry point.
    from sparc_nova.engine import memory

    _primitives(path, selectors, exclude_paths, follow_ipc,
                scrub_free_memory, instance_name)
    checked = managed_save_file(path, instance_name)
    options = _engine_options(checked, exclude_paths, follow_ipc,
                              scrub_free_memory)
    try:
        with open(checked, 'rb') as f:
            header = libvirt_save.read_header(f, checked, options['limits'])
        # Raw images are patched in place (only the scrubbed pages are
        # written) where a journal may be kept next to them; compressed
        # ones, and the others, are rewritten and replaced atomically,
        # keeping their owner and mode.
        write = write_mode.choose(
            checked, header.compressed, in_place_if_possible=True,
            journal_key=options.pop('journal_key'),
            journal_dir=_journal_dir())
        report = memory.scrub_checkpoint(checked, list(selectors),
                                         write=write, **options)
    except Exception as e:
        raise PrivilegedScrubError('%s: %s' % (type(e).__name__, e)) from e
    return {'summary': report.summary(), 'report': report.to_dict()}


def _engine_options(path: str, exclude_paths, follow_ipc: bool,
                    scrub_free_memory: bool) -> dict:
    """The memory engine's keyword arguments for a scrub of ``path``
    (not ``in_place``): the policy's, and the configuration built from
    the daemon's ``[sparc]`` options.
    """
    from sparc_nova.engine import sandbox
    from sparc_nova.engine import sandbox_calls
    from sparc_nova.engine import sandboxed_plan

    sandbox_policy = sandbox.SandboxPolicy.from_conf(conf.CONF)
    if conf.CONF.sparc.sandbox_spare:
        # This scrub takes the child waiting for it (if any); the next
        # one is started when this one's child has finished.
        sandbox.keep_spare(sandbox_policy, (sandboxed_plan.PLAN_ENTRY,),
                           sandbox_calls.PREPARE_ENTRY)
    return dict(journal_key=conf.CONF.sparc.journal_key_file,
                scrub_free_memory=scrub_free_memory, follow_ipc=follow_ipc,
                exclude_paths=list(exclude_paths),
                work_dir=conf.CONF.sparc.work_dir or None,
                progress=_ProgressLog(path),
                limits=limits_mod.Limits.from_conf(conf.CONF),
                buildid_cache_dir=conf.CONF.sparc.buildid_cache_dir,
                sandbox=sandbox_policy)


# -- the scrub that overlaps managedSave (save_follower) ------------------

def _follow_seconds() -> float:
    """What bounds every wait of a followed scrub, from its start:
    ``[sparc] sandbox_timeout``.
    """
    return float(conf.CONF.sparc.sandbox_timeout)


def _open_save_dir(path: str) -> int:
    """The managed-save directory open (``O_DIRECTORY``, no link
    followed at its last component), checked as
    :func:`managed_save_file` checks it: only its owner may write it
    (or it is sticky).
    """
    save_dir = os.path.dirname(path)
    try:
        fd = os.open(save_dir, os.O_RDONLY | os.O_DIRECTORY |
                     os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise PrivilegedScrubError('%s: cannot open the managed-save '
                                   'directory: %s' % (path, e.strerror))
    st = os.fstat(fd)
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        os.close(fd)
        raise PrivilegedScrubError(
            '%s: refused: %s is writable by others' % (path, save_dir))
    return fd


@privsep.scrub_pctxt.entrypoint
def follow_managed_save(*, instance_name: str, selectors: list[str],
                        exclude_paths: list[str], follow_ipc: bool,
                        scrub_free_memory: bool) -> str:
    """Start scrubbing the managed save of ``instance_name`` while
    libvirt writes it (:mod:`.save_follower`); returns its path at once.
    For the driver to call just before ``managedSave``, then
    :func:`finish_managed_save` once that returned or failed.

    The arguments are those of :func:`scrub_managed_save` without the
    path: it is always ``<[sparc] managed_save_dir>/<instance_name>.save``,
    which must not exist yet (a stale image could not be told from the
    new one). The file is opened, once libvirt creates it, relative to
    the directory opened now and without following links, then checked
    on the open descriptor (:func:`.save_follower.check_opened`). Raw
    images are patched in place where a journal may be kept, others
    replaced. Every wait is bounded by ``[sparc] sandbox_timeout``.

    :raises PrivilegedScrubError: refused (arguments, an existing file,
        the directory, a scrub of this instance already running).
    """
    from sparc_nova.privsep import save_follower

    path = os.path.join(os.path.realpath(conf.CONF.sparc.managed_save_dir),
                        str(instance_name) + '.save')
    _primitives(path, selectors, exclude_paths, follow_ipc,
                scrub_free_memory, instance_name)
    _instance_name(instance_name)
    if os.path.lexists(path):
        raise PrivilegedScrubError('%s: refused: a managed save already '
                                   'exists' % path)
    options = _engine_options(path, exclude_paths, follow_ipc,
                              scrub_free_memory)
    timeout = _follow_seconds()

    def scrub(save, path, open_image) -> dict:
        # Imported in the follower's thread: the first suspend after the
        # daemon started does not wait for the engine's imports before
        # libvirt starts writing.
        from sparc_nova.engine import live
        report = live.save_and_scrub(
            save, path, list(selectors), timeout=timeout,
            open_image=open_image, in_place_if_possible=True,
            journal_dir=_journal_dir(), **options)
        return {'summary': report.summary(), 'report': report.to_dict()}

    dir_fd = _open_save_dir(path)
    try:
        save_follower.followers.add(
            instance_name,
            save_follower.Follower(path, dir_fd, scrub, timeout))
    except exception.SparcError as e:
        os.close(dir_fd)
        raise PrivilegedScrubError(str(e))
    return path


@privsep.scrub_pctxt.entrypoint
def finish_managed_save(*, instance_name: str, saved: bool) -> dict:
    """Tell the scrub started by :func:`follow_managed_save` that
    ``managedSave`` returned (``saved``) or failed, and wait for it.

    :returns: as :func:`scrub_managed_save`: ``{'summary', 'report'}``;
        after a failed save ``{}`` (the follower stopped, and the file it
        opened, if libvirt left it, deleted).
    :raises PrivilegedScrubError: no scrub follows this instance, or the
        scrub failed or did not end in time: the managed save is
        unscrubbed and the caller must discard it (restore the guest from
        it), as after a failed :func:`scrub_managed_save`.
    """
    from sparc_nova.privsep import save_follower

    name = _instance_name(instance_name)
    if not isinstance(saved, bool):
        raise PrivilegedScrubError('refused: saved is not a bool')
    follower = save_follower.followers.pop(name)
    if follower is None:
        raise PrivilegedScrubError('%s: no scrub follows its managed save'
                                   % name)
    try:
        return follower.finish(saved)
    except save_follower.SaveFailed:
        return {}
    except Exception as e:
        raise PrivilegedScrubError('%s: %s' % (type(e).__name__, e)) from e


# -- records of managed saves not scrubbed yet (save_markers) -------------

def _instance_name(instance_name) -> str:
    if not (isinstance(instance_name, str) and
            INSTANCE_NAME.fullmatch(instance_name)):
        raise PrivilegedScrubError('refused: %r is not an instance name'
                                   % (instance_name,))
    return instance_name


@privsep.scrub_pctxt.entrypoint
def begin_managed_save(instance_name: str) -> None:
    """Record, durably, that the managed save of ``instance_name`` about
    to be written is not scrubbed yet.
    """
    try:
        save_markers.write(_instance_name(instance_name))
    except exception.SparcError as e:
        raise PrivilegedScrubError(str(e))


@privsep.scrub_pctxt.entrypoint
def end_managed_save(instance_name: str) -> bool:
    """Forget the record: the managed save was scrubbed, kept unscrubbed
    as the policy allows, or is gone. Returns whether there was one.
    """
    return save_markers.remove(_instance_name(instance_name))


@privsep.scrub_pctxt.entrypoint
def discard_managed_save(instance_name: str) -> bool:
    """Delete the managed save of ``instance_name`` (checked as
    :func:`managed_save_file` does) and its sealed pages, then its record
    and the journal of its unfinished scrub. Returns whether a managed
    save was deleted.
    """
    name = _instance_name(instance_name)
    path = os.path.join(conf.CONF.sparc.managed_save_dir, name + '.save')
    deleted = False
    if os.path.lexists(path):
        os.unlink(managed_save_file(path, name))
        deleted = True
    # Sealed pages of a seal that did not finish: nothing to unseal now.
    try:
        os.unlink(_sealed_pages_path(name))
    except FileNotFoundError:
        pass
    save_markers.remove_journals(name)
    save_markers.remove(name)
    return deleted


@privsep.scrub_pctxt.entrypoint
def pending_managed_saves() -> list:
    """Instance names whose managed save may hold unscrubbed memory: it
    has a record (:func:`begin_managed_save`), or the journal of an
    in-place scrub that :func:`sweep_leftovers` did not finish (call this
    after it): a scrub interrupted under a release whose journal format
    this one refuses. Names that are not instance names are left out.
    """
    return [name for name in save_markers.unfinished()
            if INSTANCE_NAME.fullmatch(name)]


@privsep.scrub_pctxt.entrypoint
def sweep_leftovers() -> list[dict]:
    """Finish or remove what killed scrubs left on disk in
    ``[sparc] managed_save_dir`` and ``[sparc] work_dir`` (see
    :mod:`sparc_nova.checkpoint.sweep`): interrupted in-place scrubs are
    finished from their journal, decompressed memory streams, rewrites
    not yet renamed and journal temporaries of dead processes removed.
    Journals that are not ours are refused and left in place.

    For nova-compute to call once at start (``init_host``), before any
    managed save is restored: those directories belong to root. Takes
    no argument: it works only on the configured directories.

    :returns: one :meth:`SweepReport.to_dict` per directory that exists.
    :raises PrivilegedScrubError: a directory could not be listed.
    """
    directories = [conf.CONF.sparc.managed_save_dir]
    if conf.CONF.sparc.work_dir:
        directories.append(conf.CONF.sparc.work_dir)
    reports = []
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        try:
            rep = sweep.sweep(
                directory, conf.CONF.sparc.journal_key_file,
                journal_dir=_journal_dir())
        except Exception as e:
            raise PrivilegedScrubError('%s: %s' % (type(e).__name__, e)) \
                from e
        for message in rep.refused:
            LOG.warning('Left in place: %s', message)
        if rep.replayed or rep.removed:
            LOG.info('%(dir)s: finished %(r)d interrupted scrubs, removed '
                     '%(n)d leftovers',
                     {'dir': directory, 'r': len(rep.replayed),
                      'n': len(rep.removed)})
        reports.append(rep.to_dict())
    return reports


# -- sealed suspends (engine.seal) ----------------------------------------

def _sealing_key(key) -> bytes:
    from sparc_nova.checkpoint import sealed
    if not isinstance(key, bytes) or len(key) != sealed.KEY_SIZE:
        raise PrivilegedScrubError('refused: the sealing key is not %d '
                                   'bytes' % sealed.KEY_SIZE)
    return key


def _save_path(instance_name: str) -> str:
    """Where the managed save of ``instance_name`` is."""
    return os.path.join(os.path.realpath(conf.CONF.sparc.managed_save_dir),
                        _instance_name(instance_name) + '.save')


def _sealed_pages_path(instance_name: str) -> str:
    """The sealed-pages file of ``instance_name``'s managed save, next to
    it in ``[sparc] managed_save_dir`` (root's, mode 0600).
    """
    from sparc_nova.checkpoint import sealed
    return sealed.sealed_path(_save_path(instance_name))


def _in_place(path: str, limits) -> bool:
    """Whether the seal or unseal of managed save ``path`` patches it in
    place (raw, with a journal key, in a directory private to root).

    Unlike a scrub, not through ``[sparc] journal_dir`` where the
    managed-save directory is the QEMU user's: an in-place unseal writes
    every restored page twice, into the journal and then into the file
    (3.6-3.8 s for 1 GiB of sealed pages, where a rewrite to a new file
    takes 1.0-1.4 s); there the file is rewritten instead.
    """
    with open(path, 'rb') as f:
        header = libvirt_save.read_header(f, path, limits)
    return write_mode.choose(
        path, header.compressed, in_place_if_possible=True,
        journal_key=conf.CONF.sparc.journal_key_file).in_place


def _journal_dir() -> str | None:
    """``[sparc] journal_dir``, None when empty."""
    return conf.CONF.sparc.journal_dir or None


@privsep.scrub_pctxt.entrypoint
def seal_managed_save(*, path: str, instance_name: str, key: bytes,
                      selectors: list[str], exclude_paths: list[str],
                      follow_ipc: bool, scrub_free_memory: bool) -> dict:
    """Seal a managed-save file (written, libvirt's save returned): what
    a scrub with the same arguments would zero is encrypted into its
    sealed-pages file (``<path>.sparc-sealed``, root's, mode 0600) under
    ``key``, then zeroed, with no kill armed (:func:`sparc_nova.engine.
    seal.seal_checkpoint`).

    The arguments are :func:`scrub_managed_save`'s plus ``key``, the 32
    bytes from the key manager; it crosses only this call and is kept
    nowhere.

    :returns: ``{'summary': str, 'report': dict}``
    :raises PrivilegedScrubError: refused, or the seal failed. The
        managed save is then as libvirt wrote it (a seal that failed
        after its rewrite is unsealed again with ``key``); if even that
        fails, the managed save and its sealed pages are deleted (fail
        closed), and the message says so.
    """
    from sparc_nova.engine import seal

    _primitives(path, selectors, exclude_paths, follow_ipc,
                scrub_free_memory, instance_name)
    key = _sealing_key(key)
    checked = managed_save_file(path, instance_name)
    options = _engine_options(checked, exclude_paths, follow_ipc,
                              scrub_free_memory)
    spath = _sealed_pages_path(instance_name)
    if os.path.lexists(spath):
        raise PrivilegedScrubError('%s: refused: sealed pages are already '
                                   'there' % spath)
    try:
        in_place = _in_place(checked, options['limits'])
        journal_key = options.pop('journal_key')
        report = seal.seal_checkpoint(
            checked, list(selectors), key, in_place=in_place,
            journal_key=journal_key if in_place else None, **options)
    except Exception as e:
        message = '%s: %s' % (type(e).__name__, e)
        if os.path.lexists(spath):
            message += '; ' + _undo_seal(checked, spath, key, options)
        raise PrivilegedScrubError(message) from e
    return {'summary': report.summary(), 'report': report.to_dict()}


def _undo_seal(path: str, spath: str, key: bytes, options: dict) -> str:
    """Put back a seal that failed after its sealed pages were written;
    if that fails, delete the managed save and its sealed pages. What
    was done, in words.
    """
    from sparc_nova.engine import seal
    try:
        seal.unseal_checkpoint(path, key, work_dir=options['work_dir'],
                               limits=options['limits'])
        return 'the managed save was unsealed again'
    except Exception as e:
        LOG.error('%s: the failed seal could not be undone (%s: %s); '
                  'deleting the managed save', path, type(e).__name__, e)
    for name in (path, spath):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
    return 'it could not be unsealed again, so the managed save was deleted'


@privsep.scrub_pctxt.entrypoint
def unseal_managed_save(*, path: str, instance_name: str,
                        key: bytes) -> dict:
    """Unseal a sealed managed save with ``key`` before it is restored
    (:func:`sparc_nova.engine.seal.unseal_checkpoint`): every tag, the
    checkpoint's identity and every sealed page are checked before
    anything is written; the sealed-pages file is deleted last.

    :returns: the unseal's counts and timings.
    :raises PrivilegedScrubError: refused (a wrong key, altered or
        truncated sealed pages, a checkpoint changed since the seal) or
        failed; nothing was changed.
    """
    from sparc_nova.engine import seal

    if not (isinstance(path, str) and isinstance(instance_name, str)):
        raise PrivilegedScrubError('refused: arguments are not path: str, '
                                   'instance_name: str, key: bytes')
    key = _sealing_key(key)
    checked = managed_save_file(path, instance_name)
    spath = _sealed_pages_path(instance_name)
    journal_key = conf.CONF.sparc.journal_key_file
    try:
        limits = limits_mod.Limits.from_conf(conf.CONF)
        in_place = _in_place(checked, limits)
        result = seal.unseal_checkpoint(
            checked, key, in_place=in_place, sealed_file=spath,
            journal_key=journal_key if in_place else None,
            work_dir=conf.CONF.sparc.work_dir or None, limits=limits,
            progress=_ProgressLog(checked))
    except Exception as e:
        raise PrivilegedScrubError('%s: %s' % (type(e).__name__, e)) from e
    return {k: result[k] for k in ('frames_restored', 'byte_ranges_restored',
                                   'pages_written', 'timings')}


@privsep.scrub_pctxt.entrypoint
def kill_sealed_managed_save(*, path: str, instance_name: str,
                             selectors: list[str], exclude_paths: list[str],
                             follow_ipc: bool,
                             scrub_free_memory: bool) -> dict:
    """Give up the seal of a managed save whose key cannot be fetched:
    scrub it with the kill armed and delete its sealed pages
    (:func:`sparc_nova.engine.seal.kill_sealed`). The arguments are
    :func:`scrub_managed_save`'s.

    :returns: ``{'summary': str, 'report': dict}``
    :raises PrivilegedScrubError: refused or failed; the sealed pages are
        kept.
    """
    from sparc_nova.engine import seal

    _primitives(path, selectors, exclude_paths, follow_ipc,
                scrub_free_memory, instance_name)
    checked = managed_save_file(path, instance_name)
    options = _engine_options(checked, exclude_paths, follow_ipc,
                              scrub_free_memory)
    try:
        in_place = _in_place(checked, options['limits'])
        journal_key = options.pop('journal_key')
        report = seal.kill_sealed(
            checked, list(selectors),
            sealed_file=_sealed_pages_path(instance_name),
            in_place=in_place, journal_key=journal_key if in_place else None,
            **options)
    except Exception as e:
        raise PrivilegedScrubError('%s: %s' % (type(e).__name__, e)) from e
    return {'summary': report.summary(), 'report': report.to_dict()}


@privsep.scrub_pctxt.entrypoint
def sealed_pages_state(instance_name: str) -> dict:
    """``{'managed_save': bool, 'sealed': bool}``: whether
    ``instance_name`` has a managed-save file, and sealed pages next to
    it.
    """
    return {'managed_save': os.path.lexists(_save_path(instance_name)),
            'sealed': os.path.lexists(_sealed_pages_path(instance_name))}


@privsep.scrub_pctxt.entrypoint
def discard_sealed_pages(instance_name: str) -> bool:
    """Delete the sealed pages of ``instance_name`` once its managed save
    is gone (deleted, or dropped by libvirt: nothing can be unsealed
    any more). Refused while the managed save is there. Returns whether
    there were any.
    """
    spath = _sealed_pages_path(instance_name)
    if os.path.lexists(_save_path(instance_name)):
        raise PrivilegedScrubError('%s: refused: its managed save is still '
                                   'there' % spath)
    try:
        os.unlink(spath)
    except FileNotFoundError:
        return False
    return True
