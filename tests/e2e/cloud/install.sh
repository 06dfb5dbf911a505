#!/bin/bash
# Install the test cloud on Debian 12, as root: MariaDB and RabbitMQ (their
# distribution services are not started), a virtualenv holding Keystone,
# Glance, Placement, Neutron, Nova and Barbican pinned by constraints.txt, and
# sparc-nova installed into it by devstack/lib/sparc's install_sparc_nova,
# the function the DevStack plugin runs. Safe to run again: it skips what
# is already there.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
export SPARC_CLOUD_VENV=${SPARC_CLOUD_VENV:-/opt/sparc/cloud-venv}
export SPARC_CLOUD_CONSTRAINTS=$HERE/constraints.txt
export DEBIAN_FRONTEND=noninteractive

if [[ $(id -u) != 0 ]]; then
    echo "install.sh: run as root" >&2
    exit 2
fi

# Debian starts a package's service when installing it; the cloud runs its
# own private instances, so keep the distribution's stopped (a
# policy-rc.d already in place is left alone).
# sudo: nova-compute runs as the nova user and starts its privsep daemons
# with "sudo nova-rootwrap ..." (the user and the sudoers drop-in are made
# by the bring-up, tests/e2e/cloud/host_accounts.py).
packages=(mariadb-server mariadb-client rabbitmq-server python3-venv sudo)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

stamp=$SPARC_CLOUD_VENV/.sparc-cloud-constraints
if [[ ! -x $SPARC_CLOUD_VENV/bin/python ]]; then
    mkdir -p "$(dirname "$SPARC_CLOUD_VENV")"
    /usr/bin/python3 -m venv --system-site-packages "$SPARC_CLOUD_VENV"
fi
if ! cmp -s "$SPARC_CLOUD_CONSTRAINTS" "$stamp"; then
    "$SPARC_CLOUD_VENV/bin/pip" install -q --disable-pip-version-check \
        -c "$SPARC_CLOUD_CONSTRAINTS" -r "$HERE/requirements.txt"
    cp "$SPARC_CLOUD_CONSTRAINTS" "$stamp"
fi

# sparc-nova itself, as DevStack's plugin installs it.
# shellcheck source=tests/e2e/cloud/devstack_compat.sh
source "$HERE/devstack_compat.sh"
export SPARC_NOVA_DIR=$REPO
export SPARC_NOVA_PYTHON=$SPARC_CLOUD_VENV/bin/python
export SPARC_NOVA_CONF_DIR=$SPARC_CLOUD_VENV/etc/nova
# shellcheck source=devstack/lib/sparc
source "$REPO/devstack/lib/sparc"
install_sparc_nova
echo "install.sh: test cloud installed in $SPARC_CLOUD_VENV" >&2
