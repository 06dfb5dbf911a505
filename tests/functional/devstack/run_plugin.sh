#!/bin/bash
# Run one phase of the DevStack plugin (devstack/plugin.sh) the way
# stack.sh, unstack.sh and clean.sh do, without DevStack and without
# systemd:
#
#   run_plugin.sh stack install|post-config|extra|test-config
#   run_plugin.sh unstack|clean
#
# DevStack sources devstack/settings once, then sources plugin.sh with the
# phase as its arguments under errexit; this script does the same, with
# the stand-ins of DevStack's functions that the test cloud already uses
# (tests/e2e/cloud/devstack_compat.sh: iniset, install_bindep,
# setup_develop) and the few plugin-facing ones defined below. Where
# things go is set by the caller's environment, as in DevStack's
# local.conf: SPARC_NOVA_PYTHON, NOVA_CONF, NOVA_CONF_DIR,
# NOVA_API_PASTE_INI, GLANCE_CONF_DIR, GLANCE_API_CONF, SPARC_GLANCE_MANAGE,
# SPARC_MANAGED_SAVE_DIR, SPARC_PRIVSEP_HELPER_COMMAND, ENABLED_SERVICES.
#
# setup_develop (pip install -e) and install_bindep (apt-get) would change
# shared environments; here setup_develop checks that Nova's interpreter
# imports sparc-nova from the checkout it was given, and install_bindep
# checks that no package bindep.txt names is missing. Every call is
# logged to $SPARC_PLUGIN_CALLS when it is set.
set -o errexit -o nounset -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
DEST=${DEST:-$(dirname "$REPO")}
SPARC_NOVA_DIR=${SPARC_NOVA_DIR:-$REPO}
ENABLED_SERVICES=${ENABLED_SERVICES:-n-api,n-cpu,g-api}
SPARC_CLOUD_VENV=${SPARC_CLOUD_VENV:-/opt/sparc/cloud-venv}
export DEST SPARC_NOVA_DIR ENABLED_SERVICES SPARC_CLOUD_VENV

# shellcheck source=tests/e2e/cloud/devstack_compat.sh
source "$REPO/tests/e2e/cloud/devstack_compat.sh"

# _record NAME ARGS... - log a DevStack function call.
function _record {
    if [[ -n ${SPARC_PLUGIN_CALLS:-} ]]; then
        echo "$*" >>"$SPARC_PLUGIN_CALLS"
    fi
}

# DevStack's plugin interface (functions-common, stack.sh).
function define_plugin { _record define_plugin "$@"; }
function plugin_requires { _record plugin_requires "$@"; }
function echo_summary { echo "$@"; }

# is_service_enabled SERVICE... - true when one of them is enabled.
function is_service_enabled {
    local service
    for service in "$@"; do
        if [[ ,$ENABLED_SERVICES, == *,$service,* ]]; then
            return 0
        fi
    done
    return 1
}

# enable_service SERVICE... - add to ENABLED_SERVICES.
function enable_service {
    local service
    for service in "$@"; do
        is_service_enabled "$service" ||
            ENABLED_SERVICES=$ENABLED_SERVICES,$service
    done
}

# setup_develop DIR - check, instead of pip install -e, that Nova's
# interpreter imports sparc_nova from DIR.
function setup_develop {
    _record setup_develop "$@"
    local found
    found=$("$SPARC_NOVA_PYTHON" -c \
        'import os, sparc_nova; print(os.path.dirname(os.path.dirname(
            os.path.abspath(sparc_nova.__file__))))')
    if [[ $found != "$(cd "$1" && pwd)" ]]; then
        echo "setup_develop $1: Nova's Python imports sparc_nova from" \
            "$found" >&2
        return 1
    fi
}

# install_bindep FILE - check, instead of apt-get install, that no package
# of FILE is missing.
function install_bindep {
    _record install_bindep "$@"
    local missing
    missing=$("$SPARC_CLOUD_VENV/bin/bindep" -b -f "$1" || true)
    if [[ -n $missing ]]; then
        echo "install_bindep $1: missing packages: $missing" >&2
        return 1
    fi
}

if [[ $# -lt 1 ]]; then
    echo "usage: $0 stack PHASE | unstack | clean" >&2
    exit 2
fi

# shellcheck source=devstack/settings
source "$SPARC_NOVA_DIR/devstack/settings"
# shellcheck source=devstack/plugin.sh
source "$SPARC_NOVA_DIR/devstack/plugin.sh" "$@"
