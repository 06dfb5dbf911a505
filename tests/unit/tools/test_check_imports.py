"""tools/check_imports.py: what a virtualenv must import, checked from
outside the repository.
"""

import os
import subprocess
import sys

from tools import check_imports

SOURCE = '''
import json
import oslo_config.cfg
from nova.virt import driver
from . import sibling
from tests.functional import crash
import tools.demo

try:
    import atheris
except ImportError:
    atheris = None


def late():
    from playwright.sync_api import sync_playwright
    return sync_playwright
'''


def test_scanned_imports(tmp_path):
    (tmp_path / 'pkg').mkdir()
    (tmp_path / 'pkg' / 'mod.py').write_text(SOURCE)
    (tmp_path / 'pkg' / 'notes.txt').write_text('import nothing')
    assert check_imports.scanned_imports(str(tmp_path)) == {
        'json', 'oslo_config.cfg', 'nova.virt', 'playwright.sync_api'}


def run(tmp_path, *args):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))), 'tools',
        'check_imports.py')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return subprocess.run([sys.executable, script] + list(args), cwd='/',
                          env=env, capture_output=True, text=True)


def test_package_from_another_checkout_fails(tmp_path):
    # json is importable, but not from this (made-up) checkout.
    proc = run(tmp_path, '--checkout', str(tmp_path), '--package', 'json')
    assert proc.returncode == 1
    assert 'json: comes from' in proc.stderr


def test_missing_module_fails_and_is_named(tmp_path):
    (tmp_path / 'use.py').write_text('import sparc_no_such_module\n')
    proc = run(tmp_path, '--checkout', str(tmp_path), '--module', 'json',
               '--scan', str(tmp_path / 'use.py'))
    assert proc.returncode == 1
    assert "sparc_no_such_module: ModuleNotFoundError" in proc.stderr
    assert '1 failed' in proc.stderr


def test_refuses_to_run_inside_the_checkout(tmp_path):
    script = os.path.join(os.path.dirname(check_imports.__file__),
                          'check_imports.py')
    repo = os.path.dirname(os.path.dirname(script))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, script, '--checkout', repo,
                           '--module', 'json'], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert 'run it from outside' in proc.stderr


def test_everything_importable_passes(tmp_path):
    (tmp_path / 'use.py').write_text('import json\nfrom os import path\n')
    proc = run(tmp_path, '--checkout', str(tmp_path), '--scan',
               str(tmp_path / 'use.py'))
    assert proc.returncode == 0, proc.stderr
    assert '2 imports scanned, 0 failed' in proc.stderr
