"""An all-in-one OpenStack cloud on 127.0.0.1 for the end-to-end tests.

MariaDB and RabbitMQ (private instances), Keystone, Glance, Placement,
Neutron (ML2, no agents) and Nova (API, conductor, scheduler, one compute
service running SparcLibvirtDriver over libvirt's embedded QEMU driver,
TCG), from the virtualenv that ``install.sh`` makes. No sudo: the services
run as root and start privsep-helper directly. ``python -m
tests.e2e.cloud`` brings it up and down by hand.
"""
