"""SparcLibvirtDriver against the real libvirt on this machine (no Nova
API): a TCG guest with a qcow2 disk, a policy excluding the ``vault``
process and the test files of the disk, the driver loaded through the
``sparc_libvirt`` shim, and a real privsep daemon for the managed-save
scrub (started with the virtualenv's privsep-helper: no sudo here).

- suspend: the managed-save file is scrubbed by the daemon; libvirt's
  restore of it (what resume does) brings back a running guest without
  ``vault`` and with the control process;
- a scrub that fails (the daemon refuses the stream by a configured
  limit) rolls the suspend back: the guest runs again, unscrubbed;
- sealed suspend (``sparc:suspend=seal``, the key in castellan's
  in-memory key manager): the daemon seals the managed save, no marker of
  ``vault`` is readable in it or in its sealed pages, the daemon unseals
  it with the key, and libvirt's restore brings ``vault`` back alive with
  its marker pages;
- cold snapshot: Nova's own snapshot path (internal managedSave, qemu-img
  extract, restore), then the real disk engine on the extracted qcow2;
  the bytes handed to the image service hold none of the disk markers.
"""

import os
import random
import re
import secrets
import shutil
import sys
from unittest import mock
from xml.sax import saxutils

import pytest

from tests.functional.engine.disk import hostcheck
from tests.functional.engine.disk import images
from tests.functional.testbed import guest as guest_mod
from tests.functional.virt import guest_checks
from tests.functional.virt import instances

pytestmark = pytest.mark.slow

DISK_XML = """    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
"""


class DiskGuest(guest_mod.Guest):
    """A test bed guest with a qcow2 disk (the guest does not mount it)."""

    def __init__(self, image, disk_path, **kwargs):
        super().__init__(image, **kwargs)
        self.disk_path = disk_path

    def xml(self) -> str:
        disk = DISK_XML.format(path=saxutils.escape(self.disk_path))
        return super().xml().replace('  <devices>\n',
                                     '  <devices>\n' + disk, 1)


class RecordingImageAPI:
    """The image service side of ``snapshot()``: keeps what it receives."""

    def __init__(self, directory):
        self.directory = directory
        self.updates = []

    def get(self, context, image_id):
        return {'id': image_id, 'name': 'snap-%s' % image_id[:8]}

    def update(self, context, image_id, image_meta, data=None,
               purge_props=False):
        path = None
        if data is not None:
            path = os.path.join(self.directory, 'uploaded-' + image_id)
            with open(path, 'wb') as f:
                shutil.copyfileobj(data, f)
        self.updates.append({'image_id': image_id, 'meta': image_meta,
                             'path': path})
        return image_meta


@pytest.fixture(scope='module')
def disk_tree(module_dir):
    marker = 'SPRC' + secrets.token_hex(10).upper()
    return images.populate(os.path.join(module_dir, 'tree'), marker,
                           small_files=20)


@pytest.fixture(scope='module')
def vm(guest_image, module_dir, disk_tree, nova):
    """The guest, and the Nova instance object that describes it."""
    instance_id = random.randint(0x10000000, 0x7fffffff)
    name = nova.instance_name_template % instance_id
    disk = images.ext4_image(disk_tree, os.path.join(module_dir,
                                                     'disk.qcow2'),
                             size_mib=64)
    g = DiskGuest(guest_image, disk, name=name)
    try:
        g.start()
        instance = instances.nova_instance(
            instance_id, g.dom.UUIDString(),
            {'sparc:exclude_processes': 'vault',
             'sparc:exclude_paths': ','.join(images.EXCLUDE_PATHS),
             'sparc:exclude_paths.1': ','.join(
                 'preset:' + p for p in images.PRESETS)})
        assert instance.name == name
        yield g, instance
    finally:
        g.destroy()


def disk_markers(path, marker, directory):
    """Markers in the guest view of an image, read while QEMU holds it
    (``-U``: no lock).
    """
    raw = os.path.join(directory, os.path.basename(path) + '.live.raw')
    hostcheck.run('qemu-img', 'convert', '-U', '-O', 'raw', path, raw)
    try:
        return hostcheck.count_marker(raw, marker)
    finally:
        os.unlink(raw)


