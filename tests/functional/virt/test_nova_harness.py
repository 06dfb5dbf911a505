"""Nova's own functional harness, in both of Nova's concurrency modes.

The suite in tests/nova_functional must run in a process of its own (Nova
monkey patches the interpreter in eventlet mode, and forbids eventlet in
native threading mode), so each mode is a child pytest run.
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SUITE = os.path.join('tests', 'nova_functional')


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['eventlet', 'threading'])
def test_nova_functional_suite(mode, tmp_path):
    env = dict(os.environ, SPARC_NOVA_FUNCTIONAL='1')
    env.pop('OS_NOVA_DISABLE_EVENTLET_PATCHING', None)
    if mode == 'threading':
        env['OS_NOVA_DISABLE_EVENTLET_PATCHING'] = 'true'
    junit = tmp_path / 'junit.xml'
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-q',
         '-p', 'no:warnings', '--junitxml', str(junit), SUITE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout else ''
    assert proc.returncode == 0, (
        'Nova functional suite (%s mode) failed: %s\n%s\n%s'
        % (mode, summary, proc.stdout[-20000:], proc.stderr[-5000:]))
    passed = re.search(r'(\d+) passed', summary)
    assert passed and int(passed.group(1)) >= 20, summary
