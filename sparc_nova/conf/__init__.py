"""Configuration options of sparc-nova, all in the ``[sparc]`` group.

One module per area defines its options in a list named ``opts``; this
package registers them all in one place and exposes :func:`list_opts` for
oslo-config-generator (entry point ``oslo.config.opts``). To add an area,
add its module to ``_AREAS``.
"""

import importlib

from oslo_config import cfg

GROUP = 'sparc'

_AREAS = ('checkpoint', 'disk', 'memory', 'nova', 'sandbox')


def _modules():
    return [importlib.import_module('sparc_nova.conf.' + a) for a in _AREAS]


def register_opts(conf: cfg.ConfigOpts) -> None:
    for module in _modules():
        conf.register_opts(module.opts, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Every option, for oslo-config-generator."""
    return [(GROUP, [o for m in _modules() for o in m.opts])]


CONF = cfg.CONF
register_opts(CONF)
