"""``sparc checkpoint ps | deps | scrub | seal | unseal | save | verify |
extract-ram``: memory commands.

Thin wrappers over :mod:`sparc_nova.engine.memory` (``scrub``),
:mod:`sparc_nova.engine.seal` (``seal``, ``unseal``),
:mod:`sparc_nova.engine.listings` (``ps``, ``deps``, ``verify``, the
VMCOREINFO note of ``extract-ram --format elf``),
:mod:`sparc_nova.checkpoint.elf_extract` (``extract-ram --format elf``)
and :mod:`sparc_nova.engine.domain_save` (``save``), which get their
configuration from here (:func:`_engine_conf`); exit codes follow
:mod:`sparc_nova.cmd.sparc` (``verify`` exits 1 when a marker is found).

``verify`` names markers by their position on the command line (``#1``,
``#2``...) and length, never by their text: markers are secrets, and its
output ends up in logs and CI artifacts.

``seal`` and ``unseal`` read their key from ``--key-file`` (32 bytes,
:func:`sparc_nova.checkpoint.sealed.load_key_file`) and never write it
anywhere: not in the report, the output or a temporary file.
"""

import os
import sys

from sparc_nova.checkpoint import elf_extract
from sparc_nova.checkpoint import limits
from sparc_nova.checkpoint import sealed
from sparc_nova.cmd import checkpoint as checkpoint_cmd
from sparc_nova.cmd import output
from sparc_nova import conf
from sparc_nova.engine import domain_save
from sparc_nova.engine import listings
from sparc_nova.engine import memory
from sparc_nova.engine import memstats
from sparc_nova.engine import sandbox
from sparc_nova.engine import seal
from sparc_nova import exception
from sparc_nova.printable import printable

PS_COLUMNS = ['pid', 'ppid', 'uid', 'comm', 'exe', 'threads', 'rss_pages']


def _limits():
    return limits.Limits.from_conf(conf.CONF)


def _work_dir():
    return conf.CONF.sparc.work_dir or None


def _engine_conf() -> dict:
    """The memory engine's configuration, from ``[sparc]``."""
    return {'buildid_cache_dir': conf.CONF.sparc.buildid_cache_dir,
            'sandbox': sandbox.SandboxPolicy.from_conf(conf.CONF),
            'limits': _limits(), 'work_dir': _work_dir()}


def do_ps(args) -> int:
    listing = listings.list_processes(args.file, snapshot=args.snapshot,
                                      **_engine_conf())
    procs = listing['processes']
    if not args.all:
        procs = [p for p in procs if not p['kernel_thread']]
    if args.format == 'json':
        output.emit_json({'kernel': listing['kernel'], 'processes': procs})
    else:
        k = listing['kernel']
        print('# kernel %s, BUILD-ID %s' % (
            printable(k['osrelease']), printable(k['build_id'])))
        print(output.table(procs, PS_COLUMNS))
    return 0


def _rewrite_args(args) -> dict:
    """The options ``scrub`` and ``seal`` pass to their engine: what to
    exclude, where to write, and the configuration. ``--output`` and
    ``--in-place`` are requests: the engine decides the write mode
    (sparc_nova.checkpoint.write_mode) and refuses what cannot be done
    (exit 2).
    """
    return dict(output=args.output, in_place=args.in_place,
                with_children=args.with_children,
                scrub_free_memory=not args.keep_free_pages,
                follow_ipc=args.follow_ipc,
                exclude_paths=args.exclude_path or (),
                journal_key=conf.CONF.sparc.journal_key_file,
                **_engine_conf())


def do_scrub(args) -> int:
    # This process exists to scrub: big arrays freed go back at once.
    memstats.map_large_allocations()
    kwargs = _rewrite_args(args)
    progress = output.Progress('scrubbing')
    try:
        rep = memory.scrub_checkpoint(
            args.file, args.exclude_process, dry_run=args.dry_run,
            progress=progress, snapshot=args.snapshot, **kwargs)
    finally:
        progress.finish()
    _emit_report(args, rep)
    return 0


