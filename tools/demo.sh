#!/bin/bash
# Install sparc-nova and its system packages (Debian 12, root), then run
# the demo end to end: a real guest is checkpointed, scrubbed and restored.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SPARC_VENV:-/opt/sparc/venv}
bash "$HERE/tools/install.sh"
bash "$HERE/tools/start-daemons.sh"
exec "$VENV/bin/python" "$HERE/tools/demo.py"
