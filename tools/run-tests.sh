#!/bin/bash
# The whole test suite: style checks, unit tests, real-guest functional
# tests (libvirt + QEMU/TCG), the Nova driver tests. Installs what it needs
# first. Extra arguments go to pytest (e.g. -k NAME, -x).
# Exits non-zero on any failure, and when no test ran at all.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPARC_VENV:-/opt/sparc/venv}
cd "$HERE"

bash tools/install.sh
bash tools/start-daemons.sh

echo "== flake8 (tox -e pep8)" >&2
"$VENV/bin/flake8" sparc_nova tests benchmarks tools

echo "== pytest" >&2
mkdir -p artifacts
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider --tb=short \
    --junitxml=artifacts/junit.xml "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "run-tests.sh: no test ran" >&2
    exit 1
fi

echo "== Horizon plugin (own virtualenv, Horizon's test settings, browser)" >&2
set +e
bash tools/horizon/run-tests.sh --browser
horizon_rc=$?
set -e
if [ "$rc" = 0 ]; then
    rc=$horizon_rc
fi
exit "$rc"