def test_suspend_scrubs_the_managed_save_through_privsep(
        vm, driver, context, guest_image, module_dir):
    g, instance = vm
    pids = guest_checks.start_processes(g)
    save_path = driver.managed_save_path(instance)
    calls = []
    from sparc_nova.privsep import checkpoint as privsep_checkpoint
    real_follow = privsep_checkpoint.follow_managed_save
    real_finish = privsep_checkpoint.finish_managed_save

    results = []

    def follow(**kwargs):
        # The daemon follows the file before libvirt creates it.
        assert not os.path.exists(save_path)
        calls.append(kwargs)
        return real_follow(**kwargs)

    def finish(**kwargs):
        results.append(real_finish(**kwargs))
        return results[-1]

    with mock.patch.object(privsep_checkpoint, 'follow_managed_save',
                           follow), \
            mock.patch.object(privsep_checkpoint, 'finish_managed_save',
                              finish):
        driver.suspend(context, instance)
    assert calls == [{'instance_name': instance.name,
                      'selectors': ['vault'],
                      'exclude_paths': ['scope:instance'] +
                      list(images.EXCLUDE_PATHS) +
                      ['preset:' + p for p in images.PRESETS],
                      'follow_ipc': True, 'scrub_free_memory': True}]
    # The scrub followed the image as libvirt wrote it.
    during = results[0]['report']['during_save']
    assert during['scrub_overlapped_save'] is True, during
    assert g.dom.hasManagedSaveImage(0)
    assert not g.dom.isActive()
    # The daemon introspected the guest in its unprivileged sandbox child.
    child = results[0]['report']['sandbox']
    assert (child['uid'], int(child['cap_eff'], 16)) == (65534, 0)
    # libvirt's managed-save directory is the QEMU user's: the daemon
    # patched root's 0600 file in place all the same, its journal kept in
    # the journal directory (made private) and removed once the pages
    # were on disk.
    st = os.stat(save_path)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert os.stat(os.path.dirname(save_path)).st_uid != 0
    assert results[0]['report']['rewrite']['in_place'] is True
    journals = instances.journal_dir(module_dir)
    assert os.stat(journals).st_mode & 0o777 == 0o700
    assert os.listdir(journals) == []
    assert guest_checks.in_memory(save_path, guest_image.marker(1)) == 0
    assert guest_checks.in_memory(save_path, guest_image.marker(4)) > 0

    # Resume: libvirt restores the managed save (and deletes it).
    g.resume_managed()
    guest_checks.wait_for_new_heartbeats(g)
    alive = {p['pid'] for p in g.processes()}
    assert pids['vault'] not in alive
    assert pids['webapp'] in alive
    assert not os.path.exists(save_path)
    assert g.oopses() == []


def test_failed_scrub_rolls_the_suspend_back(vm, driver, context, nova,
                                             module_dir):
    from nova import exception as nova_exception
    from sparc_nova import privsep

    g, instance = vm
    pids = guest_checks.start_processes(g)
    # A daemon whose limits refuse any real migration stream.
    daemon_conf = os.path.join(module_dir, 'privsep-strict.conf')
    with open(daemon_conf, 'w') as f:
        f.write('[sparc]\nmanaged_save_dir = /var/lib/libvirt/qemu/save\n'
                'journal_dir = %s\nmax_stream_sections = 16\n'
                % instances.journal_dir(module_dir))
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    # The module's own command is put back afterwards (cleared, the
    # option would fall back to sudo for the tests after this one).
    usual = nova.sparc_privsep.helper_command
    privsep.scrub_pctxt.stop()
    nova.set_override('helper_command', '%s --config-file %s'
                      % (helper, daemon_conf), group='sparc_privsep')
    try:
        with pytest.raises(nova_exception.InstanceFaultRollback) as e:
            driver.suspend(context, instance)
    finally:
        privsep.scrub_pctxt.stop()
        nova.set_override('helper_command', usual, group='sparc_privsep')
    message = e.value.inner_exception.format_message()
    assert re.match(r'Privacy scrub of the memory image of instance %s '
                    r'failed; nothing unscrubbed was kept: LimitExceeded: '
                    % instance.uuid, message), message
    # Rolled back: running again from the unscrubbed save, which is gone.
    assert g.dom.isActive()
    assert not g.dom.hasManagedSaveImage(0)
    g.connect_console()
    guest_checks.wait_for_new_heartbeats(g)
    alive = {p['pid'] for p in g.processes()}
    assert {pids['vault'], pids['webapp']} <= alive


