"""Check that a virtualenv imports everything the code run in it needs,
from outside the repository.

Run it with the virtualenv's interpreter, from ``/`` and without
``PYTHONPATH`` (tools/run-tests.sh does so under ``CI=true``), so that
nothing is found because the current directory is the repository root::

    cd / && env -u PYTHONPATH VENV/bin/python \\
        CHECKOUT/tools/check_imports.py --checkout CHECKOUT \\
        --package sparc_nova --skip sparc_nova.dashboard --scan CHECKOUT/tests

``--package`` imports the package and every module in it, each of which
must come from ``--checkout`` (an install of another checkout, or none,
fails). ``--scan`` imports every module named by an absolute import
statement in the Python files under a directory (not those guarded by
``except ImportError``, nor the repository's own ``tests``, ``tools`` and
``benchmarks``, which are never installed); ``--module`` imports one
module. Each failure is printed with its error; the exit status is 1
when there is one.
"""

import argparse
import ast
import importlib
import os
import pkgutil
import sys
import time
import traceback

__all__ = ['scanned_imports', 'main']

#: Top-level names of the repository that run from the checkout only.
NOT_INSTALLED = ('tests', 'tools', 'benchmarks')


def _guarded(node, parents: dict) -> bool:
    """Whether ``node`` is inside a ``try`` that catches ImportError."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                names = ast.unparse(handler.type) if handler.type else ''
                if 'ImportError' in names or 'ModuleNotFoundError' in names:
                    return True
    return False


def scanned_imports(path: str) -> set[str]:
    """Dotted modules named by the absolute import statements of the
    Python files under ``path`` (a file or a directory), without the
    guarded ones and the repository's own not-installed packages.
    """
    files = [path] if path.endswith('.py') else sorted(
        os.path.join(root, name) for root, _dirs, names in os.walk(path)
        for name in names if name.endswith('.py'))
    found = set()
    for name in files:
        with open(name, 'rb') as f:
            tree = ast.parse(f.read(), name)
        parents = {child: node for node in ast.walk(tree)
                   for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            if _guarded(node, parents):
                continue
            found.update(m for m in modules
                         if m.split('.')[0] not in NOT_INSTALLED)
    return found


def _under(path: str | None, checkout: str) -> bool:
    if not path:
        return False
    real = os.path.realpath(path)
    return os.path.commonpath([real, checkout]) == checkout


def _try_import(name: str, failures: list[str]):
    try:
        return importlib.import_module(name)
    except BaseException as e:  # noqa: B902 - SystemExit of a module too
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        failures.append('%s: %s' % (name, last))
        return None


def _check_package(name: str, skip: list[str], checkout: str,
                   failures: list[str]) -> int:
    package = _try_import(name, failures)
    if package is None:
        return 0
    if not _under(package.__file__, checkout):
        failures.append('%s: comes from %s, not from %s'
                        % (name, package.__file__, checkout))
        return 1
    count = 1
    for info in pkgutil.walk_packages(package.__path__, name + '.',
                                      onerror=lambda n: None):
        if any(info.name == s or info.name.startswith(s + '.')
               for s in skip):
            continue
        module = _try_import(info.name, failures)
        count += 1
        if module is not None and not _under(module.__file__, checkout):
            failures.append('%s: comes from %s, not from %s'
                            % (info.name, module.__file__, checkout))
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--checkout', required=True)
    p.add_argument('--package', action='append', default=[])
    p.add_argument('--skip', action='append', default=[],
                   help='a module (and its submodules) --package leaves out')
    p.add_argument('--module', action='append', default=[],
                   help='a module to import (from wherever it is installed)')
    p.add_argument('--scan', action='append', default=[])
    p.add_argument('--django-settings',
                   help='configure Django with this settings module first')
    args = p.parse_args(argv)
    checkout = os.path.realpath(args.checkout)
    # The script's own directory (tools/) is sys.path[0]; the check is
    # about what the virtualenv finds without the checkout.
    sys.path[:] = [e for e in sys.path if not _under(e or os.getcwd(),
                                                     os.path.join(checkout,
                                                                  'tools'))]
    if _under(os.getcwd(), checkout) or os.environ.get('PYTHONPATH'):
        print('check_imports.py: run it from outside %s and without '
              'PYTHONPATH' % checkout, file=sys.stderr)
        return 2
    start = time.monotonic()
    failures = []
    if args.django_settings:
        os.environ['DJANGO_SETTINGS_MODULE'] = args.django_settings
        django = _try_import('django', failures)
        if django is not None:
            django.setup()
    count = sum(_check_package(name, args.skip, checkout, failures)
                for name in args.package)
    scanned = sorted(set(args.module).union(*(scanned_imports(path)
                                              for path in args.scan)))
    for name in scanned:
        _try_import(name, failures)
    for line in failures:
        print('check_imports.py: %s: %s' % (sys.prefix, line),
              file=sys.stderr)
    print('check_imports.py: %s: %d modules of %s and %d imports scanned, '
          '%d failed, %.1f s' % (sys.prefix, count,
                                 ', '.join(args.package) or 'no package',
                                 len(scanned), len(failures),
                                 time.monotonic() - start), file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
