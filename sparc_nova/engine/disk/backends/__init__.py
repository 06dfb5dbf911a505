"""Filesystem backends of the disk scrubber, by libguestfs vfs type.

Built-in backends are listed here; more can be added without touching
this package through the ``sparc_nova.disk.backends`` entry point
namespace (name: vfs type, value: a :class:`base.Backend` subclass).
"""

import stevedore

from sparc_nova.engine.disk.backends import base
from sparc_nova.engine.disk.backends import btrfs
from sparc_nova.engine.disk.backends import ext
from sparc_nova.engine.disk.backends import xfs

__all__ = ['NAMESPACE', 'backend_classes']

NAMESPACE = 'sparc_nova.disk.backends'

_BUILTIN = (ext.ExtBackend, xfs.XfsBackend, btrfs.BtrfsBackend)


def backend_classes() -> dict[str, type[base.Backend]]:
    """vfs type -> backend class (plugins may add types, not replace
    built-in ones).
    """
    classes = {t: cls for cls in _BUILTIN for t in cls.fstypes}
    manager = stevedore.ExtensionManager(NAMESPACE, invoke_on_load=False)
    for extension in manager:
        classes.setdefault(extension.name, extension.plugin)
    return classes
