"""``sparc image``: disk images (Nova snapshots).

``scrub`` writes a copy of an image without the files the rules select,
proven by a raw scan; ``verify`` scans an image's raw bytes for marker
strings (exit 1 when one is found); ``presets`` lists the rule presets.

``--format text|json`` is the report format, as in every ``sparc``
command; the destination image format is ``--image-format qcow2|raw``.
The spellings of the previous release (``scrub --format qcow2|raw``,
``verify --output-format``) still work and warn on stderr.
"""

import argparse
import os
import sys

from sparc_nova.cmd import output
from sparc_nova import conf
from sparc_nova.engine import disk
from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import fast_boot
from sparc_nova.engine.disk import presets
from sparc_nova.engine.disk import source
from sparc_nova import exception
from sparc_nova.printable import printable

__all__ = ['register', 'UsageError', 'IMAGE_FORMATS']

#: Destination image formats of ``scrub --image-format``.
IMAGE_FORMATS = ('qcow2', 'raw')


class UsageError(exception.SparcError):
    """A command-line argument is unusable."""


def _luks_keys(specs: list[str]) -> dict[str, str]:
    """``DEV:KEYFILE`` -> {DEV: passphrase}. One trailing newline of the
    key file is dropped (as when a passphrase is typed).
    """
    keys = {}
    for spec in specs:
        device, sep, path = spec.partition(':')
        if not sep or not device or not path:
            raise UsageError('--luks-key %r: expected DEV:KEYFILE (DEV is '
                             '/dev/sdXN or UUID=...)' % spec)
        try:
            with open(path, 'rb') as f:
                key = f.read()
        except OSError as e:
            raise UsageError('--luks-key %s: cannot read %s (%s)'
                             % (device, path, e.strerror)) from e
        if key.endswith(b'\n'):
            key = key[:-1]
        keys[device] = key.decode('utf-8', 'surrogateescape')
    return keys


def _step(index: int, total: int, what: str) -> None:
    print('[%d/%d] %s' % (index, total, what), file=sys.stderr, flush=True)


def _summary(report: disk.ScrubReport) -> str:
    lines = ['Scrubbed %s (%s) -> %s (%s) in %.1f s'
             % (report.source, report.source_format, report.destination,
                report.output_format, report.duration_s)]
    if len(report.source_files) > 1:
        lines.append('Files read: %s' % ', '.join(report.source_files))
    if report.operating_system:
        lines.append('Operating system: %s'
                     % printable(report.operating_system))
    lines.append('')
    lines.append(output.table(
        [dict(device=v.device, role=v.role, fstype=v.fstype,
              action=v.action, removed=v.removed,
              verification=v.verification) for v in report.volumes],
        ['device', 'role', 'fstype', 'action', 'removed',
         'verification']))
    lines.append('')
    lines.append(output.table(
        [dict(rule=unit, matches=n) for unit, n in report.rules.items()],
        ['rule', 'matches']))
    lines.append('')
    lines.append('Removed paths: %d; canaries: %d (residual %d, also in '
                 'kept files %d); kept files checked: %d, identical: %s'
                 % (len(report.removed), report.canaries, report.residual,
                    report.explained, report.kept_files_checked,
                    'yes' if report.kept_files_identical else 'NO'))
    if report.unmatched_rules:
        lines.append('Rules that matched nothing: %s'
                     % printable(', '.join(report.unmatched_rules)))
    for warning in report.warnings:
        lines.append('Warning: %s' % printable(warning))
    for note in report.notes:
        lines.append('Note: %s' % printable(note))
    if not report.verified:
        lines.append('Warning: some volumes are UNVERIFIED (see the '
                     'report)')
    return '\n'.join(lines)


