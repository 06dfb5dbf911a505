"""An all-in-one OpenStack cloud on 127.0.0.1 for the end-to-end tests.

MariaDB and RabbitMQ (private instances), Keystone, Glance, Placement,
Neutron (ML2, no agents), Barbican (the key manager, :mod:`keymanager`)
and Nova (API, conductor, scheduler, one compute
service running SparcLibvirtDriver over the cloud's own libvirtd, TCG),
from the virtualenv that ``install.sh`` makes. nova-compute runs as the
unprivileged ``nova`` user and starts its privsep daemons through ``sudo
nova-rootwrap`` with the rootwrap filters Nova and sparc-nova ship; the
other services run as root. ``python -m tests.e2e.cloud`` brings it up
and down by hand.
"""
