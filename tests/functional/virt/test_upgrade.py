"""Upgrading a compute node with suspended servers: what the previous
release left on disk is resumed, or discarded when it may hold
unscrubbed memory, by this one.

The previous release is :data:`PREVIOUS_RELEASE`, taken from this
repository's history with ``git archive`` (the project has no release
tags; that commit is the last one of the 2026-11-27 line of work, the
state before the managed-save records, the authenticated journal
(version 3) and the leftover sweep at start). Its code really runs:

- the suspend: :mod:`.suspend_with` runs as a script with the previous
  release's tree first on ``sys.path``: its SparcLibvirtDriver, loaded
  through the ``sparc_libvirt`` shim, suspends a real TCG guest and its
  own privsep daemon scrubs the managed save in place. Then this
  release's driver starts (``init_host``: its leftover sweep and its
  check for unfinished scrubs, through this release's daemon) and
  libvirt restores the managed save, which is what Nova's resume does
  (the driver does not change resume). This runs the real guest and the
  real daemons of both releases; the Nova API and database are left out
  (a suspend keeps no sparc-nova state there), which is why this is not
  a Nova harness test (its fake libvirt writes no managed save) nor an
  e2e one (the test cloud costs minutes more and would run the same
  code).
- an in-place scrub of the previous release killed after its journal
  (version 2) was written: this release's sweep refuses that journal,
  and the save is then discarded as unfinished instead of resumed.
- the configuration: every option of the previous release is still
  read by this one.
"""

import json
import os
import random
import subprocess
import sys
from unittest import mock

import pytest

from tests.functional.engine import scenario
from tests.functional.virt import guest_checks
from tests.functional.virt import instances

pytestmark = pytest.mark.slow

#: The previous release: the last commit of the 2026-11-27 work.
PREVIOUS_RELEASE = 'ca9217fb93d020d7243db52aa4eb3727b4d7401a'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'suspend_with.py')


