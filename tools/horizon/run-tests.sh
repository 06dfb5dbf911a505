#!/bin/bash
# The Horizon plugin's tests, in the Horizon virtualenv
# (tools/horizon/install.sh builds it) with Horizon's own test framework
# and settings (pytest-django, tools/horizon/pytest.ini).
#
#   tools/horizon/run-tests.sh [--browser | --browser-only] [PYTEST ARGS...]
#
# --browser also runs the real-browser tests (--browser-only runs only
# them; tools/run-tests.sh times the two stages apart; the browser tests
# are marked browser and e2e): a test cloud is brought up
# for them (python -m tests.e2e.cloud run, in the cloud's virtualenv, on
# its own ports and state directory unless SPARC_CLOUD_* say otherwise)
# and always brought down; Horizon is served on 127.0.0.1 and driven in
# Debian's chromium. Screenshots and logs go to artifacts/horizon/.
# Exits non-zero on any failure, and when no test ran.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${SPARC_HORIZON_VENV:-/opt/sparc/horizon-venv}
CLOUD_VENV=${SPARC_CLOUD_VENV:-/opt/sparc/cloud-venv}
cd "$HERE"

browser=0
unit=1
case "${1:-}" in
    --browser) browser=1; shift ;;
    --browser-only) browser=1; unit=0; shift ;;
esac

if [ "$browser" = 1 ]; then
    bash tools/horizon/install.sh --browser
else
    bash tools/horizon/install.sh
fi
mkdir -p artifacts/horizon

run_pytest() {
    set +e
    "$VENV/bin/python" -m pytest -c tools/horizon/pytest.ini --rootdir . \
        "$@"
    local rc=$?
    set -e
    if [ "$rc" = 5 ]; then
        echo "horizon/run-tests.sh: no test ran" >&2
        rc=1
    fi
    return "$rc"
}

rc=0
if [ "$unit" = 1 ]; then
    echo "== Horizon plugin: unit tests" >&2
    run_pytest -m "not browser" --junitxml=artifacts/junit-horizon.xml \
        sparc_nova/dashboard/tests "$@" || rc=$?
fi

if [ "$browser" = 1 ]; then
    echo "== Horizon plugin: browser tests against a test cloud" >&2
    if [ ! -x "$CLOUD_VENV/bin/python" ]; then
        bash tests/e2e/cloud/install.sh
    fi
    export SPARC_CLOUD_PORT_BASE=${SPARC_CLOUD_PORT_BASE:-27000}
    export SPARC_CLOUD_STATE=${SPARC_CLOUD_STATE:-/var/tmp/sparc-cloud-horizon}
    export SPARC_CLOUD_LOGS=${SPARC_CLOUD_LOGS:-$HERE/artifacts/horizon/cloud}
    export SPARC_REQUIRE_CLOUD=1
    set +e
    "$CLOUD_VENV/bin/python" -m tests.e2e.cloud run -- \
        "$VENV/bin/python" -m pytest -c tools/horizon/pytest.ini --rootdir . \
        -m browser --junitxml=artifacts/junit-horizon-browser.xml \
        sparc_nova/dashboard/tests/browser "$@"
    browser_rc=$?
    set -e
    if [ "$browser_rc" = 5 ]; then
        echo "horizon/run-tests.sh: no browser test ran" >&2
        browser_rc=1
    fi
    if [ "$rc" = 0 ]; then
        rc=$browser_rc
    fi
fi
exit "$rc"
