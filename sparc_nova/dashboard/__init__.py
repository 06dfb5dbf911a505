"""The Horizon plugin of sparc-nova: a "Privacy" panel under
Project > Compute.

Enable it by linking or copying
``sparc_nova/dashboard/enabled/_1120_project_privacy_panel.py`` into
``openstack_dashboard/local/enabled/`` (see doc/horizon.md).
"""
