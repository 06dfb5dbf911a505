"""Write the services' configuration files."""

import os
from typing import Mapping

Sections = Mapping[str, Mapping[str, object]]


def _value(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return ','.join(str(v) for v in value)
    return str(value)


def write_ini(path: str, sections: Sections) -> str:
    """Write ``{section: {option: value}}`` as an INI file (booleans as
    ``true``/``false``, lists comma-separated); return ``path``.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = []
    for section, options in sections.items():
        lines.append('[%s]' % section)
        lines.extend('%s = %s' % (k, _value(v)) for k, v in options.items())
        lines.append('')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    return path
