"""The privileged scrub: its context, its path checks, its rootwrap filter.

The entry point is called in-process here (client mode off); a real
daemon runs it in tests/functional.
"""

import os
import sys
from unittest import mock

from oslo_config import cfg
from oslo_privsep import capabilities
from oslo_rootwrap import wrapper
import pytest

from sparc_nova.checkpoint import libvirt_save
from sparc_nova import conf
from sparc_nova.engine import memory
from sparc_nova.engine import sandbox
from sparc_nova import exception
from sparc_nova import privsep
from sparc_nova.privsep import checkpoint as privsep_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FILTERS_DIR = os.path.join(REPO, 'etc', 'sparc-nova', 'rootwrap.d')
SOCK = '/tmp/tmpab12_x9z/privsep.sock'


@pytest.fixture
def save_dir(tmp_path):
    path = tmp_path / 'save'
    path.mkdir()
    conf.CONF.set_override('managed_save_dir', str(path), group='sparc')
    conf.CONF.set_override('journal_dir', str(tmp_path / 'journals'),
                           group='sparc')
    yield path
    conf.CONF.clear_override('managed_save_dir', group='sparc')
    conf.CONF.clear_override('journal_dir', group='sparc')


@pytest.fixture
def in_process():
    privsep.scrub_pctxt.set_client_mode(False)
    yield
    privsep.scrub_pctxt.set_client_mode(True)


@pytest.fixture
def memory_engine():
    """The memory engine's scrub_checkpoint, replaced by a mock."""
    with mock.patch.object(memory, 'scrub_checkpoint', autospec=True) as m:
        m.return_value.summary.return_value = ('1 process excluded, 10 '
                                               'pages scrubbed')
        m.return_value.to_dict.return_value = {'pages': 10}
        yield m


def save_file(path, compressed=0):
    """A libvirt save image header (the engine is mocked: no stream)."""
    xml = b'<domain/>\0'
    path.write_bytes(libvirt_save.HEADER.pack(
        libvirt_save.MAGIC, 2, len(xml), 1, compressed, 0, *[0] * 14) + xml)
    return path


def test_context_keeps_only_what_it_needs():
    # Reading and replacing root's files; switching the programs it runs
    # to the sandbox user before they exec; killing its sandbox child.
    assert privsep.scrub_pctxt.pypath == 'sparc_nova.privsep.scrub_pctxt'
    assert conf.CONF.sparc_privsep.capabilities == [
        capabilities.CAP_DAC_OVERRIDE, capabilities.CAP_DAC_READ_SEARCH,
        capabilities.CAP_FOWNER, capabilities.CAP_KILL,
        capabilities.CAP_SETUID, capabilities.CAP_SETGID]
    assert privsep.scrub_pctxt.is_entrypoint(
        privsep_checkpoint.scrub_managed_save)


def test_list_opts():
    [(group, opts)] = privsep.list_opts()
    assert group == 'sparc_privsep'
    assert {'capabilities', 'helper_command', 'user'} <= {o.name
                                                          for o in opts}


def test_managed_save_file_accepts_a_save_file(save_dir):
    path = save_dir / 'instance-00000001.save'
    path.write_bytes(b'x')
    assert privsep_checkpoint.managed_save_file(
        str(path), 'instance-00000001') == str(path)


@pytest.mark.parametrize('name, message', [
    ('../instance-00000001.save', 'not a managed-save file in'),
    ('instance-00000001.xml', 'not a managed-save file in'),
    ('missing.save', 'no such managed-save file'),
    ('link.save', 'not a regular file'),
    ('dir.save', 'not a regular file'),
])
def test_managed_save_file_refusals(save_dir, name, message):
    (save_dir.parent / 'instance-00000001.save').write_bytes(b'x')
    (save_dir / 'instance-00000001.xml').write_bytes(b'x')
    os.symlink('/etc/shadow', save_dir / 'link.save')
    (save_dir / 'dir.save').mkdir()
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError) as e:
        privsep_checkpoint.managed_save_file(str(save_dir / name),
                                             name.rsplit('.', 1)[0])
    assert message in str(e.value)


