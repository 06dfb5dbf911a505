"""The CLI sits beside the Nova driver, not above it: no module of
``sparc_nova.cmd`` imports the Nova integration or Nova itself (at the
top or inside a function), so that ``sparc`` runs without Nova.
"""

import ast
import os

import pytest

import sparc_nova.cmd

CMD_DIR = os.path.dirname(sparc_nova.cmd.__file__)
FORBIDDEN = ('sparc_nova.virt', 'nova')


def imported_modules(path: str) -> set[str]:
    """Every module an import statement in ``path`` names."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update('%s.%s' % (node.module, alias.name)
                         for alias in node.names)
    return names


@pytest.mark.parametrize('name', sorted(
    n for n in os.listdir(CMD_DIR) if n.endswith('.py')))
def test_cli_does_not_import_nova(name):
    bad = sorted(m for m in imported_modules(os.path.join(CMD_DIR, name))
                 if any(m == f or m.startswith(f + '.') for f in FORBIDDEN))
    assert bad == [], '%s imports %s' % (name, ', '.join(bad))
