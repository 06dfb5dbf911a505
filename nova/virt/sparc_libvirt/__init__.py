"""Nova loads ``[DEFAULT] compute_driver`` as ``nova.virt.<value>``; this
module makes ``compute_driver = sparc_libvirt.SparcLibvirtDriver`` load
sparc-nova's driver.

sparc-nova installs only this directory under Nova's package (no
``nova/__init__.py`` or ``nova/virt/__init__.py`` of its own), so Nova's
files are never replaced and uninstalling sparc-nova removes only this
module.
"""

from sparc_nova.virt.libvirt import driver

SparcLibvirtDriver = driver.SparcLibvirtDriver

__all__ = ['SparcLibvirtDriver']
