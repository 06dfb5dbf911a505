"""The parsing sandbox: confinement, limits and result handling."""

import os

import pytest

from sparc_nova.engine import sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
POLICY = sandbox.SandboxPolicy(memory_bytes=512 * 1024 * 1024,
                               cpu_seconds=5, timeout=60)


@pytest.fixture(autouse=True)
def allow_test_targets(monkeypatch):
    monkeypatch.setattr(sandbox, 'ALLOWED_PREFIXES',
                        ('sparc_nova.', 'tests.'))
    monkeypatch.setenv('PYTHONPATH', ROOT)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / 'checkpoint.save'
    path.write_text('guest bytes')
    os.chmod(path, 0o600)
    return str(path)


root_only = pytest.mark.skipif(os.geteuid() != 0,
                               reason='privilege drop needs root')


@root_only
def test_child_is_confined(secret_file, tmp_path):
    other = tmp_path / 'other-root-file'
    other.write_text('x')
    os.chmod(other, 0o600)
    res = sandbox.run('sparc_nova.engine.sandbox_probe:confinement',
                      {'paths': [str(other), secret_file]},
                      {'checkpoint': secret_file}, POLICY)
    rec = res['_sandbox']
    assert rec['uid'] == 65534 and rec['gid'] == 65534
    assert rec['cap_eff'] == '0' * 16
    assert rec['no_new_privs'] is True
    # It reads the descriptor it was given...
    assert res['read_given_files'] == {'checkpoint': 11}
    # ...and nothing else, not even the same file by path: the root is
    # empty.
    assert res['open_shadow'].startswith('denied')
    assert all(v.startswith('denied') for v in res['open_paths'].values())
    assert res['connect'].startswith('denied')
    assert res['write_file'].startswith('denied')
    assert res['rlimit_fsize'] == 0
    # python3-seccomp (bindep) adds the allow-list.
    assert rec['seccomp'] == 'allow-list'
    assert res['rlimit_as'] >= 512 * 1024 * 1024


def test_reads_given_descriptors(secret_file):
    res = sandbox.run('tests.unit.engine.sandbox_targets:read_given', {},
                      {'a': secret_file}, POLICY)
    assert res['a'] == 'guest bytes'


def test_cpu_limit_kills(secret_file):
    sandbox_policy = sandbox.SandboxPolicy(cpu_seconds=1, timeout=60)
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run('tests.unit.engine.sandbox_targets:burn_cpu', {}, {},
                    sandbox_policy)
    assert 'killed by signal' in str(ei.value)


def test_wall_clock_timeout(secret_file):
    sandbox_policy = sandbox.SandboxPolicy(cpu_seconds=100, timeout=1)
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run('tests.unit.engine.sandbox_targets:burn_cpu', {}, {},
                    sandbox_policy)
    assert 'did not finish within' in str(ei.value)


def test_memory_limit(secret_file):
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run('tests.unit.engine.sandbox_targets:allocate',
                    {'mib': 2048}, {}, POLICY)
    assert 'MemoryError' in str(ei.value)


def test_result_size_cap():
    sandbox_policy = sandbox.SandboxPolicy(max_result=1000, timeout=60)
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run('tests.unit.engine.sandbox_targets:huge_result',
                    {'bytes': 5000}, {}, sandbox_policy)
    assert 'more than the 1000 bytes allowed' in str(ei.value)


def test_clear_error_passed_back():
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run('tests.unit.engine.sandbox_targets:clear_error', {}, {},
                    POLICY)
    assert str(ei.value) == 'guest kernel structure at 0x1000 is bogus'


def test_only_allowed_modules(monkeypatch):
    monkeypatch.setattr(sandbox, 'ALLOWED_PREFIXES', ('sparc_nova.',))
    with pytest.raises(sandbox.SandboxError):
        sandbox.run('os:system', {}, {}, POLICY)


def test_symlink_refused(secret_file, tmp_path):
    link = tmp_path / 'link'
    link.symlink_to(secret_file)
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run('tests.unit.engine.sandbox_targets:read_given', {},
                    {'a': str(link)}, POLICY)
    assert 'cannot open' in str(ei.value)


