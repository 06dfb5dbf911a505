"""Where the scrub plan is made: in the sandbox child, or here.

With the sandbox on (the default), the guest kernel is modelled and the
plan made (:func:`.planner.plan_scrub`) in the unprivileged sandbox
child (:func:`plan_in_sandbox`); this process parses only the
checkpoint's format, then decodes the plan and validates it against the
RAM pages of the checkpoint it opened itself (:func:`receive_plan`,
:func:`.plan_codec.decode_plan`). With the sandbox off (debugging only)
:func:`plan_session` runs the planner in this process.
"""

import time

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import limits as limits_mod
from sparc_nova.checkpoint import stream_follow
from sparc_nova.engine import errors
from sparc_nova.engine import memstats
from sparc_nova.engine import patches
from sparc_nova.engine import plan_codec
from sparc_nova.engine import planner
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import sandbox as sandbox_mod
from sparc_nova.engine import sandbox_calls
from sparc_nova.engine import session as session_mod

__all__ = ['PLAN_ENTRY', 'SANDBOX_PROCESS', 'open_and_start_plan',
           'plan_in_sandbox', 'plan_session', 'receive_plan']


def plan_session(s: session_mod.KernelSession, path: str,
                 exclusion: planner.Exclusion,
                 rep: report_mod.ScrubReport) -> patches.PagePatcher:
    """Run :func:`.planner.plan_scrub` on session ``s`` (whose guest
    kernel is modelled), in whichever process that is.

    :raises ScrubError: naming ``path``, for a guest-side failure or a
        :class:`~.patches.PlanConflict`.
    """
    try:
        return planner.plan_scrub(s.kernel, s.memory, exclusion, rep)
    except session_mod.GUEST_ERRORS + (patches.PlanConflict,) as e:
        raise session_mod.guest_failure(path, e)


def plan_in_sandbox(args: dict, files: dict) -> dict:
    """Sandbox child side of the scrub: model the guest kernel, make the
    plan and return it encoded (:func:`.plan_codec.encode_plan`).

    :param args: :meth:`.planner.Exclusion.to_args` plus ``report`` (the
        encoded report so far), ``path``, ``limits``,
        ``buildid_cache_dir`` and, for an image being written,
        ``follow_seconds``.
    :param files: ``{'stream': the migration stream}``.
    """
    try:
        rep = plan_codec.decode_value(args['report'])
        exclusion = planner.Exclusion.from_args(args)
        s = sandbox_calls.child_session(args, files)
        try:
            rep.lap('parse_and_introspect')
            patcher = plan_session(s, args['path'], exclusion, rep)
            rep.lap('plan')
            memstats.give_back_free_memory()
            return plan_codec.encode_plan(rep, patcher)
        finally:
            s.close()
    except session_mod.GUEST_ERRORS as e:
        raise sandbox_calls.child_error(e)


PLAN_ENTRY = __name__ + ':plan_in_sandbox'

#: The sandbox child's name in the report's memory figures
#: (``sandbox_peak_rss_mib``, ``sandbox_peak_private_mib``).
SANDBOX_PROCESS = 'sandbox'


