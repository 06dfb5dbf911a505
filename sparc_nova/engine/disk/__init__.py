"""Disk image scrubbing on libguestfs.

The public API::

    from sparc_nova.engine import disk

    rules = disk.Rules(['/home/*/.ssh/**', '!**/*.pub'], ['shell-history'])
    report = disk.scrub_image('snap.qcow2', 'clean.qcow2', rules,
                              disk.ScrubOptions(output_format='qcow2'))
    json.dumps(report.to_dict())

This package must not import Nova or the memory introspection layer.
"""

import importlib

from sparc_nova.engine.disk.presets import PRESETS
from sparc_nova.engine.disk.report import ScrubReport
from sparc_nova.engine.disk.rules import Rules

__all__ = ['PRESETS', 'Rules', 'ScrubOptions', 'ScrubReport',
           'scan_image', 'scrub_image']

#: Names imported on first use (PEP 562): the scrubber brings in oslo.log
#: and the appliance glue, which the memory engine (it uses this
#: package's rules and report) should not load in every sandbox child.
_LAZY = {'scrub_image': ('scrub', 'scrub_image'),
         'ScrubOptions': ('options', 'ScrubOptions'),
         'scan_image': ('scan', 'count')}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError('module %r has no attribute %r'
                             % (__name__, name))
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(__name__ + '.' + module), attr)
