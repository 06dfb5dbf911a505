"""``sparc policy check``: validate and explain a privacy policy offline.

The same parser and merge as the Nova driver: what this command accepts,
the driver accepts, with the same messages. ``KEY=VALUE`` pairs are read as
instance metadata unless ``--source`` says otherwise; ``--flavor``,
``--image`` and ``--instance`` give each source's keys. ``--path`` asks
whether a guest path is excluded and by which source's rule,
``--process`` the same for a process described as
``name=NAME,pid=N,exe=PATH,uid=N,cgroup=PATH`` (any of them).

Exit status: 0 the policy is valid (refused settings are listed, they do
not make it invalid), 1 a key or value is invalid (every problem is
listed), 2 the command line is wrong.
"""

from sparc_nova.cmd import output
from sparc_nova import conf
from sparc_nova import exception
from sparc_nova import policy
from sparc_nova.vocabulary import selectors

EXIT_OK = 0
EXIT_INVALID = 1

#: ``--process`` fields and the attribute of :class:`selectors.Process`
#: each sets.
PROCESS_FIELDS = {'name': 'comm', 'comm': 'comm', 'pid': 'pid',
                  'exe': 'exe', 'uid': 'uid', 'user': 'uid',
                  'cgroup': 'cgroup'}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'policy', help='Privacy policies (flavor extra specs, image '
                       'properties, instance metadata).')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True

    check = commands.add_parser(
        'check', help='Validate policy keys and explain the merged policy.',
        description='Validate sparc-nova policy keys, print the effective '
                    '(merged) policy with the source of each value, every '
                    'problem and every refused setting, and whether the '
                    'given guest paths and processes are excluded. Exit 0 '
                    'when valid, 1 when a key or value is invalid, 2 on a '
                    'wrong command line.')
    check.add_argument('pairs', nargs='*', metavar='KEY=VALUE',
                       help='Policy keys of the --source (e.g. '
                            'sparc:exclude_processes=keepassxc).')
    check.add_argument('--source', choices=policy.SOURCES,
                       default=policy.INSTANCE,
                       help='Where the KEY=VALUE pairs come from (default: '
                            'instance metadata).')
    check.add_argument('--flavor', action='append', default=[],
                       metavar='KEY=VALUE',
                       help='A flavor extra spec, sparc:KEY (repeatable).')
    check.add_argument('--image', action='append', default=[],
                       metavar='KEY=VALUE',
                       help='An image property, sparc_KEY (repeatable).')
    check.add_argument('--instance', action='append', default=[],
                       metavar='KEY=VALUE',
                       help='An instance metadata item, sparc:KEY '
                            '(repeatable).')
    check.add_argument('--path', action='append', default=[],
                       metavar='GUEST_PATH',
                       help='An absolute guest path: is it excluded, and by '
                            'which source (repeatable).')
    check.add_argument('--process', action='append', default=[],
                       metavar='SELECTOR_TARGET',
                       help='A guest process as name=NAME,pid=N,exe=PATH,'
                            'uid=N,cgroup=PATH (any of them; user= is uid=): '
                            'is it excluded, and by which source '
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


def parse_process(text: str) -> selectors.Process:
    """A ``--process`` argument: comma-separated ``FIELD=VALUE`` with the
    fields of :data:`PROCESS_FIELDS` (a comma inside a value is ``\\,``).
    """
    found: dict[str, object] = {}
    for item in policy.split_list(text):
        field, sep, value = item.partition('=')
        attribute = PROCESS_FIELDS.get(field.strip())
        if not sep or attribute is None:
            raise exception.SparcError(
                '--process %r: %r is not FIELD=VALUE with FIELD one of %s'
                % (text, item, ', '.join(PROCESS_FIELDS)))
        if attribute in found:
            raise exception.SparcError('--process %r: %s is given twice'
                                       % (text, field))
        if attribute in ('pid', 'uid'):
            if not value.isascii() or not value.isdigit():
                raise exception.SparcError('--process %r: %s takes a '
                                           'number' % (text, field))
            found[attribute] = int(value)
        else:
            found[attribute] = value
    if not found:
        raise exception.SparcError('--process %r describes nothing' % text)
    return selectors.Process(**found)


def _sources(args) -> dict[str, dict[str, str]]:
    sources = {policy.FLAVOR: parse_pairs(args.flavor),
               policy.IMAGE: parse_pairs(args.image),
               policy.INSTANCE: parse_pairs(args.instance)}
    positional = parse_pairs(args.pairs)
    duplicate = set(positional) & set(sources[args.source])
    if duplicate:
        raise exception.SparcError('%s is given twice'
                                   % sorted(duplicate)[0])
    sources[args.source].update(positional)
    return sources


def cmd_check(args) -> int:
    sources = _sources(args)
    processes = [parse_process(p) for p in args.process]
    for path in args.path:
        if not path.startswith('/'):
            raise exception.SparcError('--path %r is not an absolute guest '
                                       'path' % path)
    try:
        effective = policy.from_sources(
            flavor=sources[policy.FLAVOR], image=sources[policy.IMAGE],
            instance=sources[policy.INSTANCE],
            on_failure_allow_from=conf.CONF.sparc.on_failure_allow_from)
    except exception.InvalidPolicy as e:
        problems = [str(p) for p in e.problems]
        if args.format == 'json':
            output.emit_json({'valid': False, 'errors': problems})
        else:
            print(format_problems(problems))
        return EXIT_INVALID
    paths = [policy.explain_path(effective, p) for p in args.path]
    explained = [policy.explain_process(effective, p) for p in processes]
    if args.format == 'json':
        data = {'valid': True}
        data.update(effective.to_dict())
        data['paths'] = paths
        data['processes'] = explained
        output.emit_json(data)
    else:
        print('\n'.join([format_policy(effective)] +
                        [format_path(p) for p in paths] +
                        [format_process(p) for p in explained]))
    return EXIT_OK


def format_problems(problems: list[str]) -> str:
    """An invalid policy as text: every problem, one a line."""
    lines = ['invalid policy: checkpoints of the instance fail until '
             'these are fixed']
    lines.extend('  problem: %s' % p for p in problems)
    return '\n'.join(lines)


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


def format_path(explained: dict) -> str:
    """One ``--path`` answer as text."""
    selecting = ['%s (%s)' % (r['source'], r['rule'])
                 for r in explained['rules'] if r['kept_by'] is None]
    narrowed = ['%s rule %s is narrowed by %s' % (
        r['source'], r['rule'], r['kept_by'])
        for r in explained['rules'] if r['kept_by'] is not None]
    if selecting:
        return 'path %s: excluded by %s' % (
            explained['path'], ', '.join(selecting))
    if narrowed:
        return 'path %s: kept (%s)' % (explained['path'],
                                       '; '.join(narrowed))
    return 'path %s: kept (no rule names it)' % explained['path']


def format_process(explained: dict) -> str:
    """One ``--process`` answer as text."""
    if not explained['excluded']:
        return 'process %s: kept (no selector matches it)' \
            % explained['process']
    return 'process %s: excluded by %s' % (
        explained['process'], ', '.join(
            '%s (%s)' % (', '.join(s['sources']), s['selector'])
            for s in explained['selectors']))
