"""The memory engine's calls into the parsing sandbox (:mod:`.sandbox`).

Both sides of a call on a memory checkpoint: the parent starts a
function of the engine in the sandbox child on the open migration stream
(:func:`start_in_sandbox`) and waits for its result
(:func:`wait_for_result`); the child opens its own
:class:`~.session.KernelSession` on the descriptor it was given
(:func:`child_session`) and reports guest-side failures as plain
:class:`~sparc_nova.exception.SparcError` (:func:`child_error`). The
functions run there are :func:`.sandboxed_plan.plan_in_sandbox` (the
scrub plan) and :func:`.listings.listing_in_sandbox` (``ps``, ``deps``).
"""

import dataclasses
import importlib

from sparc_nova.checkpoint import formats
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import stream_follow
from sparc_nova.engine import errors
from sparc_nova.engine import sandbox as sandbox_mod
from sparc_nova.engine import session as session_mod
from sparc_nova import exception

__all__ = ['PREPARE_ENTRY', 'child_error', 'child_session',
           'prepare_sandbox', 'start_in_sandbox', 'wait_for_result']


def prepare_sandbox() -> None:
    """Sandbox child, before it is jailed: load the checkpoint format
    plugins (stevedore reads their entry points from the file system,
    which the jail does not have) and the module drgn imports when a
    program is made.
    """
    formats.load()
    importlib.import_module('_drgn_util.plugins')


PREPARE_ENTRY = __name__ + ':prepare_sandbox'


def start_in_sandbox(stream, path: str, entry: str, args: dict,
                     limits: limits_mod.Limits | None,
                     sandbox_policy: sandbox_mod.SandboxPolicy,
                     growing: int = 0) -> sandbox_mod.Pending:
    """Start ``entry`` (``"module:function"``) in the sandbox child on
    the open migration ``stream`` of checkpoint ``path``, and return at
    once.

    The child gets a new read-only descriptor of the stream: the file
    itself for a raw image, else the temporary file this process
    decompressed it into. Decompression stays here because the child may
    neither run programs (seccomp refuses exec) nor write files
    (RLIMIT_FSIZE 0), and the rewrite needs the decompressed stream
    anyway; the decompressors parse only the compression format, never
    guest structures.

    :param args: the entry's arguments (JSON primitives); ``path`` and
        ``limits`` are added. Its ``buildid_cache_dir``, when set, stays
        visible in the jail.
    :param growing: bytes the stream may still grow by (an image being
        written).
    :raises ScrubError: the child could not be started.
    """
    args = dict(args, path=path,
                limits=dataclasses.asdict(limits or limits_mod.DEFAULT))
    try:
        return sandbox_mod.start(entry, args, {'stream': stream},
                                 sandbox_policy, growing=growing,
                                 keep=(args.get('buildid_cache_dir'),),
                                 prepare=PREPARE_ENTRY)
    except sandbox_mod.SandboxError as e:
        raise errors.ScrubError(path, 'introspection sandbox: %s' % e)


def wait_for_result(pending: sandbox_mod.Pending, path: str) -> dict:
    """The result of a call started by :func:`start_in_sandbox`
    (unchecked: the caller validates it).

    :raises ScrubError: naming ``path``: the child's own error message,
        or why the sandbox failed (limit, crash, malformed output).
    """
    try:
        return pending.result()
    except sandbox_mod.ReportedError as e:
        raise errors.ScrubError(path, str(e))
    except sandbox_mod.SandboxError as e:
        raise errors.ScrubError(path, 'introspection sandbox: %s' % e)


def child_session(args: dict, files: dict) -> session_mod.KernelSession:
    """The sandbox child's session on the stream it was given, with the
    guest kernel modelled (followed while it is written when the parent
    follows it too).
    """
    follow = None
    if isinstance(args.get('follow_seconds'), (int, float)):
        follow = stream_follow.Follow.within(args['follow_seconds'])
    return session_mod.KernelSession(
        args['path'], None, limits_mod.Limits(**args['limits']),
        session_mod.buildid_cache(args['buildid_cache_dir']),
        file=files['stream'], follow=follow)


def child_error(e: BaseException) -> exception.SparcError:
    """An error of the sandbox child as the parent reports it (the parent
    adds the file name).
    """
    if isinstance(e, exception.CheckpointError):
        return exception.SparcError(
            e.reason if e.offset is None else 'at offset %d: %s'
            % (e.offset, e.reason))
    return exception.SparcError(str(e))
