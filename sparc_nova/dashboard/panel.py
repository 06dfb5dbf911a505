"""The Privacy panel."""

from django.utils.translation import gettext_lazy as _

import horizon


class Privacy(horizon.Panel):
    """Privacy policies and scrub results of the project's instances."""

    name = _("Privacy")
    slug = 'privacy'
    permissions = ('openstack.services.compute',)
    policy_rules = (("compute", "os_compute_api:servers:detail"),)