def do_scrub(args) -> int:
    try:
        rules = disk.Rules(args.exclude_path, args.preset, args.held_path,
                           strict=args.strict or conf.CONF.sparc
                           .disk_strict_rules)
    except ValueError as e:
        raise UsageError(str(e)) from e
    options = disk.ScrubOptions.from_conf(
        conf.CONF, output_format=args.image_format,
        luks_keys=_luks_keys(args.luks_key),
        allow_unverified=args.allow_unverified or None,
        reveal_paths=args.show_paths or None, verify_kept=args.verify_kept,
        accel=args.accel, work_dir=args.work_dir,
        source_format=args.source_format,
        allow_backing_chain=args.allow_backing_chain or None)
    report = disk.scrub_image(args.src, args.output, rules, options,
                              progress=_step)
    if args.report:
        output.write_json(args.report, report.to_dict())
    if args.format == 'json':
        output.emit_json(report.to_dict())
    else:
        print(_summary(report))
    return 0


def _image_format(path: str, fmt: str | None) -> str:
    """``fmt``, or the format the inspector finds; either way the image
    must read no other file (the scan would read it).
    """
    fmt = fmt or source.detect(path)
    source.check(path, fmt)
    return fmt


def do_verify(args) -> int:
    markers = [m.encode('utf-8', 'surrogateescape') for m in args.marker]
    for m in markers:
        if len(m) < 4 or any(c in m for c in b'\n\r\0'):
            raise UsageError('a marker must be at least 4 bytes, without '
                             'newline, carriage return or NUL')
    if not os.path.isfile(args.image):
        raise exception.DiskImageError(args.image, 'no such file')
    fmt = _image_format(args.image, args.source_format)
    hits = disk.scan_image(args.image, fmt, markers)
    rows = [dict(marker='#%d' % (i + 1), length=len(m),
                 occurrences=hits.get(m, 0)) for i, m in enumerate(markers)]
    if args.format == 'json':
        output.emit_json({'image': args.image, 'format': fmt,
                          'markers': rows,
                          'found': sum(r['occurrences'] for r in rows)})
    else:
        print('%s (%s): raw scan of every guest-visible byte'
              % (args.image, fmt))
        print(output.table(rows, ['marker', 'length', 'occurrences']))
    return 1 if hits else 0


def do_appliance(args) -> int:
    """Build the appliance scrubs boot, if it is not built yet, and print
    its directory (exit 1 when it cannot be had: scrubs then boot
    libguestfs' own appliance, and the reason is logged).
    """
    cache_dir = conf.CONF.sparc.disk_appliance_cache_dir
    if not cache_dir:
        print('[sparc] disk_appliance_cache_dir is empty: scrubs boot '
              "libguestfs' own appliance", file=sys.stderr)
        return 1
    built = fast_boot.prepare(cache_dir, appliance.supermin_dir())
    if built is None:
        print("cannot build the appliance in %s (see the warning above); "
              "scrubs boot libguestfs' own appliance" % cache_dir,
              file=sys.stderr)
        return 1
    print(built)
    return 0


def do_presets(args) -> int:
    for preset in presets.PRESETS.values():
        print('%s: %s' % (preset.name, preset.description))
        for glob in preset.globs:
            print('    %s' % glob)
    return 0


