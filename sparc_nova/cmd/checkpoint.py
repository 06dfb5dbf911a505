"""``sparc checkpoint``: memory checkpoints (libvirt save images, managed
save files, QEMU migration streams, ELF memory dumps, internal snapshots
of qcow2 disk images named with ``--snapshot``).

``info`` and ``recover`` are the format layer's commands; the memory
engine adds its own (``ps``, ``scrub``, ``verify``, ``extract-ram``...)
through :func:`register_engine_commands`.
"""

import importlib
import os
import sys
import time

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import journal
from sparc_nova.checkpoint import limits
from sparc_nova.checkpoint import sealed
from sparc_nova.checkpoint import sweep
from sparc_nova.checkpoint import tempfiles
from sparc_nova.cmd import output
from sparc_nova import conf
from sparc_nova.i18n import _P
from sparc_nova.printable import printable

#: Modules that add subcommands to ``sparc checkpoint``; each defines
#: ``register(subparsers)``. Missing modules are skipped.
ENGINE_COMMANDS = ('sparc_nova.cmd.checkpoint_memory',)


def open_from_args(path: str, progress_label: str = 'parsing',
                   snapshot: str | None = None) -> checkpoint.Checkpoint:
    """Open a checkpoint (internal snapshot ``snapshot`` of a qcow2 disk
    image) with the configured limits and work directory, with a
    progress bar on a terminal.
    """
    progress = output.Progress(progress_label)
    try:
        return checkpoint.open_checkpoint(
            path, work_dir=conf.CONF.sparc.work_dir or None,
            limits=limits.Limits.from_conf(conf.CONF), progress=progress,
            snapshot=snapshot)
    finally:
        progress.finish()


def _info_text(info: dict) -> str:
    # The machine type, domain and notes come from the file: escaped.
    lines = ['File:      %s' % printable(info['path']),
             'Kind:      %s' % info['kind'],
             'Machine:   %s' % printable(info['machine'])]
    if 'header' in info:
        h = info['header']
        d = info.get('domain', {})
        lines += ['Header:    version %d, %s, was running: %s'
                  % (h['version'], h['compression'],
                     'yes' if h['was_running'] else 'no'),
                  'Domain:    %s (%s), %s KiB, %s vCPUs, type %s'
                  % tuple(printable(d.get(k)) for k in (
                      'name', 'uuid', 'memory_kib', 'vcpus', 'type'))]
    if 'qcow2' in info:
        q = info['qcow2']
        sn = q['snapshot']
        lines += ['Snapshot:  %s (ID %s) of a qcow2 v%d image, %d bytes of '
                  'vmstate at %d of its view; clusters: %s'
                  % (printable(sn['name']), printable(sn['id']),
                     q['qcow2_version'], sn['vm_state_size'],
                     q['vmstate_offset'], ', '.join(
                         '%d %s' % (n, k) for k, n in
                         q['vmstate_clusters'].items() if n)),
                  'Restore:   %s' % printable(info['restore'])]
    if 'elf' in info:
        # Note names come from the file: escaped.
        e = info['elf']
        lines += ['ELF core:  %d segments; notes: %s; VMCOREINFO: %s'
                  % (len(e['segments']), ', '.join(
                      '%s x%d' % (printable(k), v)
                      for k, v in sorted(e['notes'].items())) or 'none',
                      'yes' if e['vmcoreinfo'] else 'no'),
                  'Restore:   %s' % info['restore']]
    lines.append('Stream:    %d bytes%s' % (
        info['stream_size'],
        '' if info['stream_offset'] is None
        else ' at file offset %d' % info['stream_offset']))
    lines.append('')
    rows = [dict(block=name, **stats)
            for name, stats in info['ram_blocks'].items()]
    lines.append(output.table(rows, ['block', 'length', 'records',
                                     'data_pages', 'zero_pages',
                                     'missing_pages',
                                     'pages_sent_more_than_once']))
    lines.append('')
    lines.append('Guest RAM:')
    for r in info['guest_ram']:
        lines.append('  %s..+%d  %s@%s' % (r['gpa'], r['length'],
                                           r['block'], r['block_offset']))
    lines.append('Sections:  %d (%s decoded)' % (
        info['sections'],
        _P('%d device', '%d devices', info['devices']) % info['devices']))
    if info.get('device_state_note'):
        lines.append('Note:      %s'
                     % printable(info['device_state_note']))
    lines.append('')
    lines.append(output.table(info['vcpus'], [
        'index', 'rip', 'cr3', 'cr4', 'efer', 'cpl', 'halted', 'gs_base',
        'kernel_gs_base']))
    return '\n'.join(lines)


def sealed_state(path: str) -> dict | None:
    """Whether checkpoint ``path`` is sealed: its sealed-pages file's
    header (no key needed), ``{'file', 'error'}`` when that file is
    refused, or None when there is none.
    """
    spath = sealed.sealed_path(path)
    try:
        head = sealed.peek(spath)
    except sealed.SealedFileError as e:
        return {'file': spath, 'error': e.reason}
    return head.as_dict() if head else None


def sealed_line(state: dict) -> str:
    """The line ``info`` and ``verify`` print for a sealed checkpoint."""
    if 'error' in state:
        return 'Sealed:    %s is refused: %s' % (
            state['file'], state['error'])
    return ('Sealed:    yes, %d records in %s; unseal before restoring '
            '(restored sealed, its excluded processes run on zeroed '
            'pages)' % (state['records'], state['file']))


