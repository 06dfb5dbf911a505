"""sparc-nova's own privilege separation context.

Managed-save files belong to root (0600) in a directory nova-compute
cannot write. The memory scrub of a suspended instance therefore runs in
a privsep daemon of its own, started by nova-compute through its root
helper (``sudo nova-rootwrap ... privsep-helper --privsep_context
sparc_nova.privsep.scrub_pctxt ...``, allowed by
``etc/sparc-nova/rootwrap.d/sparc-nova.filters``). The daemon keeps only
the capabilities that reading and replacing another user's file needs
(DAC_OVERRIDE, DAC_READ_SEARCH and FOWNER), SETUID and SETGID, with which
the programs it starts (the parsing sandbox, decompressors) switch to
``[sparc] sandbox_user`` before they ``exec``, and KILL: the daemon must
be able to kill its sandbox child when it exceeds a limit (its output
cap, the wall-clock timeout) or is abandoned.

Before oslo.privsep drops to those, while ``privsep-helper`` still has
every capability, importing this module locks the daemon down
(:func:`sparc_nova.unprivileged.lock_down`): ``SECBIT_NOROOT`` and
``SECBIT_NO_SETUID_FIXUP``, locked, an empty bounding set and
``no_new_privs``. Nothing the daemon runs regains a capability through
``exec``, not even as uid 0.

Options are in the ``[sparc_privsep]`` group (oslo.privsep's own: user,
group, helper_command, thread_pool_size, ...).
"""

import copy
import os
import sys

from oslo_config import cfg
from oslo_privsep import capabilities
from oslo_privsep import priv_context

from sparc_nova import unprivileged

CONF_SECTION = 'sparc_privsep'

CAPABILITIES = (capabilities.CAP_DAC_OVERRIDE,
                capabilities.CAP_DAC_READ_SEARCH,
                capabilities.CAP_FOWNER,
                capabilities.CAP_KILL,
                capabilities.CAP_SETUID,
                capabilities.CAP_SETGID)

scrub_pctxt = priv_context.PrivContext(
    'sparc_nova',
    cfg_section=CONF_SECTION,
    pypath=__name__ + '.scrub_pctxt',
    capabilities=list(CAPABILITIES),
)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """The ``[sparc_privsep]`` options, for oslo-config-generator."""
    return [(CONF_SECTION, copy.deepcopy(priv_context.OPTS))]


def starting_daemon() -> bool:
    """Whether this process is ``privsep-helper`` starting our daemon
    (it imports this module to find :data:`scrub_pctxt`, before it forks
    the daemon and drops privileges).
    """
    if os.path.basename(sys.argv[0]) != 'privsep-helper':
        return False
    try:
        return cfg.CONF.privsep_context == scrub_pctxt.pypath
    except cfg.Error:
        return False


if starting_daemon():
    unprivileged.lock_down()
