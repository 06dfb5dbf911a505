"""Django settings of the plugin's unit tests: Horizon's own test settings
with the Privacy panel enabled through its ``enabled/`` file, as a
deployment enables it.
"""

import openstack_dashboard.enabled
from openstack_dashboard.test.settings import *  # noqa: F403,H303
from openstack_dashboard.utils import settings as settings_utils

import sparc_nova.dashboard.enabled

# update_dashboards fills these again.
HORIZON_CONFIG.pop('dashboards', None)  # noqa: F405
HORIZON_CONFIG.pop('default_dashboard', None)  # noqa: F405
INSTALLED_APPS = [app for app in INSTALLED_APPS  # noqa: F405
                  if app != 'sparc_nova.dashboard']
settings_utils.update_dashboards(
    [openstack_dashboard.enabled, sparc_nova.dashboard.enabled],
    HORIZON_CONFIG,  # noqa: F405
    INSTALLED_APPS)
INSTALLED_APPS = list(dict.fromkeys(INSTALLED_APPS))
