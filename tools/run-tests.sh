#!/bin/bash
# The whole test suite: style checks (flake8, shellcheck), the
# documentation build (Sphinx, warnings are errors), unit tests,
# real-guest functional tests (libvirt + QEMU/TCG), the Nova driver tests,
# the end-to-end stage against a test cloud, and the Horizon plugin's unit
# and browser tests. Installs what it needs first. Extra arguments go to
# pytest (e.g. -k NAME, -x); a marker expression (-m EXPR) also decides
# whether the Horizon browser stage runs: it does when EXPR selects tests
# marked e2e (its tests are browser and e2e tests: they need the cloud).
#
# Under CI=true the install also builds the Horizon and test cloud
# virtualenvs and checks, from outside the repository, that each one
# imports every module its code needs from this checkout
# (tools/check_imports.py): a missing install step fails the run.
#
# Each stage runs even when an earlier one failed (not after a failed
# install); the summary (tools/test_summary.py: per stage tests run,
# passed, failed, skipped and wall time, the slowest ten tests) is printed
# at the end in every case, its last line "N passed, N failed, N skipped".
# Exits non-zero on any failure, and when a stage ran no test.
# shellcheck disable=SC2317  # stage commands and the trap run indirectly
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPARC_VENV:-/opt/sparc/venv}
HORIZON_VENV=${SPARC_HORIZON_VENV:-/opt/sparc/horizon-venv}
CLOUD_VENV=${SPARC_CLOUD_VENV:-/opt/sparc/cloud-venv}
# The shell files tox -e pep8 checks.
SHELL_FILES=(devstack/plugin.sh devstack/settings devstack/lib/sparc
             tests/e2e/cloud/*.sh tests/functional/devstack/*.sh)
cd "$HERE"

mkdir -p artifacts
STAGES=artifacts/stages.tsv
: > "$STAGES"
rc=0

# stage NAME JUNIT COMMAND...: run a stage, record its exit status, wall
# time and junit file (- for none) for the summary.
stage() {
    local name=$1 junit=$2 start status=0
    shift 2
    echo "== $name" >&2
    start=$EPOCHREALTIME
    "$@" || status=$?
    printf '%s\t%s\t%s\t%s\t\n' "$name" "$status" \
        "$(awk "BEGIN { print $EPOCHREALTIME - $start }")" "$junit" \
        >> "$STAGES"
    if [ "$status" != 0 ]; then
        rc=1
    fi
    return "$status"
}

# not_run NAME REASON: a stage that did not run, for the summary.
not_run() {
    printf '%s\t-\t0\t-\t%s\n' "$1" "$2" >> "$STAGES"
}

summary() {
    local status=$? summary_rc=0
    trap - EXIT
    # The summary needs only the standard library: it also runs when the
    # install never made the virtualenv.
    local python=$VENV/bin/python
    [ -x "$python" ] || python=/usr/bin/python3
    "$python" tools/test_summary.py "$STAGES" || summary_rc=$?
    if [ "$status" = 0 ] && [ "$rc" = 0 ] && [ "$summary_rc" = 0 ]; then
        exit 0
    fi
    exit 1
}
trap summary EXIT

# The marker expression given to pytest, if any (-m EXPR or -mEXPR).
marker_expr=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        -m) marker_expr=${args[i + 1]:-} ;;
        -m?*) marker_expr=${args[i]#-m} ;;
    esac
done

# Whether the marker expression selects a test marked browser and e2e.
selects_browser_tests() {
    [ -z "$marker_expr" ] && return 0
    "$VENV/bin/python" - "$marker_expr" <<'EOF'
import sys
from _pytest.mark.expression import Expression
marks = {'browser', 'e2e'}
selected = Expression.compile(sys.argv[1]).evaluate(
    lambda name, **kwargs: name in marks)
sys.exit(0 if selected else 1)
EOF
}

check_imports() {
    local venv=$1
    shift
    (cd / && env -u PYTHONPATH "$venv/bin/python" \
        "$HERE/tools/check_imports.py" --checkout "$HERE" "$@")
}

# The install stage. It runs as a stage (errexit does not apply inside),
# so each step's failure is returned explicitly.
install() {
    bash tools/install.sh || return
    bash tools/start-daemons.sh || return
    if [ "${CI:-}" != true ]; then
        return 0
    fi
    # A fresh install is proven, not assumed: every virtualenv is
    # (re)installed from this checkout and imports what its code needs
    # from outside the repository.
    bash tools/horizon/install.sh --browser || return
    bash tests/e2e/cloud/install.sh || return
    check_imports "$VENV" --package sparc_nova --skip sparc_nova.dashboard \
        --package nova.virt.sparc_libvirt --scan "$HERE/tests" \
        --scan "$HERE/benchmarks" --scan "$HERE/tools/demo.py" || return
    check_imports "$HORIZON_VENV" --package sparc_nova.dashboard \
        --skip sparc_nova.dashboard.tests.browser.settings \
        --django-settings sparc_nova.dashboard.tests.settings \
        --scan "$HERE/sparc_nova/dashboard" || return
    check_imports "$CLOUD_VENV" --package sparc_nova \
        --skip sparc_nova.dashboard --module nova.virt.sparc_libvirt \
        --scan "$HERE/tests/e2e/cloud"
}

# Real guests under TCG keep one core busy each, so the pytest stage runs
# on SPARC_TEST_WORKERS processes (default 2, CI's cores; 1 runs it in
# this process). Tests sharing a test cloud, disk images or a module's
# guests stay on one worker (tests/conftest.py).
WORKERS=${SPARC_TEST_WORKERS:-2}

run_pytest() {
    local status=0 parallel=()
    if [ "$WORKERS" -gt 1 ]; then
        parallel=(-n "$WORKERS")
    fi
    "$VENV/bin/python" -m pytest -p no:cacheprovider --tb=short \
        "${parallel[@]}" --junitxml=artifacts/junit.xml "$@" || status=$?
    if [ "$status" = 5 ]; then
        echo "run-tests.sh: no test ran" >&2
    fi
    return "$status"
}

if ! stage install - install; then
    for name in flake8 shellcheck docs pytest 'Horizon unit' \
        'Horizon browser'
    do
        not_run "$name" 'the install failed'
    done
    exit 1
fi
stage flake8 - "$VENV/bin/flake8" sparc_nova tests benchmarks tools || true
stage shellcheck - shellcheck -x "${SHELL_FILES[@]}" || true
# The documentation (tox -e docs): warnings are errors.
stage docs - "$VENV/bin/sphinx-build" -W --keep-going -q -E -b html \
    doc/source artifacts/docs || true
stage pytest artifacts/junit.xml run_pytest "$@" || true
stage 'Horizon unit' artifacts/junit-horizon.xml \
    bash tools/horizon/run-tests.sh || true
if selects_browser_tests; then
    stage 'Horizon browser' artifacts/junit-horizon-browser.xml \
        bash tools/horizon/run-tests.sh --browser-only || true
else
    not_run 'Horizon browser' "-m '$marker_expr' deselects e2e tests"
fi
exit "$rc"
