#!/bin/bash
# Make "compute_driver = sparc_libvirt.SparcLibvirtDriver" work with an
# editable install of sparc-nova (pip install -e): link the repository's
# nova/virt/sparc_libvirt into the installed Nova package, where Nova looks
# for its drivers. A regular install (pip install sparc-nova, a wheel)
# installs that module itself and needs no link.
# Does nothing when Nova is not installed in the virtualenv.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPARC_VENV:-/opt/sparc/venv}

# Asked from outside the repository, whose nova/ directory would
# otherwise be found first.
virt_dir=$(cd / && "$VENV/bin/python" -c '
import os
try:
    import nova.virt
except ImportError:
    raise SystemExit(0)
print(os.path.dirname(nova.virt.__file__))')
if [ -z "$virt_dir" ]; then
    echo "link-nova-shim.sh: Nova is not installed in $VENV; nothing to do" >&2
    exit 0
fi
target="$virt_dir/sparc_libvirt"
if [ -e "$target" ] && [ ! -L "$target" ]; then
    echo "link-nova-shim.sh: $target exists and is not a link; left alone" >&2
    exit 0
fi
ln -sfn "$HERE/nova/virt/sparc_libvirt" "$target"
echo "link-nova-shim.sh: $target -> $HERE/nova/virt/sparc_libvirt" >&2