def open_and_start_plan(path: str, exclusion: planner.Exclusion,
                        rep: report_mod.ScrubReport, *,
                        work_dir: str | None,
                        limits: limits_mod.Limits | None,
                        buildid_cache_dir: str | None,
                        sandbox_policy: sandbox_mod.SandboxPolicy,
                        progress=None,
                        follow: stream_follow.Follow | None = None,
                        file=None, snapshot: str | None = None):
    """Open ``path`` for a scrub: ``(session, pending plan)``; ``file``
    is ``path`` already open (binary, for reading), used instead of
    opening it and closed with the session; ``snapshot``, the internal
    snapshot of a qcow2 disk image.

    With the sandbox (``sandbox_policy.enabled``), the child that plans
    the scrub is started on the file before this process parses it, so
    that both parse at once (a machine has more than one core): the child's
    start-up and parse then cost little more than this process's own. A
    compressed image is decompressed here first and the child reads the
    decompressed stream. Without the sandbox the pending plan is None and
    the session models the guest kernel itself. With ``follow`` (an image
    still being written) both follow the raw stream as it is written.

    :raises CheckpointError: the file cannot be parsed.
    :raises ScrubError: naming ``path``, for any other failure.
    """
    if not sandbox_policy.enabled:
        return session_mod.open_session(
            path, work_dir=work_dir, limits=limits,
            buildid_cache_dir=buildid_cache_dir, progress=progress,
            follow=follow, file=file, snapshot=snapshot), None
    args = dict(exclusion.to_args(), buildid_cache_dir=session_mod.
                buildid_cache(buildid_cache_dir).directory or '')
    f = file if file is not None else checkpoint_mod.open_file(path)
    pending = None
    try:
        growing = 0
        if follow is not None:
            head = stream_follow.wait_header(
                f, path, follow, limits or limits_mod.DEFAULT)
            raw = not head.compressed
            growing = stream_follow.stream_bound(
                head, limits or limits_mod.DEFAULT)
            follow_args = dict(args, follow_seconds=max(
                0.0, follow.deadline - time.monotonic()))
        else:
            raw = checkpoint_mod.stream_is_raw(f, path, limits or
                                               limits_mod.DEFAULT)
            follow_args = args
        if raw:
            pending = _start_plan(f, path, limits, follow_args, rep,
                                  sandbox_policy, growing)
        s = session_mod.open_session(
            path, work_dir=work_dir, limits=limits, buildid_cache_dir=None,
            model_kernel=False, progress=progress, file=f, follow=follow,
            snapshot=snapshot)
    except BaseException:
        if pending is not None:
            pending.cancel()
        f.close()
        raise
    if pending is None:
        try:
            pending = _start_plan(s.ck.stream_file, path, limits, args, rep,
                                  sandbox_policy)
        except BaseException:
            s.close()
            raise
    return s, pending


def _start_plan(stream, path, limits, args, rep, sandbox_policy,
                growing=0) -> sandbox_mod.Pending:
    """Start :func:`plan_in_sandbox` on the open ``stream`` (which may
    still grow by ``growing`` bytes).
    """
    args = dict(args, report=plan_codec.encode_value(rep))
    pending = sandbox_calls.start_in_sandbox(stream, path, PLAN_ENTRY, args,
                                             limits, sandbox_policy, growing)
    rep.watch_process(SANDBOX_PROCESS, pending.pid)
    return pending


def receive_plan(s: session_mod.KernelSession, path: str,
                 rep: report_mod.ScrubReport,
                 pending: sandbox_mod.Pending) -> patches.PagePatcher:
    """Wait for the plan the sandbox child makes (started by
    :func:`open_and_start_plan`), validate it against session ``s``'s RAM
    pages and take the child's report sections into ``rep`` (and its
    confinement into ``rep.sandbox``).

    Timings: the child's own (``parse_and_introspect``, ``plan``, ...),
    which overlap this process's ``open``, and ``sandbox`` for what the
    round trip adds after that open (waiting for the child, decoding and
    validating the plan).

    :raises ScrubError: naming ``path``: the child failed, or its plan is
        unusable (a frame or write outside the checkpoint's RAM, ...).
    """
    doc = sandbox_calls.wait_for_result(pending, path)
    rep.note_memory(SANDBOX_PROCESS, pending.memory)
    identity = doc.pop('_sandbox', None)
    try:
        child_rep, patcher = plan_codec.decode_plan(doc, s.memory,
                                                    s.ck.layout.devices)
    except plan_codec.PlanError as e:
        raise errors.ScrubError(path, 'introspection sandbox returned an '
                                      'unusable plan: %s' % e)
    rep.lap('sandbox')
    plan_codec.merge_report(rep, child_rep)
    if isinstance(identity, dict):
        rep.sandbox = sandbox_mod.confinement_summary(identity)
    del doc, child_rep
    memstats.give_back_free_memory()    # the decoded document's
    return patcher