def test_cancel_kills_and_reaps_the_child():
    pending = sandbox.start('tests.unit.engine.sandbox_targets:burn_cpu',
                            {}, {}, POLICY)
    pending.cancel()
    assert pending._proc.returncode is not None


def test_cancel_without_the_right_to_signal(monkeypatch):
    """A caller that may not signal the child (it runs as another user)
    closes the pipes instead; cancel() itself never raises.
    """
    pending = sandbox.start('tests.unit.engine.sandbox_targets:huge_result',
                            {'bytes': 1 << 20}, {}, POLICY)
    proc = pending._proc

    def refuse():
        raise PermissionError(1, 'Operation not permitted')
    monkeypatch.setattr(pending, '_kill', lambda: False)
    pending.cancel()
    assert proc.stdout.closed and proc.stderr.closed
    # The child dies writing its result into the closed pipe.
    assert proc.wait(timeout=60) != 0


def test_unexpected_child_error_does_not_quote_its_message():
    """A crash of the child names its exception type, never its message
    (which may quote guest memory the child was parsing).
    """
    with pytest.raises(sandbox.SandboxError) as ei:
        sandbox.run('tests.unit.engine.sandbox_targets:crash_quoting',
                    {'guest_bytes': 'SPRCGUEST-SECRET'}, {}, POLICY)
    assert 'ValueError' in str(ei.value)
    assert 'SPRCGUEST' not in str(ei.value)


def test_child_reports_its_memory(secret_file):
    """The child's last line holds its own memory figures, which the
    parent keeps apart from the result (it is measured after the work,
    so it covers the memory the work held).
    """
    pending = sandbox.start('tests.unit.engine.sandbox_targets:hold_memory',
                            {'mib': 64}, {'checkpoint': secret_file}, POLICY)
    assert pending.pid is not None
    res = pending.result()
    assert res['held'] == 64 << 20
    assert set(res) == {'held', '_sandbox'}
    m = pending.memory
    assert m is not None
    # Its peak resident set covers the 64 MiB it wrote; its private
    # memory is no more than its resident set.
    assert m.peak_rss >= 64 << 20
    assert 0 < m.private <= m.rss <= m.peak_rss


def test_memory_line_is_checked():
    """Figures out of shape are dropped; a last line that is not the
    figures is left to the result's own checks.
    """
    split = sandbox._split_memory
    body = b'{}\n{"result": {}}'
    good = b'{"memory": {"rss": 10, "peak_rss": 20, "private": 5}}'
    assert split(body + b'\n' + good) == (body, sandbox.memstats.
                                          ProcessMemory(10, 20, 5))
    for bad in (b'{"memory": {"rss": -1, "peak_rss": 20, "private": 5}}',
                b'{"memory": {"rss": 1.5, "peak_rss": 20, "private": 5}}',
                b'{"memory": {"rss": 1, "peak_rss": 20}}',
                b'{"memory": [1, 2, 3]}', b'{"memory": not json'):
        assert split(body + b'\n' + bad) == (body, None)
    assert split(body) == (body, None)
    other = body + b'\n{"other": 1}'
    assert split(other) == (other, None)


def test_a_prestarted_child_serves_the_next_call(secret_file):
    """A child started ahead of time gets its files and request later,
    and serves one call: the next one starts a child of its own.
    """
    target = 'tests.unit.engine.sandbox_targets:read_given'
    sandbox.prestart(POLICY, (target,))
    spare = sandbox._SPARES[POLICY]
    pending = sandbox.start(target, {}, {'a': secret_file}, POLICY)
    assert pending.pid == spare.proc.pid
    assert pending.result()['a'] == 'guest bytes'
    assert POLICY not in sandbox._SPARES
    again = sandbox.start(target, {}, {'a': secret_file}, POLICY)
    assert again.pid != spare.proc.pid
    assert again.result()['a'] == 'guest bytes'


