"""The ``openstack`` command line plugin: tenants read and set their
instances' privacy policies and read the scrub records of their images
without leaving python-openstackclient.
"""
