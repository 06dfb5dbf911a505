"""Add sparc-nova's filter to nova-api's ``api-paste.ini``.

The filter goes into every pipeline of the compute API's composites
(``openstack_compute_api_v21`` and its legacy v2 twin, whatever
authentication keys they have: ``keystone``, ``noauth2``...), just before
the application, i.e. after ``keystonecontext`` (it needs
``nova.context``). The rest of the file is kept as it is, comments
included; running it again changes nothing.

    python -m sparc_nova.api.paste_ini /etc/nova/api-paste.ini
"""

import argparse
import os
import re
import sys

__all__ = ['FILTER_NAME', 'FILTER_SECTION', 'add_filter', 'main']

FILTER_NAME = 'sparc_policy'
FILTER_SECTION = ('[filter:%s]\npaste.filter_factory = '
                  'sparc_nova.api.middleware:SparcPolicyMiddleware.factory\n'
                  % FILTER_NAME)
#: The composites whose pipelines serve the compute API.
COMPOSITES = ('openstack_compute_api_v21',
              'openstack_compute_api_v21_legacy_v2_compatible')

_SECTION = re.compile(r'^\[(?P<name>[^\]]+)\]\s*$')
_OPTION = re.compile(r'^(?P<key>[A-Za-z0-9_.]+)\s*=\s*(?P<value>.*)$')


def add_filter(text: str) -> str:
    """``text`` (an api-paste.ini) with the filter in the compute API's
    pipelines and its section defined.

    :raises ValueError: a composite is missing, or a pipeline does not
        run ``keystonecontext`` or ``noauth2`` before the application
    """
    out, section, seen = [], None, set()
    for line in text.splitlines(keepends=True):
        match = _SECTION.match(line)
        if match:
            section = match.group('name')
        elif section in ('composite:' + c for c in COMPOSITES):
            option = _OPTION.match(line.strip())
            if option and option.group('key') != 'use':
                line = _with_filter(section, option.group('key'),
                                    option.group('value')) + '\n'
                seen.add(section)
        out.append(line)
    missing = [c for c in COMPOSITES if 'composite:' + c not in seen]
    if missing:
        raise ValueError('no pipeline found in [composite:%s]'
                         % missing[0])
    result = ''.join(out)
    if '[filter:%s]' % FILTER_NAME not in result:
        result = result.rstrip('\n') + '\n\n' + FILTER_SECTION
    return result


def _with_filter(section: str, key: str, pipeline: str) -> str:
    names = pipeline.split()
    if FILTER_NAME not in names:
        if not {'keystonecontext', 'noauth2'} & set(names[:-1]):
            raise ValueError(
                '[%s] %s runs no keystonecontext or noauth2 filter: the '
                'request context %s needs is not there' % (
                    section, key, FILTER_NAME))
        names.insert(len(names) - 1, FILTER_NAME)
    return '%s = %s' % (key, ' '.join(names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m sparc_nova.api.paste_ini',
        description='Add the sparc_policy filter to nova-api\'s '
                    'api-paste.ini, in place.')
    parser.add_argument('path')
    args = parser.parse_args(argv)
    with open(args.path) as f:
        text = f.read()
    try:
        updated = add_filter(text)
    except ValueError as e:
        print('%s: %s' % (args.path, e), file=sys.stderr)
        return 1
    if updated != text:
        tmp = args.path + '.sparc-tmp'
        with open(tmp, 'w') as f:
            f.write(updated)
        os.chmod(tmp, os.stat(args.path).st_mode & 0o7777)
        os.replace(tmp, args.path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