@pytest.mark.parametrize('instance_name', [
    'instance-00000002', '../save/instance-00000001', '', '.save',
    'instance-00000001.save'])
def test_managed_save_file_of_another_instance_refused(save_dir,
                                                       instance_name):
    path = save_dir / 'instance-00000001.save'
    path.write_bytes(b'x')
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError) as e:
        privsep_checkpoint.managed_save_file(str(path), instance_name)
    assert 'not the managed-save file of instance' in str(e.value)


@pytest.mark.parametrize('setup, message', [
    (lambda p: os.chmod(p, 0o620), 'writable by the owner only'),
    (lambda p: os.chmod(p, 0o602), 'writable by the owner only'),
    (lambda p: os.chown(p, 1000, 0), 'owner 1000'),
    (lambda p: os.link(p, str(p) + '.other'), '2 hard links'),
    (lambda p: os.chmod(os.path.dirname(p), 0o777), 'writable by others'),
])
def test_managed_save_file_owner_and_mode(save_dir, setup, message):
    path = save_dir / 'instance-00000001.save'
    path.write_bytes(b'x')
    os.chmod(path, 0o600)
    if os.geteuid() != 0 and 'owner' in message:
        pytest.skip('chown needs root')
    setup(path)
    try:
        with pytest.raises(privsep_checkpoint.PrivilegedScrubError) as e:
            privsep_checkpoint.managed_save_file(str(path),
                                                 'instance-00000001')
        assert message in str(e.value)
    finally:
        os.chmod(save_dir, 0o755)


def scrub(path, selectors=('x',), exclude_paths=(), follow_ipc=True,
          scrub_free_memory=True, instance_name='instance-00000001'):
    """The entry point, called with keywords as the driver does."""
    return privsep_checkpoint.scrub_managed_save(
        path=path, instance_name=instance_name, selectors=selectors,
        exclude_paths=exclude_paths, follow_ipc=follow_ipc,
        scrub_free_memory=scrub_free_memory)


@pytest.mark.parametrize('args', [
    (b'/x/instance-00000001.save', ['x'], [], True, True, 'i'),
    ('/x/instance-00000001.save', 'vault', [], True, True, 'i'),
    ('/x/instance-00000001.save', [1], [], True, True, 'i'),
    ('/x/instance-00000001.save', ['x'], None, True, True, 'i'),
    ('/x/instance-00000001.save', ['x'], [], 1, True, 'i'),
    ('/x/instance-00000001.save', ['x'], [], True, 'no', 'i'),
    ('/x/instance-00000001.save', ['x'], [], True, True, None),
])
def test_entry_point_takes_primitives_only(save_dir, in_process,
                                           memory_engine, args):
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError) as e:
        scrub(*args)
    assert 'arguments are not' in str(e.value)
    assert memory_engine.call_count == 0


def test_relative_path_refused(save_dir):
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError):
        privsep_checkpoint.managed_save_file('instance-00000001.save',
                                             'instance-00000001')


def test_entry_point_scrubs_in_place(save_dir, in_process, memory_engine):
    path = save_file(save_dir / 'instance-00000001.save')
    result = scrub(str(path), ('vault', 'pid:42'), ('/srv/**',),
                   follow_ipc=False, scrub_free_memory=False)
    assert result == {'summary': '1 process excluded, 10 pages scrubbed',
                      'report': {'pages': 10}}
    args, kwargs = memory_engine.call_args
    assert args == (str(path), ['vault', 'pid:42'])
    # The write mode is decided once (write_mode.choose) and handed over.
    assert kwargs['write'].in_place is True
    assert kwargs['write'].source == kwargs['write'].target == str(path)
    assert 'in_place' not in kwargs and 'output' not in kwargs
    assert kwargs['scrub_free_memory'] is False
    assert kwargs['follow_ipc'] is False
    assert kwargs['exclude_paths'] == ['/srv/**']
    assert kwargs['work_dir'] is None
    assert callable(kwargs['progress'])
    assert kwargs['limits'].max_guest_ram == 1024 * 1024 ** 3
    # The engine is handed its configuration; it reads none itself.
    assert kwargs['sandbox'] == sandbox.SandboxPolicy.from_conf(conf.CONF)
    assert kwargs['buildid_cache_dir'] == conf.CONF.sparc.buildid_cache_dir