def _snapshots_text(listing: dict) -> str:
    """``info`` of a qcow2 image without ``--snapshot``."""
    rows = [{'id': s['id'], 'name': s['name'],
             'vmstate_bytes': s['vm_state_size'],
             'date': time.strftime('%Y-%m-%d %H:%M:%S',
                                   time.gmtime(s['date']))}
            for s in listing['snapshots']]
    n = sum(1 for s in listing['snapshots'] if s['vm_state_size'])
    return '\n'.join([
        'File:      %s' % printable(listing['path']),
        'Kind:      qcow2 v%d disk image, %d bytes, clusters of %d bytes'
        % (listing['qcow2_version'], listing['virtual_size'],
           listing['cluster_size']),
        'Snapshots: %s; name one with --snapshot NAME'
        % (_P('%d holds memory', '%d hold memory', n) % n), '',
        output.table(rows, ['id', 'name', 'vmstate_bytes', 'date'])])


def do_info(args) -> int:
    if args.snapshot is None:
        listing = checkpoint.internal_snapshots(
            args.file, limits.Limits.from_conf(conf.CONF))
        if listing is not None:
            if args.format == 'json':
                output.emit_json(listing)
            else:
                print(_snapshots_text(listing))
            return 0
    with open_from_args(args.file, snapshot=args.snapshot) as ck:
        info = ck.info()
    info['sealed'] = sealed_state(args.file)
    if args.format == 'json':
        output.emit_json(info)
    else:
        print(_info_text(info))
        if info['sealed']:
            print(sealed_line(info['sealed']))
    return 0


_RECOVERED = {None: 'nothing to recover',
              'replayed': 'finished the interrupted in-place scrub',
              'discarded': 'discarded an incomplete journal; the file was '
                           'not modified'}


def _print_sweep(rep: sweep.SweepReport) -> None:
    for path in rep.replayed:
        print('%s: finished the interrupted in-place scrub' % path)
    for path in rep.removed:
        print('%s: removed' % path)
    for message in rep.refused:
        print('refused: %s' % message, file=sys.stderr)
    replayed, removed = len(rep.replayed), len(rep.removed)
    print('%s: %s, %s, %d refused' % (
        rep.directory,
        _P('%d journal replayed', '%d journals replayed', replayed)
        % replayed,
        _P('%d leftover removed', '%d leftovers removed', removed) % removed,
        len(rep.refused)))


def do_recover(args) -> int:
    if not args.file and not args.sweep:
        raise SystemExit('sparc: checkpoint recover needs FILE or --sweep '
                         'DIR')
    key_file = conf.CONF.sparc.journal_key_file
    journal_dir = conf.CONF.sparc.journal_dir or None
    status = 0
    if args.file:
        outcome = journal.recover(args.file, key_file)
        if journal_dir:
            # A managed save's journal may be kept in the journal
            # directory, named after the file's real path.
            outcome = journal.recover(os.path.realpath(args.file),
                                      key_file, journal_dir) or outcome
        removed = tempfiles.remove_stale_temporaries(args.file)
        print('%s: %s%s' % (args.file, _RECOVERED[outcome],
                            '; removed %d stale temporary files'
                            % len(removed) if removed else ''))
    for directory in args.sweep or ():
        rep = sweep.sweep(directory, key_file, journal_dir)
        _print_sweep(rep)
        status = 2 if rep.refused else status
    return status


def register(groups) -> None:
    parser = groups.add_parser(
        'checkpoint', help='Inspect, scrub and verify memory checkpoints.',
        description='Memory checkpoints: libvirt save images (virsh save, '
                    'managed save, external memory snapshots), QEMU '
                    'migration streams, ELF memory dumps and the internal '
                    'snapshots of qcow2 disk images (--snapshot NAME).')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    p = sub.add_parser('info', help='Header, machine, RAM blocks, page '
                                    'counts and vCPU registers.')
    p.add_argument('file', help='Checkpoint file.')
    add_snapshot_arg(p, ' Without it, info lists the internal snapshots '
                        'of a qcow2 image.')
    output.add_format_arg(p)
    p.set_defaults(func=do_info)

    p = sub.add_parser(
        'recover',
        help='Finish (or discard) an interrupted in-place scrub and remove '
             'temporary files left by a killed rewrite.',
        description='Finish (or discard) an interrupted in-place scrub of '
                    'FILE and remove temporary files left next to it by a '
                    'killed rewrite. A journal is replayed only when its '
                    'owner, mode and MAC ([sparc] journal_key_file) match; '
                    'otherwise it is refused and left in place (exit 2). '
                    'Journals are looked for next to FILE and in [sparc] '
                    'journal_dir. '
                    'With --sweep DIR, do the same for every leftover in '
                    'DIR: journals, journal temporaries, rewritten files '
                    'not yet renamed, decompressed memory streams '
                    '(.sparc-stream-*) and disk scrub working directories '
                    '(.sparc-scrub-*) of processes that are gone.')
    p.add_argument('file', nargs='?', help='Checkpoint file.')
    p.add_argument('--sweep', metavar='DIR', action='append',
                   help='Also sweep this directory (not recursive); may be '
                        'repeated, e.g. the managed-save directory and '
                        '[sparc] work_dir.')
    p.set_defaults(func=do_recover)

    register_engine_commands(sub)


def add_snapshot_arg(p, more: str = '') -> None:
    """``--snapshot NAME``: the internal snapshot of a qcow2 image."""
    p.add_argument('--snapshot', metavar='NAME',
                   help='The internal snapshot (name or ID) of a qcow2 disk '
                        'image whose memory state is the checkpoint '
                        '(virsh snapshot-create-as of a running guest).'
                   + more)


def register_engine_commands(sub) -> None:
    for name in ENGINE_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
