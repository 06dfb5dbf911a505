"""``openstack server privacy show|set|unset``: an instance's privacy
policy as its project sees it.

``show`` merges the three sources the compute driver merges (the flavor's
extra specs, the properties of the image the server was booted from, the
server's metadata) with :func:`sparc_nova.policy.from_sources`, and marks
what the project cannot change (items and settings that come from the
flavor or the image). ``set`` and ``unset`` change only the ``sparc:``
metadata of the server, validated with the policy grammar before Nova is
called: an invalid value is never sent.
"""

import argparse
from typing import Any, Mapping

from osc_lib.command import command
from osc_lib import exceptions

from sparc_nova import exception
from sparc_nova import policy

__all__ = ['ShowServerPrivacy', 'SetServerPrivacy', 'UnsetServerPrivacy',
           'effective_rows', 'metadata_changes', 'sources_of']


def sources_of(server: Any, image_properties: Mapping[str, str] | None
               ) -> dict[str, dict[str, str] | None]:
    """The sparc-nova keys of each source of ``server`` (an openstacksdk
    server: from compute microversion 2.47 on, which openstacksdk
    negotiates, it embeds its flavor with the extra specs the project may
    read, policy ``os_compute_api:servers:show:flavor-extra-specs``);
    ``None`` for a source that could not be read.
    """
    specs = _field(getattr(server, 'flavor', None), 'extra_specs')
    if specs is not None:
        specs = dict(specs)
    return {policy.FLAVOR: policy.keys_of(specs, policy.FLAVOR),
            policy.IMAGE: policy.keys_of(image_properties, policy.IMAGE),
            policy.INSTANCE: policy.keys_of(
                dict(getattr(server, 'metadata', None) or {}),
                policy.INSTANCE)}


def _field(resource: Any, name: str) -> Any:
    """``name`` of an openstacksdk resource or of a plain dict."""
    if resource is None:
        return None
    if isinstance(resource, dict):
        return resource.get(name)
    return getattr(resource, name, None)


def effective_rows(sources: Mapping[str, Mapping[str, str] | None]
                   ) -> dict[str, Any]:
    """The fields ``show`` prints: every list item and setting with the
    sources that set it and whether the project may change it
    (``locked``: a flavor or image source set it), the digest, refused
    settings, and the sources that could not be read.

    :raises InvalidPolicy: a source holds an invalid key or value
    """
    effective = policy.from_sources(
        flavor=sources.get(policy.FLAVOR) or {},
        image=sources.get(policy.IMAGE) or {},
        instance=sources.get(policy.INSTANCE) or {})
    rows: dict[str, Any] = {}
    for key in policy.LIST_KEYS:
        rows[key] = [_origin(item, origins)
                     for item, origins in effective.origins[key].items()]
    settings = effective.effective()
    for key in policy.BOOL_KEYS + tuple(policy.CHOICE_KEYS):
        rows[key] = _origin(settings[key], effective.origins[key])
    rows['scrubbed_checkpoints'] = effective.excludes_anything
    rows['refused'] = [str(r) for r in effective.refused]
    rows['unreadable_sources'] = [s for s in policy.SOURCES
                                  if sources.get(s) is None]
    rows['digest'] = effective.digest
    return rows


def _origin(value: Any, origins: Any) -> dict[str, Any]:
    sources = [origins] if isinstance(origins, str) else list(origins)
    return {'value': value, 'sources': sources,
            'locked': any(s in (policy.FLAVOR, policy.IMAGE)
                          for s in sources)}


def metadata_changes(current: Mapping[str, str], updates: Mapping[str, str],
                     removed_keys: list[str]
                     ) -> tuple[dict[str, str], list[str]]:
    """``(to_set, to_delete)``: the server metadata writes that turn the
    ``sparc:`` keys of ``current`` into those keys with the list and
    setting keys named in ``removed_keys`` (policy keys without prefix)
    gone, then ``updates`` (full ``sparc:`` keys, as
    :func:`sparc_nova.policy.list_pairs` makes them) applied. A list key
    that is replaced or removed loses its continuation keys too.

    :raises InvalidPolicy: the resulting metadata is not a valid instance
        source
    """
    mine = policy.keys_of(current, policy.INSTANCE)
    touched = set(removed_keys) | {_base_key(k) for k in updates}
    stale = [k for k in mine if _base_key(k) in touched]
    result = {k: v for k, v in mine.items() if k not in stale}
    result.update(updates)
    policy.parse(result, policy.INSTANCE)
    to_set = {k: v for k, v in result.items() if mine.get(k) != v}
    to_delete = sorted(k for k in stale if k not in result)
    return to_set, to_delete


def _base_key(key: str) -> str:
    """``exclude_paths`` for ``sparc:exclude_paths.2``."""
    return key[len(policy.PREFIXES[policy.INSTANCE]):].split('.', 1)[0]


def _find_server(conn, name_or_id: str):
    server = conn.compute.find_server(name_or_id, ignore_missing=False)
    return conn.compute.get_server(server.id)


def _image_properties(conn, server) -> dict[str, str] | None:
    image_id = _field(getattr(server, 'image', None), 'id')
    if not image_id:
        return {}       # volume-backed: the image source is empty
    try:
        found = conn.image.get_image(image_id)
    except Exception:   # deleted or not visible to the project
        return None
    return {k: str(v) for k, v in (found.properties or {}).items()}