def test_entry_point_keeps_a_sandbox_child_ready(
        save_dir, in_process, memory_engine, monkeypatch):
    """The daemon keeps a spare sandbox child for the scrubs to come
    (``[sparc] sandbox_spare``), with the scrub's own policy; none when
    the option is off.
    """
    from sparc_nova.engine import sandbox_calls
    from sparc_nova.engine import sandboxed_plan

    kept = []
    monkeypatch.setattr(sandbox, 'keep_spare',
                        lambda *a: kept.append(a))
    path = save_file(save_dir / 'instance-00000001.save')
    scrub(str(path))
    policy = memory_engine.call_args[1]['sandbox']
    assert kept == [(policy, (sandboxed_plan.PLAN_ENTRY,),
                     sandbox_calls.PREPARE_ENTRY)]
    conf.CONF.set_override('sandbox_spare', False, group='sparc')
    try:
        scrub(str(path))
    finally:
        conf.CONF.clear_override('sandbox_spare', group='sparc')
    assert len(kept) == 1


def test_entry_point_takes_keywords_only(save_dir, in_process,
                                         memory_engine):
    path = save_file(save_dir / 'instance-00000001.save')
    with pytest.raises(TypeError):
        privsep_checkpoint.scrub_managed_save(
            str(path), ['vault'], [], True, True, 'instance-00000001')
    assert memory_engine.call_count == 0


def test_entry_point_hands_the_configured_sandbox_over(
        save_dir, in_process, memory_engine):
    path = save_file(save_dir / 'instance-00000001.save')
    conf.CONF.set_override('sandbox_enabled', False, group='sparc')
    conf.CONF.set_override('buildid_cache_dir', '/srv/kernels',
                           group='sparc')
    try:
        scrub(str(path))
    finally:
        conf.CONF.clear_override('sandbox_enabled', group='sparc')
        conf.CONF.clear_override('buildid_cache_dir', group='sparc')
    kwargs = memory_engine.call_args[1]
    assert kwargs['sandbox'].enabled is False
    assert kwargs['buildid_cache_dir'] == '/srv/kernels'


@pytest.mark.skipif(os.geteuid() != 0, reason='chown needs root')
@pytest.mark.parametrize('journal_dir', [True, False])
def test_entry_point_keeps_the_journal_where_root_alone_writes(
        save_dir, in_process, memory_engine, journal_dir):
    # Debian's managed-save directory belongs to libvirt-qemu: a journal
    # there could be tampered with by the QEMU user, so it is kept in
    # [sparc] journal_dir; without one the file is replaced instead of
    # patched in place.
    if not journal_dir:
        conf.CONF.set_override('journal_dir', '', group='sparc')
    path = save_file(save_dir / 'instance-00000001.save')
    os.chmod(path, 0o600)
    os.chown(save_dir, 64055, 64055)
    try:
        scrub(str(path), ['vault'])
    finally:
        os.chown(save_dir, 0, 0)
    write = memory_engine.call_args[1]['write']
    if journal_dir:
        assert (write.in_place, write.journal_dir) == (
            True, conf.CONF.sparc.journal_dir)
    else:
        assert (write.in_place, write.journal_dir) == (False, None)


def test_entry_point_passes_the_journal_key(save_dir, in_process,
                                            memory_engine):
    path = save_file(save_dir / 'instance-00000001.save')
    scrub(str(path), ['vault'])
    assert memory_engine.call_args[1]['write'].journal_key == \
        conf.CONF.sparc.journal_key_file


