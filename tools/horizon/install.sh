#!/bin/bash
# Build the Horizon virtualenv (default /opt/sparc/horizon-venv, override
# with SPARC_HORIZON_VENV): Horizon and the Django it is tested with, the
# test tools Horizon's own tests use, and sparc-nova in development mode,
# all pinned by tools/constraints-horizon.txt. The product virtualenv
# (/opt/sparc/venv) is not touched. Safe to run again.
#
# With --browser it also installs what the real-browser test needs from
# Debian: chromium (Playwright drives it; Playwright's own browsers are
# never downloaded) and the tools that build a small guest disk.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${SPARC_HORIZON_VENV:-/opt/sparc/horizon-venv}
CONSTRAINTS="$HERE/tools/constraints-horizon.txt"
export DEBIAN_FRONTEND=noninteractive
# Playwright must use the system browser: never fetch its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

browser=0
for arg in "$@"; do
    case "$arg" in
        --browser) browser=1 ;;
        *) echo "usage: $0 [--browser]" >&2; exit 2 ;;
    esac
done

need_apt=()
for pkg in python3 python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "$browser" = 1 ]; then
    for pkg in chromium fdisk e2fsprogs qemu-utils; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
    done
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install.sh: missing Debian packages (run as root):" \
             "${need_apt[*]}" >&2
        exit 2
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" \
        >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check
     -c "$CONSTRAINTS")
stamp="$VENV/.sparc-constraints.sha256"
want=$(sha256sum "$CONSTRAINTS" "$HERE/tools/horizon/requirements.txt" \
       | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "${PIP[@]}" -r "$HERE/tools/horizon/requirements.txt"
    echo "$want" > "$stamp"
fi
# sparc-nova in development mode from this checkout. Whether it is there
# is asked from outside the repository: from its root the current
# directory is on sys.path and "import sparc_nova" would always succeed.
here_real=$(realpath "$HERE")
installed_from() {
    (cd / && env -u PYTHONPATH "$VENV/bin/python" -c '
import importlib.util, os
spec = importlib.util.find_spec("sparc_nova")
print(os.path.realpath(os.path.dirname(os.path.dirname(spec.origin)))
      if spec else "")')
}
if [ "$(installed_from)" != "$here_real" ]; then
    "${PIP[@]}" --no-deps -e "$HERE"
    where=$(installed_from)
    if [ "$where" != "$here_real" ]; then
        echo "install.sh: sparc_nova in $VENV comes from '${where:-nowhere}'," \
             "not from $HERE" >&2
        exit 1
    fi
fi

# Enable the Privacy panel the way a deployment does (doc/horizon.md):
# its enabled/ file linked into openstack_dashboard/local/enabled/.
local_enabled=$(cd / && "$VENV/bin/python" -c 'import os, openstack_dashboard.local.enabled as e; print(os.path.dirname(e.__file__))')
ln -sfn "$HERE/sparc_nova/dashboard/enabled/_1120_project_privacy_panel.py" \
    "$local_enabled/_1120_project_privacy_panel.py"
echo "install.sh: Horizon and sparc-nova installed in $VENV" >&2
