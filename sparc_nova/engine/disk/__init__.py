"""Disk image scrubbing on libguestfs.

The public API::

    from sparc_nova.engine import disk

    rules = disk.Rules(['/home/*/.ssh/**', '!**/*.pub'], ['shell-history'])
    report = disk.scrub_image('snap.qcow2', 'clean.qcow2', rules,
                              disk.ScrubOptions(output_format='qcow2'))
    json.dumps(report.to_dict())

This package must not import Nova or the memory introspection layer.
"""

from sparc_nova.engine.disk.presets import PRESETS
from sparc_nova.engine.disk.report import ScrubReport
from sparc_nova.engine.disk.rules import Rules
from sparc_nova.engine.disk.scan import count as scan_image
from sparc_nova.engine.disk.scrub import scrub_image
from sparc_nova.engine.disk.scrub import ScrubOptions

__all__ = ['PRESETS', 'Rules', 'ScrubOptions', 'ScrubReport',
           'scan_image', 'scrub_image']