def test_sweep_leftovers_sweeps_the_configured_directories(
        save_dir, in_process, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    for d in (save_dir, work):
        (d / '.sparc-stream-999999999-abc').write_bytes(b'guest RAM')
        (d / ('.sparc-stream-%d-abc' % os.getpid())).write_bytes(b'mine')
    conf.CONF.set_override('work_dir', str(work), group='sparc')
    try:
        reports = privsep_checkpoint.sweep_leftovers()
    finally:
        conf.CONF.clear_override('work_dir', group='sparc')
    assert [r['directory'] for r in reports] == [str(save_dir), str(work)]
    for r, d in zip(reports, (save_dir, work)):
        assert r['removed'] == [str(d / '.sparc-stream-999999999-abc')]
        assert os.listdir(d) == ['.sparc-stream-%d-abc' % os.getpid()]


def test_entry_point_replaces_compressed_images(save_dir, in_process,
                                                memory_engine):
    path = save_file(save_dir / 'instance-00000001.save', compressed=1)
    scrub(str(path), ['vault'])
    write = memory_engine.call_args[1]['write']
    assert write.in_place is False
    assert write.compression == 1
    assert write.target == str(path)


def test_entry_point_refuses_what_is_not_a_save_image(save_dir, in_process,
                                                      memory_engine):
    path = save_dir / 'instance-00000001.save'
    path.write_bytes(b'x' * 100)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError) as e:
        scrub(str(path))
    assert 'CheckpointFormatError' in str(e.value)
    assert 'not a libvirt save image' in str(e.value)
    assert memory_engine.call_count == 0


def test_entry_point_refuses_other_files(save_dir, in_process,
                                         memory_engine):
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError) as e:
        scrub('/etc/shadow', instance_name='shadow')
    assert 'not a managed-save file' in str(e.value)
    assert memory_engine.call_count == 0


def test_engine_errors_cross_the_channel_as_one_message(save_dir, in_process,
                                                        memory_engine):
    path = save_file(save_dir / 'instance-00000001.save')
    memory_engine.side_effect = exception.CheckpointFormatError(
        str(path), 'bad magic', offset=0)
    with pytest.raises(privsep_checkpoint.PrivilegedScrubError) as e:
        scrub(str(path))
    assert str(e.value) == ('CheckpointFormatError: %s: at offset 0: bad '
                            'magic' % path)
    # oslo.privsep rebuilds the exception from its class and args.
    rebuilt = type(e.value)(*e.value.args)
    assert str(rebuilt) == str(e.value)


DAEMON_SANDBOX = """
import json, sys
from oslo_privsep import capabilities
from sparc_nova.engine import sandbox
from sparc_nova import privsep
from sparc_nova import unprivileged
if sys.argv[2] == 'locked':
    unprivileged.lock_down()
caps = list(privsep.CAPABILITIES)
capabilities.drop_all_caps_except(caps, caps, [])
print(json.dumps(sandbox.run('sparc_nova.engine.sandbox_probe:confinement',
                             {}, {'given': sys.argv[1]})))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root, as the daemon')
@pytest.mark.parametrize('daemon', ['locked', 'unlocked'])
def test_sandbox_drops_privileges_from_the_daemons_capabilities(tmp_path,
                                                                daemon):
    # The daemon keeps uid 0 with only its capabilities and, locked down,
    # gains nothing at exec (so setpriv cannot switch users for it); the
    # sandbox child it starts for the memory engine must still end up as
    # nobody with no capabilities. Unlocked: the CLI run as root.
    import json
    import subprocess
    given = tmp_path / 'instance-00000001.save'
    given.write_bytes(b'checkpoint')
    os.chmod(given, 0o600)
    res = subprocess.run([sys.executable, '-c', DAEMON_SANDBOX, str(given),
                          daemon], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=REPO))
    probe = json.loads(res.stdout)
    assert probe['_sandbox']['uid'] == 65534
    assert probe['_sandbox']['cap_eff'] == '0' * 16
    assert probe['_sandbox']['root'] == 'empty'
    assert probe['read_given_files'] == {'given': 10}
    assert probe['open_shadow'].startswith('denied')


DAEMON_KILLS_CHILD = """
import sys, time
from oslo_privsep import capabilities
from sparc_nova.engine import sandbox
from sparc_nova import privsep
sandbox.ALLOWED_PREFIXES = ('sparc_nova.', 'tests.')
caps = list(privsep.CAPABILITIES)
capabilities.drop_all_caps_except(caps, caps, [])
pending = sandbox.start('tests.unit.engine.sandbox_targets:burn_cpu', {}, {},
                        sandbox.SandboxPolicy(cpu_seconds=100, timeout=60))