def do_seal(args) -> int:
    # This process exists to scrub: big arrays freed go back at once.
    memstats.map_large_allocations()
    kwargs = _rewrite_args(args)
    key = sealed.load_key_file(args.key_file)
    progress = output.Progress('sealing')
    try:
        rep = seal.seal_checkpoint(args.file, args.exclude_process, key,
                                   progress=progress, **kwargs)
    finally:
        progress.finish()
    _emit_report(args, rep)
    return 0


def do_unseal(args) -> int:
    # Not memstats.map_large_allocations(): an unseal makes no large
    # arrays to give back (it decrypts its records into reused buffers),
    # and mapping every allocation of a megabyte or more on its own cost
    # the unseals that made one per record seconds of page faults.
    key = sealed.load_key_file(args.key_file)
    progress = output.Progress('unsealing')
    try:
        result = seal.unseal_checkpoint(
            args.file, key, output=args.output, in_place=args.in_place,
            sealed_file=args.sealed_file, work_dir=_work_dir(),
            limits=_limits(), progress=progress,
            journal_key=conf.CONF.sparc.journal_key_file)
    finally:
        progress.finish()
    if args.format == 'json':
        output.emit_json(result)
    else:
        print('unsealed %s: %d frames and %d byte ranges restored, '
              'verification %s; written to %s; removed %s'
              % (args.file, result['frames_restored'],
                 result['byte_ranges_restored'],
                 result['verification']['result'], result['output'],
                 result['sealed_file']))
    return 0


def do_save(args) -> int:
    # This process exists to scrub: big arrays freed go back at once.
    memstats.map_large_allocations()
    import libvirt

    try:
        conn = libvirt.open(args.connect)
    except libvirt.libvirtError as e:
        raise SystemExit('sparc: %s' % e)
    try:
        dom = conn.lookupByName(args.domain)
        rep = domain_save.save_scrubbed(
            dom, os.path.abspath(args.file), args.exclude_process,
            with_children=args.with_children,
            scrub_free_memory=not args.keep_free_pages,
            follow_ipc=args.follow_ipc,
            exclude_paths=args.exclude_path or (), **_engine_conf())
    except libvirt.libvirtError as e:
        raise SystemExit('sparc: %s' % e)
    finally:
        conn.close()
    _emit_report(args, rep)
    return 0


def _emit_report(args, rep) -> None:
    data = rep.to_dict()
    if args.report:
        output.write_json(args.report, data)
    if getattr(args, 'dry_run', False) or args.format == 'json':
        output.emit_json(data)
    else:
        print(rep.summary())


def _dot(graph: dict) -> str:
    """The IPC graph as a Graphviz digraph."""
    def q(text):
        # Guest strings, escaped (printable() doubles backslashes).
        return '"%s"' % printable(text).replace('"', '\\"')
    lines = ['digraph ipc {', '  rankdir=LR;']
    pids = {e['from'] for e in graph['edges']} | \
        {e['to'] for e in graph['edges']}
    for p in graph['processes']:
        if p['pid'] in pids:
            lines.append('  p%d [label=%s];' % (
                p['pid'], q('%d %s' % (p['pid'], p['comm']))))
    for e in graph['edges']:
        lines.append('  p%d -> p%d [label=%s];' % (
            e['from'], e['to'], q('%s %s' % (e['kind'], e['object']))))
    lines.append('}')
    return '\n'.join(lines)


def do_deps(args) -> int:
    graph = listings.list_dependencies(args.file, snapshot=args.snapshot,
                                       **_engine_conf())
    if args.format == 'json':
        output.emit_json(graph)
    elif args.format == 'dot':
        print(_dot(graph))
    else:
        comms = {p['pid']: p['comm'] for p in graph['processes']}
        rows = [{'from': '%d %s' % (e['from'], comms.get(e['from'], '?')),
                 'to': '%d %s' % (e['to'], comms.get(e['to'], '?')),
                 'kind': e['kind'], 'object': e['object']}
                for e in graph['edges']]
        print(output.table(rows, ['from', 'to', 'kind', 'object']))
    return 0