def test_sealed_suspend_keeps_the_excluded_process(vm, driver, context,
                                                   guest_image):
    from sparc_nova.checkpoint import sealed
    from sparc_nova.virt.libvirt import driver as driver_mod
    from tests import fake_key_manager

    g, instance = vm
    pids = guest_checks.start_processes(g)
    vault_marker = guest_image.marker(1)
    manager = fake_key_manager.ProjectKeyManager()
    save_path = driver.managed_save_path(instance)
    spath = sealed.sealed_path(save_path)
    policy = dict(instance.metadata)
    instance.metadata = dict(policy, **{'sparc:suspend': 'seal'})
    with mock.patch.object(driver._seal_keys, '_manager', manager), \
            mock.patch.object(type(instance), 'save'), \
            mock.patch.object(driver_mod.tenant_report,
                              'record_success') as event:
        driver.suspend(context, instance)
        event.assert_called_once_with(context, instance, 'sealed')
        ref = instance.system_metadata[driver_mod.SEAL_KEY_REF]
        key = manager.keys[ref].get_encoded()
        assert g.dom.hasManagedSaveImage(0)
        # Nothing of vault readable at rest, nor the key; the control
        # process is there.
        for path in (save_path, spath):
            st = os.stat(path)
            assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), path
            with open(path, 'rb') as f:
                data = f.read()
            assert data.count(vault_marker.encode()) == 0, path
            assert data.count(key) == 0, path
            del data
        assert guest_checks.in_memory(save_path, guest_image.marker(4)) > 0

        # Resume's first half: the daemon unseals with the key.
        assert driver._unseal(context, instance, ref) == key
    instance.metadata = policy
    assert not os.path.exists(spath)
    assert guest_checks.in_memory(save_path, vault_marker) > 0
    # Then libvirt restores the managed save: vault goes on.
    g.resume_managed()
    guest_checks.wait_for_new_heartbeats(g)
    alive = {p['pid'] for p in g.processes()}
    assert {pids['vault'], pids['webapp']} <= alive
    assert not os.path.exists(save_path)
    assert g.oopses() == []


def test_cold_snapshot_scrubs_the_disk(vm, driver, context, disk_tree,
                                       module_dir):
    import uuid

    g, instance = vm
    upload_dir = os.path.join(module_dir, 'uploads')
    os.makedirs(upload_dir, exist_ok=True)
    glance = RecordingImageAPI(upload_dir)
    driver._image_api._image_api = glance
    before = disk_markers(g.disk_path, disk_tree.marker, module_dir)
    assert before > 0
    pids = guest_checks.start_processes(g)
    calls = []
    from sparc_nova.privsep import checkpoint as privsep_checkpoint
    image_id = str(uuid.uuid4())

    with mock.patch.object(privsep_checkpoint, 'follow_managed_save',
                           side_effect=lambda **kw: calls.append(kw)):
        driver.snapshot(context, instance, image_id, lambda **kw: None)

    # Nova's cold snapshot saved and restored the guest: not scrubbed.
    assert calls == []
    assert g.dom.isActive()
    g.connect_console()
    guest_checks.wait_for_new_heartbeats(g)
    assert pids['vault'] in {p['pid'] for p in g.processes()}

    [update] = glance.updates
    props = update['meta']['properties']
    assert props['sparc_scrubbed'] == 'true'
    assert props['sparc_policy_digest'].startswith('sha256:')
    assert '0 left; verified' in props['sparc_scrub_summary']
    assert update['meta']['disk_format'] == 'qcow2'
    assert disk_markers(update['path'], disk_tree.marker, module_dir) == 0
    # The guest's own disk is untouched.
    assert disk_markers(g.disk_path, disk_tree.marker, module_dir) == before
