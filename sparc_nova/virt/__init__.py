"""sparc-nova inside nova-compute: the libvirt driver subclass and what it
needs from Nova (policies read from instances, faults, notifications).
"""
