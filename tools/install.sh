#!/bin/bash
# Install sparc-nova on Debian 12, as root: the Debian packages listed in
# bindep.txt, then a virtualenv (default /opt/sparc/venv, override with
# SPARC_VENV) holding sparc-nova and its Python dependencies pinned by
# tools/constraints.txt. Safe to run again: it only adds what is missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPARC_VENV:-/opt/sparc/venv}
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0

apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (it installs Debian packages)" >&2
    exit 2
fi

# The virtualenv needs python3-venv before bindep can run in it.
for pkg in python3 python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || apt_install "$pkg"
done
if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
"$VENV/bin/python" -c 'import bindep' 2>/dev/null || "${PIP[@]}" bindep

missing=$("$VENV/bin/bindep" -b -f "$HERE/bindep.txt" test || true)
if [ -n "$missing" ]; then
    echo "install.sh: installing Debian packages:" $missing >&2
    # shellcheck disable=SC2086
    apt_install $missing
fi

"${PIP[@]}" -c "$HERE/tools/constraints.txt" \
    -r "$HERE/requirements.txt" -r "$HERE/test-requirements.txt" \
    -r "$HERE/doc/requirements.txt"
"${PIP[@]}" -c "$HERE/tools/constraints.txt" --no-deps -e "$HERE"
# compute_driver = sparc_libvirt.SparcLibvirtDriver with an editable install.
bash "$HERE/tools/link-nova-shim.sh"
# The appliance disk scrubs boot (else the first scrub builds it, 3-5 s).
"$VENV/bin/sparc" image appliance >/dev/null ||
    echo "install.sh: disk scrubs will boot libguestfs' own appliance" >&2
echo "install.sh: sparc-nova installed in $VENV" >&2