time.sleep(1)
start = time.monotonic()
pending.cancel()
print(pending._proc.returncode, time.monotonic() - start)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root, as the daemon')
def test_daemon_kills_its_sandbox_child():
    # With only the daemon's capabilities, cancel() kills the child (which
    # runs as the sandbox user) at once instead of leaving it to spin.
    import subprocess
    res = subprocess.run([sys.executable, '-c', DAEMON_KILLS_CHILD],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    code, seconds = res.stdout.split()
    assert int(code) == -9
    assert float(seconds) < 5


# -- rootwrap --------------------------------------------------------------


def helper_command(config_files, config_dirs=None):
    """The command our context asks the root helper to run for a
    nova-compute started with these files.
    """
    with mock.patch.object(cfg.CONF, 'config_file', config_files,
                           create=True), \
            mock.patch.object(cfg.CONF, 'config_dir', config_dirs,
                              create=True):
        command = privsep.scrub_pctxt.helper_command(SOCK)
    return command[command.index('privsep-helper'):]


def our_filters():
    return [f for f in wrapper.load_filters([FILTERS_DIR])
            if f.name.startswith('sparc-')]


def match(command):
    """The filter of ours that admits ``command`` (rootwrap tries filters
    in order and ours come first), or NoFilterMatched.
    """
    exec_dir = os.path.dirname(sys.executable)
    assert os.path.exists(os.path.join(exec_dir, 'privsep-helper'))
    return wrapper.match_filter(our_filters(), command,
                                exec_dirs=[exec_dir])


def test_rootwrap_always_admits_privsep_helper():
    # oslo.rootwrap adds a filter admitting privsep-helper with any
    # arguments after the filter files' own; the daemon's capability set
    # and the entry point's own checks are what bound it.
    names = [f.name for f in wrapper.load_filters([FILTERS_DIR])]
    assert names == ['sparc-privsep-scrub', 'sparc-privsep-scrub-2',
                     'sparc-privsep-scrub-dir', 'privsep-helper']


@pytest.mark.parametrize('files, dirs', [
    (['/etc/nova/nova.conf'], None),
    (['/etc/nova/nova.conf', '/etc/nova/nova-cpu.conf'], None),
    (['/etc/nova/nova.conf'], ['/etc/nova/nova.conf.d']),
])
def test_rootwrap_allows_the_helper_command(files, dirs):
    command = helper_command(files, dirs)
    assert command[-4:] == ['--privsep_context',
                            'sparc_nova.privsep.scrub_pctxt',
                            '--privsep_sock_path', SOCK]
    assert command.count('--config-file') == len(files)
    assert match(command).name.startswith('sparc-privsep-scrub')


@pytest.mark.parametrize('command', [
    # another context
    ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
     '--privsep_context', 'nova.privsep.sys_admin_pctxt',
     '--privsep_sock_path', SOCK],
    # a configuration file outside /etc, or escaping it
    ['privsep-helper', '--config-file', '/tmp/evil.conf',
     '--privsep_context', 'sparc_nova.privsep.scrub_pctxt',
     '--privsep_sock_path', SOCK],
    ['privsep-helper', '--config-file', '/etc/nova/../../tmp/evil.conf',
     '--privsep_context', 'sparc_nova.privsep.scrub_pctxt',
     '--privsep_sock_path', SOCK],
    # a socket anywhere else
    ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
     '--privsep_context', 'sparc_nova.privsep.scrub_pctxt',
     '--privsep_sock_path', '/tmp/../etc/privsep.sock'],
    ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
     '--privsep_context', 'sparc_nova.privsep.scrub_pctxt',
     '--privsep_sock_path', '/var/run/x.sock'],
    # extra arguments
    ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
     '--privsep_context', 'sparc_nova.privsep.scrub_pctxt',
     '--privsep_sock_path', SOCK, '--debug'],
])
def test_rootwrap_refuses_other_commands(command):
    with pytest.raises(wrapper.NoFilterMatched):
        match(command)