class _ReportOrImageFormat(argparse.Action):
    """``image scrub --format``: the report format (text|json). The
    destination image format it named before (qcow2|raw) is still taken,
    for one release, as ``--image-format`` with a warning on stderr.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        if values in IMAGE_FORMATS:
            output.warn_deprecated('%s %s' % (option_string, values),
                                   '--image-format %s' % values)
            namespace.image_format = values
        else:
            namespace.format = values


def _add_source_format(parser) -> None:
    parser.add_argument(
        '--source-format', choices=source.FORMATS, metavar='FMT',
        help='Format of the image (%s). Give it when you know it (a '
             'raw disk snapshot must be read as raw: its first sector '
             'is guest data). Without it the format is found by '
             'oslo.utils\' format inspector, never by a qemu probe. '
             'Either way an image with a backing file, a data file, vmdk '
             'extents or a json: name is refused (exit 2, nothing '
             'written).'
        % '|'.join(source.FORMATS))


def register(groups) -> None:
    parser = groups.add_parser(
        'image', help='Disk images: scrub files out of snapshots, verify.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    p = sub.add_parser(
        'scrub', help='Write a copy of a disk image without the selected '
                      'files, and prove that no byte of them is left.')
    p.add_argument('src', help='Source image (never modified).')
    _add_source_format(p)
    p.add_argument('--allow-backing-chain', action='store_true',
                   help='Read and flatten the backing files of a source '
                        'you trust (each in the format its overlay '
                        'records; the report lists every file read). '
                        'Without it an image with a backing file is '
                        'refused.')
    p.add_argument('--output', '-o', required=True, metavar='DST',
                   help='Destination image (written atomically).')
    p.add_argument('--exclude-path', action='append', default=[],
                   metavar='GLOB',
                   help='Guest path glob to remove (repeatable; ** spans '
                        'directories; a leading ! keeps what matches).')
    p.add_argument('--preset', action='append', default=[],
                   choices=sorted(presets.PRESETS), metavar='NAME',
                   help='Named rule set (repeatable): %s.'
                   % ', '.join(sorted(presets.PRESETS)))
    p.add_argument('--held-path', action='append', default=[],
                   metavar='PATH',
                   help='Literal guest path of a file held open by an '
                        'excluded process (repeatable).')
    p.add_argument('--luks-key', action='append', default=[],
                   metavar='DEV:KEYFILE',
                   help='Passphrase file for a LUKS volume, by device '
                        '(/dev/sda2) or UUID=... (repeatable).')
    p.add_argument('--image-format', choices=IMAGE_FORMATS, default=None,
                   help='Destination image format (default: [sparc] '
                        'disk_output_format, qcow2).')
    p.add_argument('--format', action=_ReportOrImageFormat, default='text',
                   choices=output.REPORT_FORMATS + IMAGE_FORMATS,
                   metavar='{text,json}',
                   help='Output format (default: text); json prints the '
                        'scrub report. qcow2 and raw are the deprecated '
                        'spelling of --image-format.')
    p.add_argument('--report', metavar='R.json',
                   help='Write the JSON scrub report here.')
    p.add_argument('--strict', action='store_true',
                   help='Fail when a glob or preset matches nothing.')
    p.add_argument('--allow-unverified', action='store_true',
                   help='Skip what cannot be scrubbed (LUKS without key, '
                        'unknown volumes) and report it as unverified.')
    p.add_argument('--show-paths', action='store_true',
                   help='Name removed paths in the report (default: '
                        'SHA-256 digests).')
    p.add_argument('--verify-kept', choices=('sample', 'all'),
                   help='Hash a sample of kept files or all of them.')
    p.add_argument('--accel', choices=('auto', 'kvm', 'tcg'),
                   help='Appliance accelerator (default: auto).')
    p.add_argument('--work-dir', metavar='DIR',
                   help='Directory for the raw working copy.')
    p.set_defaults(func=do_scrub)

    p = sub.add_parser(
        'verify', help='Scan every guest-visible byte of an image for '
                       'marker strings; exit 1 if any is found.')
    p.add_argument('image')
    _add_source_format(p)
    p.add_argument('--marker', action='append', required=True,
                   metavar='TEXT', help='String to look for (repeatable).')
    output.add_format_arg(p)
    p.add_argument('--output-format', action=output.DeprecatedAlias,
                   dest='format', new_option='--format',
                   choices=output.REPORT_FORMATS,
                   help='Deprecated spelling of --format.')
    p.set_defaults(func=do_verify)

    p = sub.add_parser(
        'appliance', help='Build the appliance disk scrubs boot (the '
                          'host\'s kernel uncompressed, about 3 s faster '
                          'under TCG) in [sparc] disk_appliance_cache_dir '
                          'if it is not there, and print its directory. '
                          'Scrubs build it themselves when needed; run '
                          'this after installing or upgrading packages.')
    p.set_defaults(func=do_appliance)

    p = sub.add_parser('presets', help='List the rule presets.')
    p.set_defaults(func=do_presets)
