"""The base of the Nova functional tests: Nova's ``ServersTestBase`` (real
API, conductor, scheduler, placement and Glance fixtures, fakelibvirt)
with ``compute_driver = sparc_libvirt.SparcLibvirtDriver``.

fakelibvirt writes no disk image, so the image backend's
``snapshot_extract`` (cold snapshots) and ``extract_snapshot`` (live
snapshots) write :data:`DISK_IMAGE` to the file the driver uploads, and
the disk engine is a fake that blanks :data:`MARKER` (one test swaps the
real engine back in). Every step lands in ``self.events`` so that tests
can check the order: extract, scrub, upload.
"""

import io
import os
import shutil
import sys
import time

import fixtures
from oslo_messaging.notify import _impl_test

from nova import context as nova_context
from nova import objects
from nova.tests.fixtures import libvirt_imagebackend
from nova.tests.functional.libvirt import base
from nova import utils as nova_utils
from sparc_nova.engine.disk import report as disk_report
from sparc_nova.engine.disk import scrub as disk_scrub
from sparc_nova import privsep

MARKER = b'SPARC-NOVA-SECRET-4c1f9e'
KEPT = b'SPARC-NOVA-KEPT-DATA-77ab'
DISK_IMAGE = (b'QFI\xfb' + b'\0' * 60 + MARKER + b'\0' * 64 + KEPT +
              b'\0' * 32)
SCRUBBED_IMAGE = DISK_IMAGE.replace(MARKER, b'\0' * len(MARKER))

POLICY = {'sparc:exclude_paths': '/home/*/.ssh/**',
          'sparc:exclude_processes': 'gpg-agent'}
#: The privileged entry points of the scrub that overlaps managedSave.
FOLLOW_ENTRY = 'sparc_nova.privsep.checkpoint.follow_managed_save'
FINISH_ENTRY = 'sparc_nova.privsep.checkpoint.finish_managed_save'


def _open_existing_for_reading(path, mode='r', *args, **kwargs):
    if 'r' in mode and os.path.isfile(path):
        return open(path, mode, *args, **kwargs)
    return io.BytesIO(b'')


