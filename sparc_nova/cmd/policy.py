"""``sparc policy check``: validate a privacy policy offline.

The same parser and merge as the Nova driver: what this command accepts,
the driver accepts, with the same messages. ``KEY=VALUE`` pairs are read as
instance metadata unless ``--source`` says otherwise; ``--flavor`` and
``--image`` add the other sources to see the merged policy.
"""

from sparc_nova.cmd import output
from sparc_nova import conf
from sparc_nova import exception
from sparc_nova import policy

EXIT_OK = 0
EXIT_INVALID = 2


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'policy', help='Privacy policies (flavor extra specs, image '
                       'properties, instance metadata).')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True

    check = commands.add_parser(
        'check', help='Validate policy keys and show the merged policy.',
        description='Validate sparc-nova policy keys and print the '
                    'effective (merged) policy. Exit 0 when valid, 2 when '
                    'any key or value is invalid.')
    check.add_argument('pairs', nargs='*', metavar='KEY=VALUE',
                       help='Policy keys of the --source (e.g. '
                            'sparc:exclude_processes=keepassxc).')
    check.add_argument('--source', choices=policy.SOURCES,
                       default=policy.INSTANCE,
                       help='Where the KEY=VALUE pairs come from (default: '
                            'instance metadata).')
    check.add_argument('--flavor', action='append', default=[],
                       metavar='KEY=VALUE',
                       help='A flavor extra spec to merge (repeatable).')
    check.add_argument('--image', action='append', default=[],
                       metavar='KEY=VALUE',
                       help='An image property to merge (repeatable).')
    check.add_argument('--instance', action='append', default=[],
                       metavar='KEY=VALUE',
                       help='An instance metadata item to merge '
                            '(repeatable).')
    output.add_format_arg(check)
    check.set_defaults(func=cmd_check)


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """``['k=v', ...]`` to a dict; the value may contain ``=``."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise exception.SparcError(
                '%r is not KEY=VALUE (e.g. sparc:follow_ipc=true)' % pair)
        if key in result:
            raise exception.SparcError('%s is given twice' % key)
        result[key] = value
    return result


def cmd_check(args) -> int:
    sources = {policy.FLAVOR: parse_pairs(args.flavor),
               policy.IMAGE: parse_pairs(args.image),
               policy.INSTANCE: parse_pairs(args.instance)}
    positional = parse_pairs(args.pairs)
    duplicate = set(positional) & set(sources[args.source])
    if duplicate:
        raise exception.SparcError('%s is given twice'
                                   % sorted(duplicate)[0])
    sources[args.source].update(positional)
    try:
        effective = policy.from_sources(
            flavor=sources[policy.FLAVOR], image=sources[policy.IMAGE],
            instance=sources[policy.INSTANCE],
            on_failure_allow_from=conf.CONF.sparc.on_failure_allow_from)
    except exception.InvalidPolicy as e:
        if args.format != 'json':
            raise
        output.emit_json({'valid': False,
                          'errors': [str(p) for p in e.problems]})
        return EXIT_INVALID
    if args.format == 'json':
        data = {'valid': True}
        data.update(effective.to_dict())
        output.emit_json(data)
    else:
        print(format_policy(effective))
    return EXIT_OK


def format_policy(effective: policy.EffectivePolicy) -> str:
    """The effective policy as text, each setting with its sources."""
    def origin(values):
        return ', '.join(values)

    lines = ['valid policy %s' % effective.digest]
    for key in policy.LIST_KEYS:
        items = effective.origins[key]
        if not items:
            lines.append('  %-18s (none)' % key)
        for item, sources in items.items():
            lines.append('  %-18s %s  [%s]' % (key, item, origin(sources)))
    settings = effective.effective()
    for key in policy.BOOL_KEYS + tuple(policy.CHOICE_KEYS):
        value = settings[key]
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        lines.append('  %-18s %s  [%s]' % (key, value,
                                           origin(effective.origins[key])))
    for refusal in effective.refused:
        lines.append('  refused: %s' % refusal)
    if not effective.excludes_anything:
        lines.append('  (excludes nothing: checkpoints are not scrubbed)')
    return '\n'.join(lines)