def _problems_error(problems: list[str]) -> exceptions.CommandError:
    return exceptions.CommandError(
        'invalid privacy policy, nothing was changed:\n' +
        '\n'.join('  problem: %s' % p for p in problems))


class ShowServerPrivacy(command.ShowOne):
    """Show the effective privacy policy of a server, with the source of
    each part and what the project cannot change.
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Server (name or ID)')
        return parser

    def take_action(self, parsed_args):
        conn = self.app.client_manager.sparc
        server = _find_server(conn, parsed_args.server)
        sources = sources_of(server, _image_properties(conn, server))
        try:
            rows = effective_rows(sources)
        except exception.InvalidPolicy as e:
            raise _problems_error([str(p) for p in e.problems])
        rows = {'server': server.id, **rows}
        if parsed_args.formatter == 'table':
            rows = {k: _table_value(v) for k, v in rows.items()}
        return tuple(rows), tuple(rows.values())


def _table_value(value: Any) -> str:
    """A field for people: items one a line, with their sources."""
    if isinstance(value, dict) and 'sources' in value:
        v = value['value']
        text = ('true' if v else 'false') if isinstance(v, bool) else str(v)
        return '%s [%s%s]' % (text, ', '.join(value['sources']),
                              ', locked' if value['locked'] else '')
    if isinstance(value, list):
        return '\n'.join(_table_value(v) for v in value) or '(none)'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def _add_setting_options(parser: argparse.ArgumentParser) -> None:
    for key, (on, off) in ((policy.FOLLOW_IPC, ('--follow-ipc',
                                                '--no-follow-ipc')),
                           (policy.SCRUB_FREE_MEMORY,
                            ('--scrub-free-memory',
                             '--no-scrub-free-memory'))):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(on, dest=key, action='store_const', const='true',
                           help='Set sparc:%s=true' % key)
        group.add_argument(off, dest=key, action='store_const',
                           const='false', help='Set sparc:%s=false' % key)
    for key, choices in policy.CHOICE_KEYS.items():
        parser.add_argument('--' + key.replace('_', '-'), dest=key,
                            choices=choices,
                            help='Set sparc:%s' % key)


class SetServerPrivacy(command.Command):
    """Set a server's part of its privacy policy (its sparc:
    metadata). A list option replaces the whole list; the result is
    validated before Nova is called.
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Server (name or ID)')
        parser.add_argument('--exclude-process', action='append',
                            metavar='<selector>',
                            help='A process selector (repeat for more; '
                                 'replaces sparc:exclude_processes)')
        parser.add_argument('--exclude-path', action='append',
                            metavar='<glob>',
                            help='A guest path glob or !negation (repeat '
                                 'for more; replaces sparc:exclude_paths '
                                 'together with --preset)')
        parser.add_argument('--preset', action='append', metavar='<name>',
                            help='A path preset, as preset:NAME in '
                                 'sparc:exclude_paths (repeatable)')
        _add_setting_options(parser)
        return parser

    def take_action(self, parsed_args):
        updates: dict[str, str] = {}
        paths = list(parsed_args.exclude_path or []) + [
            policy.PRESET_PREFIX + p for p in parsed_args.preset or []]
        lists = {policy.EXCLUDE_PROCESSES: parsed_args.exclude_process,
                 policy.EXCLUDE_PATHS: paths or None}
        for key, items in lists.items():
            if items is not None:
                updates.update(policy.list_pairs(key, items))
        removed = [k for k, items in lists.items() if items is not None]
        for key in policy.BOOL_KEYS + tuple(policy.CHOICE_KEYS):
            value = getattr(parsed_args, key)
            if value is not None:
                updates[policy.PREFIXES[policy.INSTANCE] + key] = value
        if not updates:
            raise exceptions.CommandError('nothing to set')
        _write(self.app.client_manager.sparc, parsed_args.server, updates,
               removed)


class UnsetServerPrivacy(command.Command):
    """Remove keys of a server's part of its privacy policy (the flavor's
    and the image's parts stay).
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Server (name or ID)')
        parser.add_argument('--all', action='store_true',
                            help='Remove every sparc: key of the server')
        for key in policy.KEYS:
            parser.add_argument('--' + key.replace('_', '-'), dest=key,
                                action='store_true',
                                help='Remove sparc:%s' % key)
        return parser

    def take_action(self, parsed_args):
        keys = [k for k in policy.KEYS
                if parsed_args.all or getattr(parsed_args, k)]
        if not keys:
            raise exceptions.CommandError('nothing to unset')
        _write(self.app.client_manager.sparc, parsed_args.server, {}, keys)


def _write(conn, name_or_id: str, updates: dict[str, str],
           removed: list[str]) -> None:
    server = conn.compute.find_server(name_or_id, ignore_missing=False)
    current = conn.compute.get_server_metadata(server).metadata or {}
    try:
        to_set, to_delete = metadata_changes(current, updates, removed)
    except exception.InvalidPolicy as e:
        raise _problems_error([str(p) for p in e.problems])
    if to_set:
        conn.compute.set_server_metadata(server, **to_set)
    if to_delete:
        conn.compute.delete_server_metadata(server, to_delete)
