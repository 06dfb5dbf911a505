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


def _as_sandbox_user(code: str, timeout: float = 60):
    """Run ``code`` in a new Python as the sandbox user (the attacker: a
    host process of the same user, such as another service running as
    ``nobody``); its stdout and stderr.
    """
    import subprocess
    import sys

    res = subprocess.run(
        ['setpriv', '--reuid=%s' % POLICY.user, '--regid=%s' % POLICY.group,
         '--clear-groups', '--', sys.executable, '-c', code],
        capture_output=True, text=True, timeout=timeout, cwd='/',
        env={'PYTHONPATH': ROOT, 'PATH': os.environ.get('PATH', ''),
             **sandbox.CHILD_ENV})
    return res.stdout, res.stderr


_ATTACH = '''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for pid in map(int, sys.argv[1:]):
    r = libc.ptrace(16, pid, 0, 0)      # PTRACE_ATTACH
    print(pid, 'attached' if r == 0 else os.strerror(ctypes.get_errno()))
'''


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to switch users')
def test_a_waiting_child_cannot_be_attached_by_its_own_user():
    """A child started ahead waits for its request for as long as its
    caller likes; a process of the sandbox user must not be able to
    attach to it (and later take its descriptors and guest data).
    """
    sandbox.prestart(POLICY, ('sparc_nova.engine.sandbox_probe:confinement',))
    try:
        waiter = sandbox._SPARES[POLICY].proc.pid
        deadline = time.monotonic() + 30
        while True:
            with open('/proc/%d/task/%d/children' % (waiter, waiter)) as f:
                workers = f.read().split()
            if workers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert workers, 'the child did not fork its worker'
        out, err = _as_sandbox_user(
            _ATTACH.replace('sys.argv[1:]', repr([waiter] + [
                int(w) for w in workers])))
        assert err == ''
        assert 'attached' not in out
        assert out.count('Operation not permitted') == 1 + len(workers)
    finally:
        sandbox.discard_spares()


_TRACE_THE_CHILD = '''
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:
    libc.ptrace(0, 0, 0, 0)             # PTRACE_TRACEME
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.execv(sys.executable,
             [sys.executable, '-m', 'sparc_nova.engine.sandbox_child'])
while True:
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        print('exit', os.WEXITSTATUS(status))
        break
    if os.WIFSIGNALED(status):
        print('signal', os.WTERMSIG(status))
        break
    sig = os.WSTOPSIG(status)
    libc.ptrace(7, pid, 0, 0 if sig == signal.SIGTRAP else sig)  # CONT
'''


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to switch users')
def test_a_child_traced_by_its_own_user_refuses_to_run():
    """A process of the sandbox user that attached before the child made
    itself not dumpable (it started the child traced) is found, and the
    child stops before it imports anything or takes a request.
    """
    out, err = _as_sandbox_user(_TRACE_THE_CHILD)
    assert 'traced by process' in err
    assert out.strip() == 'exit 1'


def test_tracer_fields():
    status = 'Name:\tpython\nTracerPid:\t0\nUid:\t65534\t65534\t65534\t65534\n'
    assert sandbox_jail.tracer(status) == (0, 65534)
    assert sandbox_jail.tracer('TracerPid:\t4242\n') == (4242, None)
