"""Suspend one test bed guest with the SparcLibvirtDriver of whichever
sparc-nova comes first on ``sys.path``: :mod:`.test_upgrade` runs it as
a script with the previous release's tree first, so the driver, the
privileged daemon it starts and the scrub engine are that release's.

Reads a JSON object on stdin: ``overrides`` (Nova's configuration, see
:func:`.instances.nova_overrides`), ``instance_id``, ``uuid``,
``metadata`` and ``result`` (a file). Writes to ``result``: the
``sparc_nova`` package and driver module it ran, and the scrub's
summary.
"""

import json
import sys
from unittest import mock


def main() -> None:
    spec = json.load(sys.stdin)
    from tests.functional.virt import instances
    instances.apply_overrides([tuple(o) for o in spec['overrides']])

    from nova import context as nova_context
    from nova.virt import driver as virt_driver
    import sparc_nova
    from sparc_nova import privsep
    from sparc_nova.privsep import checkpoint as privsep_checkpoint

    drv = virt_driver.load_compute_driver(
        mock.Mock(), 'sparc_libvirt.SparcLibvirtDriver')
    instance = instances.nova_instance(spec['instance_id'], spec['uuid'],
                                       spec['metadata'])
    scrubs = []
    real_entry = privsep_checkpoint.scrub_managed_save

    def spy(*args, **kwargs):
        scrubs.append(real_entry(*args, **kwargs))
        return scrubs[-1]

    try:
        with mock.patch.object(privsep_checkpoint, 'scrub_managed_save',
                               spy):
            drv.suspend(nova_context.get_admin_context(), instance)
    finally:
        privsep.scrub_pctxt.stop()
    with open(spec['result'], 'w') as f:
        json.dump({'sparc_nova': sparc_nova.__file__,
                   'driver': sys.modules[type(drv).__module__].__file__,
                   'summaries': [s['summary'] for s in scrubs]}, f)


if __name__ == '__main__':
    main()
