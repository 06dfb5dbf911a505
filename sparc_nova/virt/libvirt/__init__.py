"""SparcLibvirtDriver: Nova's libvirt driver enforcing privacy policies."""
