"""The sandbox child is a jail: hostile children, each run in the real
jail, are refused or killed, and the parent stays within its limits.
"""

import ctypes
import os
import resource
import shutil
import tempfile
import time

import pytest

from sparc_nova.engine import sandbox
from sparc_nova.engine import sandbox_jail

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
POLICY = sandbox.SandboxPolicy(memory_bytes=512 * 1024 * 1024,
                               cpu_seconds=20, timeout=60,
                               max_result=16 * 1024 * 1024)
T = 'tests.unit.engine.jail_targets:'


@pytest.fixture(autouse=True)
def allow_test_targets(monkeypatch):
    monkeypatch.setattr(sandbox, 'ALLOWED_PREFIXES',
                        ('sparc_nova.', 'tests.'))
    monkeypatch.setenv('PYTHONPATH', ROOT)


def _refused_or_killed(entry, args=None):
    """Run a hostile child: it must be killed or its attack answered
    with an error; returns what happened, for the message.
    """
    try:
        res = sandbox.run(T + entry, args or {}, {}, POLICY)
    except sandbox.SandboxError as e:
        return str(e)
    assert res.get('answered', 0) < 0, res
    assert not res.get('stolen'), res
    return 'refused: errno %s' % res.get('errno')


def test_confinement_record():
    res = sandbox.run('sparc_nova.engine.sandbox_probe:confinement', {}, {},
                      POLICY)
    rec = res['_sandbox']
    assert rec['namespaces'] == list(sandbox_jail.NAMESPACES)
    assert rec['root'] == 'empty'
    assert rec['seccomp'] == 'allow-list'
    assert rec['cap_eff'] == '0' * 16
    assert rec['no_new_privs'] is True
    assert rec['dumpable'] == 0 and res['dumpable'] == 0
    assert rec['nproc'] == 0 and res['rlimit_nproc'] == 0
    assert rec['landlock_abi'] >= 1
    assert res['list_root'].startswith('denied')


def test_world_readable_host_file_is_not_there(tmp_path):
    host = tmp_path / 'host-file'
    host.write_text('host secret')
    os.chmod(host, 0o644)
    os.chmod(tmp_path, 0o755)
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run(T + 'open_host_file', {'path': str(host)}, {}, POLICY)
    # The child's error names only its type (its message could quote
    # guest data): the file is not there.
    assert 'FileNotFoundError' in str(ei.value)
    assert 'host secret' not in str(ei.value)


def test_process_vm_readv_on_the_parent_is_killed():
    secret = ctypes.create_string_buffer(b'parent secret' * 4)
    msg = _refused_or_killed('read_parent_memory', {
        'pid': os.getpid(), 'address': ctypes.addressof(secret)})
    assert 'seccomp' in msg


def test_new_user_namespace_is_killed():
    assert 'seccomp' in _refused_or_killed('new_user_namespace')
    assert 'seccomp' in _refused_or_killed('clone_new_user')


def test_io_uring_is_killed():
    assert 'seccomp' in _refused_or_killed('io_uring')


def test_fork_is_killed():
    assert 'seccomp' in _refused_or_killed('fork_many')


def test_output_flood_is_killed_while_read():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run(T + 'flood_output', {}, {}, POLICY)
    assert 'wrote more than the %d bytes allowed and was killed' \
        % POLICY.max_result in str(ei.value)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    # ru_maxrss is in KiB: the parent kept at most the cap (and a read).
    assert grown < 2 * POLICY.max_result // 1024, grown
    assert time.monotonic() - start < 30


def test_deep_json_is_refused():
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run(T + 'deep_json', {}, {}, POLICY)
    assert 'nested more than %d deep' % sandbox.MAX_DEPTH in str(ei.value)


@pytest.fixture
def no_seccomp(monkeypatch):
    """python3-seccomp missing: a seccomp module that cannot be imported
    comes first on the child's path (in a directory the sandbox user can
    read).
    """
    path = tempfile.mkdtemp(prefix='sparc-no-seccomp-')
    os.chmod(path, 0o755)
    with open(os.path.join(path, 'seccomp.py'), 'w') as f:
        f.write('raise ImportError("missing")\n')
    os.chmod(os.path.join(path, 'seccomp.py'), 0o644)
    monkeypatch.setenv('PYTHONPATH', '%s:%s' % (path, ROOT))
    yield
    shutil.rmtree(path)


def test_seccomp_missing_refuses(no_seccomp):
    with pytest.raises(sandbox.ReportedError) as ei:
        sandbox.run('sparc_nova.engine.sandbox_probe:confinement', {}, {},
                    POLICY)
    assert 'seccomp is not available' in str(ei.value)
    assert 'sandbox_require_seccomp = false' in str(ei.value)


def test_seccomp_missing_with_the_override_runs_and_says_so(
        no_seccomp, caplog):
    policy = sandbox.SandboxPolicy(memory_bytes=512 * 1024 * 1024,
                                   timeout=60, require_seccomp=False)
    res = sandbox.run('sparc_nova.engine.sandbox_probe:confinement', {}, {},
                      policy)
    assert res['_sandbox']['seccomp'] == 'none'
    assert res['_sandbox']['root'] == 'empty'
    assert 'seccomp none ([sparc] sandbox_require_seccomp is false)' in \
        caplog.text
