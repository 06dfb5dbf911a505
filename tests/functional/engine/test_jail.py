"""The planner's jail on a real guest (Debian 6.1, 256 MiB, pc): a real
scrub whose sandbox child attacks instead of planning fails with a clear
error, writes nothing and leaves the checkpoint as it was; without
seccomp the scrub refuses, and the override runs and says so.
"""

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

import pytest

from sparc_nova.engine import errors
from sparc_nova.engine import memory
from sparc_nova.engine import sandbox
from sparc_nova.engine import sandboxed_plan
from tests.functional.engine import scenario as scen

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
MAX_RESULT = 64 * 1024 * 1024


@pytest.fixture(scope='module')
def sc(make_guest, guest_image, module_dir):
    return scen.build(make_guest, guest_image, module_dir)


def _digest(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope='module')
def original(sc):
    return _digest(sc.save_path)


ATTACKS = [
    # The child's error is named by its type only (its message could
    # quote guest data): the file is not there.
    ('open_host_file', 'FileNotFoundError'),
    ('read_parent_memory', 'outside the seccomp allow-list'),
    ('new_user_namespace', 'outside the seccomp allow-list'),
    ('io_uring', 'outside the seccomp allow-list'),
    ('fork_many', 'outside the seccomp allow-list'),
    ('flood_output', 'wrote more than the %d bytes allowed and was killed'
     % MAX_RESULT),
    ('deep_json', 'nested more than %d deep' % sandbox.MAX_DEPTH),
]


@pytest.mark.parametrize('attack,message', ATTACKS,
                         ids=[a for a, _ in ATTACKS])
def test_hostile_planner_writes_nothing(sc, original, attack, message,
                                        monkeypatch):
    policy = sandbox.SandboxPolicy(max_result=MAX_RESULT, timeout=120,
                                   cpu_seconds=60)
    monkeypatch.setattr(sandboxed_plan, 'PLAN_ENTRY',
                        'tests.functional.engine.jail_targets:' + attack)
    monkeypatch.setattr(sandbox, 'ALLOWED_PREFIXES',
                        ('sparc_nova.', 'tests.'))
    monkeypatch.setenv('PYTHONPATH', ROOT)
    out = os.path.join(sc.workdir, 'hostile-%s.save' % attack)
    before = set(os.listdir(sc.workdir))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(errors.ScrubError) as ei:
        memory.scrub_checkpoint(sc.save_path, sc.selectors(), output=out,
                                sandbox=policy)
    assert message in str(ei.value)
    assert sc.save_path in str(ei.value)
    assert 'root:x:0:0' not in str(ei.value)
    # The parent kept no more than the cap of the child's output.
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    assert grown_kib < 2 * MAX_RESULT // 1024, grown_kib
    # Nothing written, the checkpoint as it was.
    assert set(os.listdir(sc.workdir)) == before
    assert _digest(sc.save_path) == original


@pytest.fixture
def no_seccomp():
    """python3-seccomp missing: an unimportable seccomp module first on
    the path (readable by the sandbox user).
    """
    path = tempfile.mkdtemp(prefix='sparc-no-seccomp-')
    os.chmod(path, 0o755)
    module = os.path.join(path, 'seccomp.py')
    with open(module, 'w') as f:
        f.write('raise ImportError("python3-seccomp is not installed")\n')
    os.chmod(module, 0o644)
    yield path
    shutil.rmtree(path)


def _scrub_cli(sc, out, env, *options):
    """``sparc [options] checkpoint scrub`` of the test bed's checkpoint
    to ``out``, with the report next to it.
    """
    report = out + '.json'
    args = [*options, 'checkpoint', 'scrub', sc.save_path, '--output', out,
            '--report', report, '--format', 'json']
    for sel in sc.selectors():
        args += ['--exclude-process', sel]
    proc = subprocess.run([sys.executable, '-m', 'sparc_nova.cmd.sparc']
                          + args, capture_output=True, text=True,
                          timeout=600, env=env)
    return proc, report


def test_without_seccomp_the_scrub_refuses(sc, original, no_seccomp):
    env = dict(os.environ, PYTHONPATH='%s:%s' % (no_seccomp, ROOT))
    out = os.path.join(sc.workdir, 'no-seccomp.save')
    proc, report = _scrub_cli(sc, out, env)
    assert proc.returncode == 2, proc.stderr
    assert 'seccomp is not available' in proc.stderr
    assert 'sandbox_require_seccomp = false' in proc.stderr
    assert not os.path.exists(out) and not os.path.exists(report)
    assert _digest(sc.save_path) == original


def test_override_runs_without_seccomp_and_says_so(sc, no_seccomp,
                                                   tmp_path):
    conf = tmp_path / 'sparc.conf'
    conf.write_text('[sparc]\nsandbox_require_seccomp = false\n')
    log = tmp_path / 'sparc.log'
    env = dict(os.environ, PYTHONPATH='%s:%s' % (no_seccomp, ROOT))
    out = os.path.join(sc.workdir, 'override.save')
    proc, report = _scrub_cli(sc, out, env, '--config-file', str(conf),
                              '--debug', '--log-file', str(log))
    assert proc.returncode == 0, proc.stderr
    with open(report) as f:
        rec = json.load(f)['sandbox']
    assert rec['seccomp'] == 'none'
    assert rec['root'] == 'empty' and rec['namespaces']
    assert 'seccomp none ([sparc] sandbox_require_seccomp is false)' in \
        log.read_text()
    os.unlink(out)
    os.unlink(report)


def test_real_scrub_reports_the_jail(sc):
    out = os.path.join(sc.workdir, 'jailed.save')
    rep = memory.scrub_checkpoint(sc.save_path, sc.selectors(), output=out,
                                  sandbox=sandbox.SandboxPolicy())
    os.unlink(out)
    assert rep.sandbox['seccomp'] == 'allow-list'
    assert rep.sandbox['root'] == 'empty'
    assert rep.sandbox['namespaces'] == ['user', 'mount', 'pid', 'ipc',
                                         'uts', 'net', 'cgroup']
    assert rep.sandbox['cap_eff'] == '0' * 16
    assert rep.sandbox['dumpable'] == 0 and rep.sandbox['nproc'] == 0