class SparcServersTestBase(base.ServersTestBase):
    """ServersTestBase with SparcLibvirtDriver on host ``compute1``."""

    microversion = 'latest'
    ADMIN_API = True
    # RPC casts stay casts, as in a real cloud: a failed suspend or
    # migration shows up as a fault, not as an API error.
    CAST_AS_CALL = False

    def setUp(self):
        #: Real image files by format, to hand over as the snapshot (in
        #: the format Nova asks for) instead of DISK_IMAGE.
        self.disk_image_files = None
        self.events = []
        self.uploads = {}
        self.disks = []
        self._patch_image_backend()
        super().setUp()
        # The harness opens every file as an empty BytesIO: the snapshot
        # to upload must be the real file, for the scrub.
        self.mock_file_open.side_effect = _open_existing_for_reading
        self._patch_live_snapshot()
        self._capture_uploads()

        self.flags(driver=['test'], group='oslo_messaging_notifications')
        _impl_test.reset()
        self.addCleanup(_impl_test.reset)

        self.scrub_image = self.useFixture(fixtures.MockPatch(
            'sparc_nova.engine.disk.scrub_image',
            side_effect=self._fake_scrub_image)).mock
        # The daemon's follower: started before managedSave, asked for
        # its verdict once managedSave returned (finish_managed_save).
        self.follow_managed_save = self.useFixture(fixtures.MockPatch(
            FOLLOW_ENTRY, side_effect=self._fake_follow_managed_save)).mock
        self.finish_managed_save = self.useFixture(fixtures.MockPatch(
            FINISH_ENTRY, side_effect=self._fake_finish_managed_save)).mock
        # The other privileged entry points (records of managed saves not
        # scrubbed yet) run in this process, on a directory of the test.
        self.useFixture(fixtures.MockPatchObject(
            privsep.scrub_pctxt, 'client_mode', False))
        self.managed_save_dir = self.useFixture(fixtures.TempDir()).path
        self.flags(managed_save_dir=self.managed_save_dir, group='sparc')
        self.start_compute('compute1')
        self.ctxt = nova_context.get_admin_context()

    def _setup_compute_service(self):
        self.flags(compute_driver='sparc_libvirt.SparcLibvirtDriver')

    def _clear_attrs(self):
        # Nova's TestCase drops its instance attributes after each test;
        # pytest's unittest runner puts the test method there and removes
        # it itself.
        keep = ('_', 'test')
        for key in [k for k in self.__dict__ if not k.startswith(keep)]:
            del self.__dict__[key]

    def _setup_services(self):
        self.flags(api_paste_config=self.api_paste_config(), group='wsgi')
        super()._setup_services()

    def api_paste_config(self) -> str:
        """The API's paste configuration: the one the wheel installs
        under the prefix.
        """
        return os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')

    # -- fakes ---------------------------------------------------------

    def _patch_image_backend(self):
        original = libvirt_imagebackend.LibvirtImageBackendFixture._mock_disk

        def mock_disk(fixture):
            disk = original(fixture)
            disk.snapshot_extract.side_effect = self._write_disk_image
            self.disks.append(disk)
            return disk

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt_imagebackend.'
            'LibvirtImageBackendFixture._mock_disk', mock_disk))

    def _patch_live_snapshot(self):
        utils = 'nova.virt.libvirt.driver.libvirt_utils.'
        for name, value in (('get_disk_size', 1 << 30),
                            ('get_disk_backing_file', None),
                            ('create_image', None)):
            self.useFixture(fixtures.MockPatch(utils + name,
                                               return_value=value))
        self.useFixture(fixtures.MockPatch('nova.privsep.path.chown'))
        self.extract_snapshot = self.useFixture(fixtures.MockPatch(
            utils + 'extract_snapshot',
            side_effect=lambda src, src_fmt, out, out_fmt:
                self._write_disk_image(out, out_fmt, how='live'))).mock

    def _write_disk_image(self, out_path, image_format, how='cold'):
        if self.disk_image_files:
            # The snapshot file is in the format Nova asks for (raw for a
            # raw, rbd or lvm disk): the disk engine reads it as that.
            shutil.copyfile(self.disk_image_files[image_format], out_path)
        else:
            with open(out_path, 'wb') as f:
                f.write(DISK_IMAGE)
        self.events.append(('extract', how, out_path))

    def _fake_scrub_image(self, src, dst, rules, options=None,
                          progress=None):
        with open(src, 'rb') as f:
            data = f.read()
        if progress:
            progress(1, 2, 'scrubbing')
        with open(dst, 'wb') as f:
            f.write(data.replace(MARKER, b'\0' * len(MARKER)))
        self.events.append(('scrub', src, dst))
        report = disk_report.ScrubReport(source=src, destination=dst,
                                         output_format=options.output_format)
        report.removed = [disk_report.RemovedPath(
            'sha256:0', 'file', len(MARKER), rules.units[0], '/dev/sda1')]
        report.volumes = [disk_report.VolumeReport('/dev/sda1',
                                                   'filesystem')]
        return report

    def _fake_follow_managed_save(self, *, instance_name, selectors,
                                  exclude_paths, follow_ipc,
                                  scrub_free_memory):
        self.events.append(('privsep-follow', instance_name))
        return os.path.join(self.managed_save_dir, instance_name + '.save')

    def _fake_finish_managed_save(self, *, instance_name, saved):
        self.events.append(('privsep-finish', instance_name, saved))
        if not saved:
            return {}
        return {'summary': 'scrubbed %s: 1 process' % instance_name,
                'report': {}}

    def use_real_disk_engine(self):
        self.scrub_image.side_effect = disk_scrub.scrub_image

    def _capture_uploads(self):
        update = self.glance.update

        def capture(context, image_id, metadata, data=None,
                    purge_props=False):
            if data is not None:
                body = data.read()
                self.uploads[image_id] = body
                self.events.append(('upload', image_id))
                data = io.BytesIO(body)
            image = update(context, image_id, metadata, data=data,
                           purge_props=purge_props)
            if data is not None:
                # As Glance does: the image's size is what was uploaded.
                image['size'] = len(self.uploads[image_id])
            return image

        self.glance.update = capture
        self.addCleanup(setattr, self.glance, 'update', update)

    # -- helpers ---------------------------------------------------------

    def create_policy_server(self, metadata=POLICY, flavor_id=None,
                             image_uuid=None, host=None):
        server = self._build_server(flavor_id=flavor_id,
                                    image_uuid=image_uuid, networks='none',
                                    host=host)
        server['metadata'] = dict(metadata)
        server = self.api.post_server({'server': server})
        return self._wait_for_state_change(server, 'ACTIVE')

    def create_flavor_with_specs(self, specs):
        flavor_id = self._create_flavor(extra_spec=specs)
        return flavor_id

    def create_image(self, server, name='snap', timeout=10,
                     scrub_must_succeed=False):
        """createImage; return the image id once the snapshot ended
        (``timeout`` in seconds). With ``scrub_must_succeed``, a scrub
        error notified before that fails the test at once, with its
        payload.
        """
        result = self.api.post_server_action(
            server['id'], {'createImage': {'name': name}})
        deadline = time.monotonic() + timeout
        while not any(n['event_type'] == 'instance.snapshot.end'
                      for n in self.notifier.versioned_notifications):
            errors = [payload for event, payload in self.sparc_notifications()
                      if event == 'sparc.scrub.error']
            if scrub_must_succeed and errors:
                self.fail('snapshot scrub failed: %s' % errors)
            if time.monotonic() > deadline:
                self.fail('no instance.snapshot.end within %d s' % timeout)
            time.sleep(0.1)
        return result['image_id']

    def image(self, image_id):
        return self.glance.images.get(image_id)

    def wait_for_fault(self, server, timeout=20):
        """The newest fault message of the server, once there is one."""
        deadline = time.monotonic() + timeout
        while not self.faults(server):
            if time.monotonic() > deadline:
                self.fail('no fault recorded for server %s' % server['id'])
            time.sleep(0.1)
        return self.faults(server)[0]

    def faults(self, server):
        """Fault messages of the server, newest first."""
        faults = objects.InstanceFaultList.get_by_instance_uuids(
            self.ctxt, [server['id']])
        return [f.message for f in faults]

    def sparc_notifications(self, versioned=False):
        """(event_type, payload) of the sparc.* notifications sent, the
        unversioned ones (publisher ``sparc.HOST``) or, with
        ``versioned``, the versioned ones (``sparc-compute:HOST``; Nova's
        test base sends both formats).
        """
        publisher = 'sparc-compute:' if versioned else 'sparc.'
        return [(m['event_type'], m['payload'])
                for ctxt, m, priority, retry in _impl_test.NOTIFICATIONS
                if m['event_type'].startswith('sparc.') and
                m['publisher_id'].startswith(publisher)]

    def domain(self, server):
        conn = self.computes['compute1'].driver._host.get_connection()
        return conn.lookupByUUIDString(server['id'])

    def assert_running(self, server):
        self.assertTrue(self.domain(server).isActive())

    def blocking_sleep(self, seconds):
        """Sleep without yielding to eventlet's hub (in eventlet mode
        ``time.sleep`` is green): what a long engine call does.
        """
        if nova_utils.concurrency_mode_threading():
            time.sleep(seconds)
        else:
            from eventlet import patcher
            patcher.original('time').sleep(seconds)

    def assert_mode(self):
        """The concurrency mode asked for is the one in effect."""
        threading = os.environ.get(
            'OS_NOVA_DISABLE_EVENTLET_PATCHING', '').lower() == 'true'
        self.assertEqual(threading, nova_utils.concurrency_mode_threading())