def test_a_spare_serves_only_its_own_policy(secret_file):
    target = 'tests.unit.engine.sandbox_targets:read_given'
    other = sandbox.SandboxPolicy(memory_bytes=256 * 1024 * 1024,
                                  cpu_seconds=5, timeout=60)
    sandbox.prestart(other, (target,))
    try:
        pending = sandbox.start(target, {}, {'a': secret_file}, POLICY)
        assert pending.pid != sandbox._SPARES[other].proc.pid
        assert pending.result()['a'] == 'guest bytes'
    finally:
        sandbox.discard_spares()


def test_a_dead_spare_is_replaced(secret_file):
    target = 'tests.unit.engine.sandbox_targets:read_given'
    sandbox.prestart(POLICY, (target,))
    spare = sandbox._SPARES[POLICY]
    spare.proc.kill()
    spare.proc.wait()
    pending = sandbox.start(target, {}, {'a': secret_file}, POLICY)
    assert pending.pid != spare.proc.pid
    assert pending.result()['a'] == 'guest bytes'


def test_discarded_spares_exit():
    sandbox.prestart(POLICY, ('tests.unit.engine.sandbox_targets:read_given',))
    spare = sandbox._SPARES[POLICY]
    sandbox.discard_spares()
    assert spare.proc.returncode is not None
    assert not sandbox._SPARES


def test_prestart_only_allowed_modules(monkeypatch):
    monkeypatch.setattr(sandbox, 'ALLOWED_PREFIXES', ('sparc_nova.',))
    with pytest.raises(sandbox.SandboxError):
        sandbox.prestart(POLICY, ('os:system',))
    with pytest.raises(sandbox.SandboxError):
        sandbox.prestart(POLICY, (), 'os:getcwd')
    assert not sandbox._SPARES


def test_no_spare_without_the_sandbox():
    sandbox.prestart(sandbox.SandboxPolicy(enabled=False),
                     ('tests.unit.engine.sandbox_targets:read_given',))
    assert not sandbox._SPARES


def test_a_kept_spare_is_started_again_after_each_call(secret_file):
    """A long-lived process that keeps a spare finds one waiting for
    each call: a new child is started when a call's child has ended.
    """
    target = 'tests.unit.engine.sandbox_targets:read_given'
    sandbox.keep_spare(POLICY, (target,))
    try:
        used = set()
        for _ in range(3):
            spare = sandbox._SPARES[POLICY]
            pending = sandbox.start(target, {}, {'a': secret_file}, POLICY)
            assert pending.pid == spare.proc.pid not in used
            used.add(pending.pid)
            assert pending.result()['a'] == 'guest bytes'
        assert POLICY in sandbox._SPARES
        sandbox.keep_spare(POLICY, (target,))
        assert sandbox._SPARES[POLICY].proc.pid not in used
    finally:
        sandbox.discard_spares()
    assert not sandbox._SPARES and not sandbox._KEPT


def test_a_new_kept_policy_lets_the_old_spare_go():
    """A daemon whose configuration changed keeps one spare, for the new
    policy: the old one would never be used again.
    """
    target = 'tests.unit.engine.sandbox_targets:read_given'
    other = sandbox.SandboxPolicy(memory_bytes=256 * 1024 * 1024,
                                  cpu_seconds=5, timeout=60)
    try:
        sandbox.keep_spare(POLICY, (target,))
        old = sandbox._SPARES[POLICY]
        sandbox.keep_spare(other, (target,))
        assert set(sandbox._SPARES) == {other}
        assert set(sandbox._KEPT) == {other}
        assert old.proc.returncode is not None
    finally:
        sandbox.discard_spares()


def test_child_ends_without_tearing_the_interpreter_down():
    """The child flushes its whole result and exits at once: no exit hook
    runs after the result (freeing a large plan's objects one by one took
    longer than the parent's parse of it).
    """
    res = sandbox.run('tests.unit.engine.sandbox_targets:result_then_atexit',
                      {'bytes': 3 << 20}, {}, POLICY)
    assert res['junk'] == 'y' * (3 << 20)