def do_verify(args) -> int:
    markers = [m.encode() for m in args.marker]
    counts = listings.count_markers(args.file, markers, work_dir=_work_dir(),
                                    limits=_limits(), snapshot=args.snapshot)
    found = False
    rows = []
    for i, m in enumerate(markers):
        c = counts[m]
        total = c['memory'] + c['stream']
        found |= total > 0
        rows.append({'marker': '#%d' % (i + 1), 'length': len(m),
                     'in_memory': c['memory'],
                     'stale_copies': c['stale_copies'],
                     'in_file': c['stream'],
                     'first_addresses': ' '.join(c['addresses'][:4])})
    state = checkpoint_cmd.sealed_state(args.file)
    if args.format == 'json':
        output.emit_json({'file': args.file, 'found': found,
                          'markers': rows, 'sealed': state})
    else:
        print(output.table(rows, ['marker', 'length', 'in_memory',
                                  'stale_copies',
                                  'in_file', 'first_addresses']))
        if state:
            print(checkpoint_cmd.sealed_line(state))
    if found:
        print('sparc: markers found in %s' % args.file, file=sys.stderr)
        return 1
    return 0


def _add_exclusion_args(p) -> None:
    """What to exclude: the options ``scrub`` and ``save`` share."""
    p.add_argument('--exclude-process', action='append', required=True,
                   metavar='SEL',
                   help='NAME (comm), exe:GLOB, pid:N, uid:N or '
                        'cgroup:PATH (repeatable).')
    p.add_argument('--with-children', action='store_true',
                   help='Also select descendants of selected processes.')
    p.add_argument('--keep-free-pages', action='store_true',
                   help='Do not scrub free memory.')
    p.add_argument('--follow-ipc', dest='follow_ipc', action='store_true',
                   default=True,
                   help='Also exclude the processes the selected ones send '
                        'data to (pipes, sockets, shared memory, ptys, '
                        'ptrace), transitively (the default).')
    p.add_argument('--no-follow-ipc', dest='follow_ipc',
                   action='store_false',
                   help='Scrub only the kernel buffers of the selected '
                        'processes; report their peers as at risk.')
    p.add_argument('--exclude-path', action='append', metavar='GLOB',
                   help='Guest path glob whose tmpfs or shared-memory '
                        'contents are scrubbed when only selected '
                        'processes hold them (repeatable).')


def _add_key_args(p) -> None:
    """The options ``seal`` and ``unseal`` share."""
    p.add_argument('--key-file', required=True, metavar='KEY',
                   help='File holding the 32-byte sealing key (mode 0600 '
                        'or 0400, owned by root or you).')
    p.add_argument('--output', metavar='OUT',
                   help='Write the result here (default: replace FILE '
                        'atomically).')
    p.add_argument('--in-place', action='store_true',
                   help='Patch FILE in place through the journal (raw '
                        'images only; unseal in place needs a seal made '
                        'in place).')


def _vmcoreinfo(path: str, snapshot: str | None) -> bytes | None:
    """The guest kernel's vmcoreinfo for an ELF core's note, or None
    (with a warning) when the guest kernel cannot be modelled.
    """
    try:
        return listings.kernel_vmcoreinfo(path, snapshot=snapshot,
                                          **_engine_conf())
    except exception.SparcError as e:
        print('warning: no VMCOREINFO note: %s' % printable(str(e)),
              file=sys.stderr)
        return None


