# The Privacy panel of sparc-nova, under Project > Compute.
#
# Link or copy this file into openstack_dashboard/local/enabled/ and
# restart Horizon (after collectstatic and compress when compression is
# offline). See doc/horizon.md.

# The slug of the panel to be added to HORIZON_CONFIG. Required.
PANEL = 'privacy'
# The slug of the dashboard the PANEL associated with. Required.
PANEL_DASHBOARD = 'project'
# The slug of the panel group the PANEL is associated with.
PANEL_GROUP = 'compute'

# Python panel class of the PANEL to be added.
ADD_PANEL = 'sparc_nova.dashboard.panel.Privacy'

# The plugin's templates and static files.
ADD_INSTALLED_APPS = ['sparc_nova.dashboard']
AUTO_DISCOVER_STATIC_FILES = True

# A "Privacy scrub" column on Project > Compute > Images (the AngularJS
# images panel, Horizon's default), added through the resource registry.
ADD_ANGULAR_MODULES = ['horizon.dashboard.sparc.images']