@pytest.fixture(scope='module')
def previous_release(module_dir):
    """The previous release's ``sparc_nova`` package, extracted from git;
    the directory to put first on ``sys.path``.
    """
    if subprocess.run(['git', '-C', ROOT, 'rev-parse', '--git-dir'],
                      capture_output=True).returncode:
        pytest.skip('not a git checkout: the previous release is taken '
                    'from its history')
    if not _has_commit(PREVIOUS_RELEASE):
        # A shallow clone: fetch that one commit from where it came from,
        # if that can be reached; else say why nothing was tested.
        subprocess.run(['git', '-C', ROOT, 'fetch', '--quiet', '--depth=1',
                        'origin', PREVIOUS_RELEASE], capture_output=True,
                       timeout=120)
        if not _has_commit(PREVIOUS_RELEASE):
            pytest.skip('the previous release %s is not in this clone\'s '
                        'history (shallow clone, origin unreachable)'
                        % PREVIOUS_RELEASE)
    dest = os.path.join(module_dir, 'previous-release')
    os.makedirs(dest, exist_ok=True)
    archive = subprocess.run(
        ['git', '-C', ROOT, 'archive', PREVIOUS_RELEASE, 'sparc_nova'],
        capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', dest], input=archive, check=True)
    return dest


def _has_commit(commit: str) -> bool:
    return subprocess.run(
        ['git', '-C', ROOT, 'cat-file', '-e', commit + '^{commit}'],
        capture_output=True).returncode == 0


def run_previous(previous_release, *args, stdin=None):
    """Run Python with the previous release first on ``sys.path`` (this
    tree after it, for the test helpers); its stdout.
    """
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([previous_release, ROOT]))
    # (cwd: ``python -c`` puts the working directory first on sys.path.)
    done = subprocess.run([sys.executable, *args], input=stdin, env=env,
                          cwd=previous_release, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def ours(directory, instance_name):
    """Files of ``instance_name`` in ``directory`` (its save, a record, a
    journal, a temporary).
    """
    return sorted(n for n in os.listdir(directory)
                  if n.startswith(instance_name + '.') or
                  n.startswith('.' + instance_name + '.'))


def test_suspended_under_the_previous_release_resumes_under_this_one(
        previous_release, make_guest, guest_image, module_dir, nova,
        driver):
    from nova import objects
    from nova.virt.libvirt import driver as libvirt_driver
    from sparc_nova.privsep import checkpoint as privsep_checkpoint

    instance_id = random.randint(0x10000000, 0x7fffffff)
    name = nova.instance_name_template % instance_id
    g = make_guest(name=name)
    metadata = {'sparc:exclude_processes': 'vault',
                'sparc:scrub_free_memory': 'false'}
    instance = instances.nova_instance(instance_id, g.dom.UUIDString(),
                                       metadata)
    pids = guest_checks.start_processes(g)
    save_path = driver.managed_save_path(instance)
    save_dir = os.path.dirname(save_path)

    # The previous release suspends (and nova-compute stops).
    result_file = os.path.join(module_dir, 'previous-suspend.json')
    run_previous(previous_release, SCRIPT, stdin=json.dumps({
        'overrides': instances.nova_overrides(module_dir),
        'instance_id': instance_id, 'uuid': instance.uuid,
        'metadata': metadata, 'result': result_file}))
    with open(result_file) as f:
        previous = json.load(f)
    assert previous['sparc_nova'].startswith(previous_release + os.sep)
    assert previous['driver'].startswith(previous_release + os.sep)
    assert len(previous['summaries']) == 1
    assert g.dom.hasManagedSaveImage(0) and not g.dom.isActive()
    assert guest_checks.in_memory(save_path, guest_image.marker(1)) == 0
    assert guest_checks.in_memory(save_path, guest_image.marker(4)) > 0
    assert ours(save_dir, name) == [name + '.save']
    digest = scenario.sha256(save_path)

    # This release starts: its sweep and its check for unfinished
    # scrubs run through its daemon (Nova's own start checks are
    # Nova's). The database knows the instance on this host.
    sweeps, pending = [], []
    real_sweep = privsep_checkpoint.sweep_leftovers
    real_pending = privsep_checkpoint.pending_managed_saves
    # (autospec: the driver's check of Nova's internals reads its
    # signature.)
    with mock.patch.object(libvirt_driver.LibvirtDriver, 'init_host',
                           autospec=True) as nova_init_host, \
            mock.patch.object(privsep_checkpoint, 'sweep_leftovers',
                              lambda: sweeps.extend(real_sweep()) or
                              sweeps), \
            mock.patch.object(privsep_checkpoint, 'pending_managed_saves',
                              lambda: pending.extend(real_pending()) or
                              pending), \
            mock.patch.object(objects.InstanceList, 'get_by_host',
                              return_value=[instance]):
        driver.init_host('compute')
    nova_init_host.assert_called_once_with(driver, 'compute')
    save_dirs = [r['directory'] for r in sweeps][:1]
    assert save_dirs == [nova.sparc.managed_save_dir]
    for report in sweeps:
        for what in ('replayed', 'removed', 'refused'):
            assert not [m for m in report[what] if name in m], report
    assert name not in pending
    assert g.dom.hasManagedSaveImage(0)
    assert scenario.sha256(save_path) == digest

    # Resume: libvirt restores the managed save (and deletes it).
    g.resume_managed()
    guest_checks.wait_for_new_heartbeats(g)
    alive = {p['pid'] for p in g.processes()}
    assert pids['vault'] not in alive
    assert pids['webapp'] in alive
    assert g.oopses() == []
    assert ours(save_dir, name) == []


OLD_JOURNAL = """
import sys
import numpy as np
from sparc_nova.checkpoint import journal
assert journal.VERSION == 2, journal.VERSION
# The in-place scrub's first step: the journal of the patches, synced;
# the process is killed before it patches the file.
journal.write(sys.argv[1], [journal.Group(journal.FILL_PAGE,
                                          np.array([4096]), fill=0)])
"""


@pytest.fixture
def save_dir(tmp_path):
    from sparc_nova.checkpoint import journal
    from sparc_nova import conf
    from sparc_nova import privsep

    d = tmp_path / 'save'
    d.mkdir(mode=0o700)
    key = tmp_path / 'keys' / 'journal.key'
    journal.load_key(str(key), create=True)
    conf.CONF.set_override('managed_save_dir', str(d), group='sparc')
    conf.CONF.set_override('journal_key_file', str(key), group='sparc')
    # The daemon's entry points, run in this process.
    privsep.scrub_pctxt.set_client_mode(False)
    yield d
    privsep.scrub_pctxt.set_client_mode(True)
    conf.CONF.clear_override('managed_save_dir', group='sparc')
    conf.CONF.clear_override('journal_key_file', group='sparc')


def test_a_scrub_the_previous_release_did_not_finish_is_discarded(
        previous_release, save_dir):
    from sparc_nova.privsep import checkpoint as privsep_checkpoint

    save = save_dir / 'instance-0000abcd.save'
    save.write_bytes(b'S' * 3 * 4096)
    save.chmod(0o600)
    run_previous(previous_release, '-c', OLD_JOURNAL, str(save))
    journal = save_dir / '.instance-0000abcd.save.sparc-journal'
    assert journal.exists()

    [report] = privsep_checkpoint.sweep_leftovers()
    assert report['replayed'] == []
    [refused] = report['refused']
    # (The previous release's journals carry no MAC under this key.)
    assert 'it was not replayed' in refused
    assert privsep_checkpoint.pending_managed_saves() == [
        'instance-0000abcd']
    assert privsep_checkpoint.discard_managed_save('instance-0000abcd')
    assert os.listdir(save_dir) == []


OLD_OPTIONS = """
import json
from sparc_nova import conf
from sparc_nova import privsep
import sparc_nova
print(json.dumps({
    'package': sparc_nova.__file__,
    'options': {group: sorted(o.dest for o in opts)
                for module in (conf, privsep)
                for group, opts in module.list_opts()}}))
"""


def test_the_previous_release_configuration_is_still_read(
        previous_release):
    from sparc_nova import conf
    from sparc_nova import privsep

    listed = json.loads(run_previous(previous_release, '-c', OLD_OPTIONS))
    assert listed['package'].startswith(previous_release + os.sep)
    old = listed['options']
    new = {}
    for module in (conf, privsep):
        for group, opts in module.list_opts():
            names = new.setdefault(group, set())
            for o in opts:
                names.add(o.dest)
                names.update(d.name for d in o.deprecated_opts
                             if d.group in (None, group))
    assert old, 'the previous release lists no option'
    for group, names in old.items():
        missing = set(names) - new.get(group, set())
        assert not missing, (group, sorted(missing))