def do_extract_ram(args) -> int:
    vmcoreinfo = _vmcoreinfo(args.file, args.snapshot) \
        if args.format == 'elf' else None
    with checkpoint_cmd.open_from_args(args.file,
                                       snapshot=args.snapshot) as ck:
        progress = output.Progress('extracting')
        with open(args.out, 'wb') as f:
            if args.format == 'elf':
                ranges = elf_extract.write_elf(ck, f, vmcoreinfo, progress)
                size = sum(r.length for r in ranges)
            else:
                ck.memory.write_raw(f, progress)
                size = ck.memory.size
        progress.finish()
    print('wrote %d bytes of guest memory to %s' % (size, args.out),
          file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add ``ps``, ``deps``, ``scrub``, ``seal``, ``unseal``, ``save``,
    ``extract-ram`` and ``verify`` to ``sparc checkpoint``.
    """
    p = sub.add_parser('ps', help='Processes in the checkpoint\'s guest.')
    p.add_argument('file', help='Checkpoint file.')
    p.add_argument('--all', action='store_true',
                   help='Include kernel threads.')
    checkpoint_cmd.add_snapshot_arg(p)
    output.add_format_arg(p)
    p.set_defaults(func=do_ps)

    p = sub.add_parser('deps',
                       help='IPC dependencies between the guest\'s '
                            'processes (pipes, sockets, shared memory, '
                            'ptys, ptrace).')
    p.add_argument('file', help='Checkpoint file.')
    p.add_argument('--format', choices=('text', 'json', 'dot'),
                   default='text', help='Output format (default: text).')
    checkpoint_cmd.add_snapshot_arg(p)
    p.set_defaults(func=do_deps)

    p = sub.add_parser(
        'scrub', help='Exclude processes: scrub their memory and free '
                      'memory, kill them on restore.')
    p.add_argument('file', help='Checkpoint file.')
    _add_exclusion_args(p)
    p.add_argument('--output', metavar='OUT',
                   help='Write the result here (default: replace FILE '
                        'atomically).')
    p.add_argument('--in-place', action='store_true',
                   help='Patch FILE in place (raw images and qcow2 '
                        'internal snapshots).')
    checkpoint_cmd.add_snapshot_arg(
        p, ' Only that snapshot\'s own clusters are written; the disk and '
           'the other snapshots stay as they are. The domain must be shut '
           'off.')
    p.add_argument('--dry-run', action='store_true',
                   help='Print the plan as JSON; write nothing.')
    p.add_argument('--report', metavar='REPORT.json',
                   help='Also write the full report here.')
    output.add_format_arg(p)
    p.set_defaults(func=do_scrub)

    p = sub.add_parser(
        'seal', help='Exclude processes without losing them: encrypt what '
                     'a scrub would zero into a sealed-pages file next to '
                     'the checkpoint, zero it in the checkpoint, arm no '
                     'kill. Unseal before restoring.')
    p.add_argument('file', help='Checkpoint file.')
    _add_exclusion_args(p)
    _add_key_args(p)
    p.add_argument('--report', metavar='REPORT.json',
                   help='Also write the full report here.')
    output.add_format_arg(p)
    p.set_defaults(func=do_seal)

    p = sub.add_parser(
        'unseal', help='Put back what a seal took out (after checking the '
                       'key, every record and that the checkpoint did not '
                       'change), then remove the sealed-pages file.')
    p.add_argument('file', help='Sealed checkpoint file.')
    _add_key_args(p)
    p.add_argument('--sealed-file', metavar='PATH',
                   help='The sealed-pages file (default: FILE%s).'
                        % sealed.SUFFIX)
    output.add_format_arg(p)
    p.set_defaults(func=do_unseal)

    p = sub.add_parser(
        'save', help='Save a libvirt domain to FILE (like virsh save) and '
                     'exclude processes from the image while it is written.')
    p.add_argument('domain', help='Domain name.')
    p.add_argument('file', help='Save image to write.')
    p.add_argument('--connect', metavar='URI', default='qemu:///system',
                   help='libvirt URI (default: qemu:///system).')
    _add_exclusion_args(p)
    p.add_argument('--report', metavar='REPORT.json',
                   help='Also write the full report here.')
    output.add_format_arg(p)
    p.set_defaults(func=do_save)

    p = sub.add_parser('extract-ram',
                       help='Write guest physical memory as a flat image '
                            '(byte N = guest physical address N) or an ELF '
                            'core.')
    p.add_argument('file', help='Checkpoint file.')
    p.add_argument('out', help='Output file.')
    p.add_argument('--format', choices=('raw', 'elf'), default='raw',
                   help='raw: a flat image of guest RAM; elf: an ELF core '
                        'with one PT_LOAD per guest-physical range (the '
                        'firmware ROM included) and the guest\'s '
                        'VMCOREINFO note, which crash and drgn open.')
    checkpoint_cmd.add_snapshot_arg(p)
    p.set_defaults(func=do_extract_ram)

    p = sub.add_parser('verify',
                       help='Count occurrences of markers in guest memory '
                            'and in the file; exit 1 if any is found.')
    p.add_argument('file', help='Checkpoint file.')
    p.add_argument('--marker', action='append', required=True,
                   metavar='TEXT', help='Text to look for (repeatable; '
                                        'reported as #1, #2... in order).')
    checkpoint_cmd.add_snapshot_arg(p)
    output.add_format_arg(p)
    p.set_defaults(func=do_verify)
