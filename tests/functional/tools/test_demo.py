"""The demo (tools/demo.py), the first thing a new user runs, runs as a
test: a real guest is checkpointed, the ``vault`` process scrubbed out
and the guest restored. The test reads the demo's report and scans the
checkpoints itself.
"""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GUEST_UP = re.compile(r'vault \(pid (\d+)\) holds the secret (\S+), webapp '
                      r'\(pid (\d+)\) holds (\S+)')


def count(path: str, marker: bytes) -> int:
    """Occurrences of ``marker`` in the file's raw bytes."""
    found = 0
    tail = b''
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(16 << 20)
            if not chunk:
                return found
            data = tail + chunk
            found += data.count(marker)
            # Keep less than a marker, so no hit is counted twice.
            tail = data[-(len(marker) - 1):]


@pytest.mark.slow
def test_demo(libvirt_daemons, module_dir):
    workdir = os.path.join(module_dir, 'demo')
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, 'tools', 'demo.py')],
        env=dict(os.environ, SPARC_DEMO_DIR=workdir), cwd=REPO,
        capture_output=True, text=True, timeout=1500)
    out = proc.stdout
    assert proc.returncode == 0, out[-5000:] + proc.stderr[-5000:]
    assert ('RESULT: the checkpoint holds no copy of the secret; the guest '
            'restored and runs without the vault process') in out
    assert 'vault is gone; webapp runs' in out
    vault_pid, secret, _webapp_pid, control = GUEST_UP.search(out).groups()

    # The report names the excluded process, and only it.
    with open(os.path.join(workdir, 'report.json')) as f:
        report = json.load(f)
    assert [(p['comm'], p['pid']) for p in report['processes']] == [
        ('vault', int(vault_pid))]
    assert report['frames_scrubbed'] > 0
    assert report['verification']['result'] == 'ok'

    # No copy of the secret is left in the scrubbed checkpoint; the
    # original held it, and webapp's marker is still there.
    saved = os.path.join(workdir, 'vm.save')
    scrubbed = os.path.join(workdir, 'vm.scrubbed.save')
    assert count(saved, secret.encode()) > 0
    assert count(scrubbed, secret.encode()) == 0
    assert count(scrubbed, control.encode()) > 0
