"""Every module of the engine (and its disk sub-package) declares what it
exports, and every exported function and class states its contract."""

import ast
import importlib
import inspect
import pathlib
import pkgutil

import pytest

import sparc_nova.engine

MODULES = ['sparc_nova.engine'] + sorted(
    m.name for m in pkgutil.walk_packages(sparc_nova.engine.__path__,
                                          'sparc_nova.engine.'))


def _defined_public_names(module) -> list[str]:
    """Functions and classes defined at the top of ``module``'s source
    whose names do not start with ``_``.
    """
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                 ast.ClassDef))
            and not node.name.startswith('_')]


def test_the_walk_reaches_the_disk_engine():
    assert 'sparc_nova.engine.memory' in MODULES
    assert 'sparc_nova.engine.disk.scrub' in MODULES
    assert 'sparc_nova.engine.disk.backends.ext' in MODULES


@pytest.mark.parametrize('name', MODULES)
def test_module_declares_all(name):
    module = importlib.import_module(name)
    exported = getattr(module, '__all__', None)
    assert isinstance(exported, (list, tuple)), '%s has no __all__' % name
    assert all(isinstance(n, str) for n in exported)
    assert len(set(exported)) == len(exported), \
        '%s: __all__ names something twice' % name
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, '%s: __all__ names %s, not defined' % (name,
                                                               missing)
    unexported = [n for n in _defined_public_names(module)
                  if n not in exported]
    assert not unexported, (
        '%s defines public %s but does not export it: add it to __all__ '
        '(with a docstring) or make it private' % (name, unexported))


@pytest.mark.parametrize('name', MODULES)
def test_exported_functions_and_classes_have_docstrings(name):
    module = importlib.import_module(name)
    assert (module.__doc__ or '').strip(), '%s has no docstring' % name
    # Read from the source: a dataclass without a docstring gets a
    # generated one, which states no contract.
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    defined = {node.name: ast.get_docstring(node) for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                    ast.ClassDef))}
    bare = []
    for n in getattr(module, '__all__', ()):
        obj = getattr(module, n, None)
        if n in defined:
            doc = defined[n]
        elif inspect.isfunction(obj) or inspect.isclass(obj):
            doc = inspect.getdoc(obj)   # re-exported from another module
        else:
            continue                    # a constant
        if not (doc or '').strip():
            bare.append(n)
    assert not bare, '%s: no docstring on %s' % (name, bare)
