"""Which compute hosts run sparc-nova.

Every SparcLibvirtDriver reports the trait :data:`TRAIT` on its compute
node's resource provider (``update_provider_tree``). Moving a server with
a privacy policy is allowed only to a host whose every compute node
carries it: a host running Nova's plain libvirt driver would snapshot and
suspend the server without scrubbing anything.
"""

from oslo_log import log as logging

from nova import objects
from nova.scheduler.client import report

__all__ = ['TRAIT', 'runs_sparc_nova']

LOG = logging.getLogger(__name__)

#: The placement trait of a compute node driven by SparcLibvirtDriver.
TRAIT = 'CUSTOM_SPARC_NOVA'


def runs_sparc_nova(context, host: str) -> bool:
    """Whether every compute node of ``host`` reports :data:`TRAIT` in
    placement. False when the host has no compute node or placement cannot
    say (fail closed).
    """
    try:
        nodes = objects.ComputeNodeList.get_all_by_host(context, host)
        if not nodes:
            return False
        client = report.report_client_singleton()
        return all(TRAIT in client.get_provider_traits(context,
                                                       node.uuid).traits
                   for node in nodes)
    except Exception as e:
        LOG.warning('Could not read the traits of host %(host)s: %(error)s',
                    {'host': host, 'error': e})
        return False
