"""Snapshots (createImage live and cold, backup, shelve) of servers with
and without a privacy policy.
"""

import os
import secrets
import sys
import threading
import time

import fixtures

from nova.tests import fixtures as nova_fixtures
from sparc_nova import exception
from tests.functional.engine.disk import hostcheck
from tests.functional.engine.disk import images
from tests.nova_functional import base

SPARC_EVENTS = ['sparc.scrub.start', 'sparc.scrub.end']


class SnapshotTest(base.SparcServersTestBase):

    def assert_scrubbed_upload(self, image_id, how):
        """Glance got the scrubbed bytes, after the extract and the scrub,
        and the image records the scrub.
        """
        self.assertEqual(base.SCRUBBED_IMAGE, self.uploads[image_id])
        self.assertNotIn(base.MARKER, self.uploads[image_id])
        kinds = [e[0] for e in self.events]
        self.assertEqual(['extract', 'scrub', 'upload'], kinds)
        extract, scrub, upload = self.events
        self.assertEqual(how, extract[1])
        self.assertEqual(extract[2], scrub[1])
        self.assertEqual(('upload', image_id), upload)
        props = self.image(image_id)['properties']
        self.assertEqual('true', props['sparc_scrubbed'])
        self.assertTrue(props['sparc_policy_digest'].startswith('sha256:'))
        self.assertIn('removed 1 path (', props['sparc_scrub_summary'])
        self.assertEqual('active', self.image(image_id)['status'])

    def test_create_image_live(self):
        self.assert_mode()
        server = self.create_policy_server()
        image_id = self.create_image(server)
        self.assert_scrubbed_upload(image_id, 'live')
        self.assertEqual(0, self.follow_managed_save.call_count)
        events = self.sparc_notifications()
        self.assertEqual(SPARC_EVENTS, [e for e, _ in events])
        start, end = events[0][1], events[1][1]
        self.assertEqual(server['id'], start['instance_uuid'])
        self.assertEqual('snapshot', start['operation'])
        self.assertEqual(image_id, start['image_id'])
        # The policy's digest and counts; its text only when configured.
        self.assertEqual(1, start['policy']['exclude_processes_count'])
        self.assertNotIn('gpg-agent', str(start))
        self.assertIn('removed 1 path (', end['summary'])
        # Nova's test base sends both formats: the versioned payloads say
        # the same.
        versioned = self.sparc_notifications(versioned=True)
        self.assertEqual(SPARC_EVENTS, [e for e, _ in versioned])
        data = versioned[1][1]['sparc_nova_object.data']
        self.assertEqual(end['summary'], data['summary'])
        self.assertEqual(image_id, data['image_id'])
        self.assertNotIn('gpg-agent', str(versioned))
        self._wait_for_state_change(server, 'ACTIVE')

    def test_create_image_cold_of_running_server(self):
        # A cold snapshot of a running guest saves its memory for a
        # moment (managedSave) and restores it: not a checkpoint to scrub.
        self.flags(disable_libvirt_livesnapshot=True, group='workarounds')
        server = self.create_policy_server()
        image_id = self.create_image(server)
        self.assert_scrubbed_upload(image_id, 'cold')
        self.assertEqual(0, self.follow_managed_save.call_count)
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assert_running(server)

    def test_create_image_cold_of_stopped_server(self):
        server = self.create_policy_server()
        server = self._stop_server(server)
        image_id = self.create_image(server)
        self.assert_scrubbed_upload(image_id, 'cold')

    def test_backup(self):
        server = self.create_policy_server()
        self.api.post_server_action(server['id'], {'createBackup': {
            'name': 'nightly', 'backup_type': 'daily', 'rotation': 100}})
        self.notifier.wait_for_versioned_notifications(
            'instance.snapshot.end')
        [image_id] = self.uploads
        self.assert_scrubbed_upload(image_id, 'live')
        self.assertEqual('backup', self.image(image_id)['properties'].get(
            'image_type'))

    def test_shelve(self):
        server = self.create_policy_server()
        self._shelve_server(server)
        [image_id] = self.uploads
        # Shelving powers the guest off first: a cold snapshot.
        self.assert_scrubbed_upload(image_id, 'cold')
        self.assertEqual(0, self.follow_managed_save.call_count)
        # Unshelving boots from the scrubbed image (and deletes it).
        self._unshelve_server(server)

    def test_engine_does_not_stall_the_service(self):
        # A ticker runs in a thread of the service (a greenthread in
        # eventlet mode) while the engine blocks for 2 s without yielding.
        ticks, scrubbing, stop = [], [], threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.05)

        def slow_scrub(*args, **kwargs):
            scrubbing.append(time.monotonic())
            self.blocking_sleep(2)
            scrubbing.append(time.monotonic())
            return self._fake_scrub_image(*args, **kwargs)

        self.scrub_image.side_effect = slow_scrub
        server = self.create_policy_server()
        thread = threading.Thread(target=ticker)
        thread.start()
        try:
            image_id = self.create_image(server)
        finally:
            stop.set()
            thread.join()
        self.assert_scrubbed_upload(image_id, 'live')
        start, end = scrubbing
        during = [t for t in ticks if start <= t <= end]
        gaps = [b - a for a, b in zip(during, during[1:])]
        self.assertGreater(len(during), 10)
        self.assertLess(max(gaps), 1.0)

    def test_no_policy_engine_not_called(self):
        server = self._create_server(networks='none')
        image_id = self.create_image(server)
        self.assertEqual(base.DISK_IMAGE, self.uploads[image_id])
        self.assertEqual(0, self.scrub_image.call_count)
        self.assertEqual(['extract', 'upload'], [e[0] for e in self.events])
        self.assertNotIn('sparc_scrubbed', self.image(image_id)['properties'])
        self.assertEqual([], self.sparc_notifications())

    def test_engine_failure_nothing_reaches_glance(self):
        # Cold: the guest is saved, copied and restored before the scrub.
        self.flags(disable_libvirt_livesnapshot=True, group='workarounds')
        self.scrub_image.side_effect = exception.DiskScrubError(
            '/snap', 'mount of /dev/sda1 failed')
        server = self.create_policy_server()
        result = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})
        image_id = result['image_id']
        fault = self.wait_for_fault(server)
        self.assertEqual('Privacy scrub of the snapshot %s of instance %s '
                         'failed; nothing unscrubbed was kept: /snap: mount '
                         'of /dev/sda1 failed' % (image_id, server['id']),
                         fault)
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual({}, self.uploads)
        self.assertIsNone(self.image(image_id))
        events = self.sparc_notifications()
        self.assertEqual(['sparc.scrub.start', 'sparc.scrub.error'],
                         [e for e, _ in events])
        self.assertEqual('aborted', events[1][1]['outcome'])
        self.assert_running(server)

    def test_engine_failure_allowed_by_operator(self):
        self.scrub_image.side_effect = exception.DiskScrubError(
            '/snap', 'mount failed')
        flavor_id = self.create_flavor_with_specs(
            {'sparc:on_failure': 'allow'})
        server = self.create_policy_server(flavor_id=flavor_id)
        image_id = self.create_image(server)
        self.assertEqual(base.DISK_IMAGE, self.uploads[image_id])
        props = self.image(image_id)['properties']
        self.assertEqual('false', props['sparc_scrubbed'])
        self.assertIn('kept unscrubbed (on_failure=allow)',
                      props['sparc_scrub_summary'])
        self.assertEqual('kept-unscrubbed',
                         self.sparc_notifications()[1][1]['outcome'])

    def test_invalid_policy_refuses_the_snapshot(self):
        server = self.create_policy_server(
            metadata={'sparc:exclude_paths': 'relative/../x'})
        result = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})
        self.assertEqual(
            'Invalid privacy policy for instance %s: sparc:exclude_paths='
            '\'relative/../x\' (instance metadata): \'relative/../x\': a '
            'guest path glob has no "." or ".." components' % server['id'],
            self.wait_for_fault(server))
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertIsNone(self.image(result['image_id']))
        self.assertEqual({}, self.uploads)

    def test_direct_snapshot_turned_off_for_policy(self):
        # An rbd root disk would clone straight into Glance's pool.
        server = self.create_policy_server()
        for disk in self.disks:
            disk.direct_snapshot.side_effect = None
            disk.direct_snapshot.return_value = 'rbd://fsid/images/x/snap'
        image_id = self.create_image(server)
        self.assert_scrubbed_upload(image_id, 'live')
        self.assertNotIn('location', self.image(image_id))

    def test_direct_snapshot_kept_without_policy(self):
        server = self._create_server(networks='none')
        for disk in self.disks:
            disk.direct_snapshot.side_effect = None
            disk.direct_snapshot.return_value = 'rbd://fsid/images/x/snap'
        image_id = self.create_image(server)
        self.assertEqual({}, self.uploads)
        self.assertEqual('rbd://fsid/images/x/snap',
                         self.image(image_id)['location'])

    def test_records_of_an_earlier_scrub_are_not_inherited(self):
        source = self.glance.create(None, {
            'name': 'scrubbed-earlier', 'status': 'active',
            'container_format': 'bare', 'disk_format': 'qcow2',
            'properties': {'sparc_scrubbed': 'true',
                           'sparc_policy_digest': 'sha256:00',
                           'sparc_scrub_summary': 'old'}})
        server = self._create_server(image_uuid=source['id'],
                                     networks='none')
        image_id = self.create_image(server)
        self.assertEqual(base.DISK_IMAGE, self.uploads[image_id])
        self.assertEqual(0, self.scrub_image.call_count)
        props = self.image(image_id)['properties']
        self.assertEqual('false', props['sparc_scrubbed'])
        self.assertEqual('', props['sparc_policy_digest'])


class RealDiskEngineSnapshotTest(base.SparcServersTestBase):
    """createImage with the real disk engine on a real qcow2 (one
    appliance launch).
    """

    def setUp(self):
        super().setUp()
        # Nova's test base forbids importing guestfs; this test means to.
        for finder in sys.meta_path:
            if isinstance(finder, nova_fixtures.ImportModulePoisonFixture.
                          ForbiddenModules):
                finder.modules = set(finder.modules) - {'guestfs'}

    def test_create_image_uploads_an_image_without_the_files(self):
        work = self.useFixture(fixtures.TempDir()).path
        marker = 'SPRC' + secrets.token_hex(10).upper()
        tree = images.populate(os.path.join(work, 'tree'), marker,
                               small_files=20)
        qcow2 = images.ext4_image(tree, os.path.join(work, 'disk.qcow2'),
                                  size_mib=64)
        raw = hostcheck.to_raw(qcow2, work)
        self.disk_image_files = {'qcow2': qcow2, 'raw': raw}
        before = hostcheck.count_marker(raw, marker)
        self.assertGreater(before, 0)
        self.use_real_disk_engine()

        server = self.create_policy_server(metadata={
            'sparc:exclude_paths': ','.join(images.EXCLUDE_PATHS),
            'sparc:exclude_paths.1': 'preset:shell-history,preset:tmp'})
        # One appliance launch: tens of seconds under TCG.
        image_id = self.create_image(server, timeout=300,
                                     scrub_must_succeed=True)

        uploaded = os.path.join(work, 'uploaded.qcow2')
        with open(uploaded, 'wb') as f:
            f.write(self.uploads[image_id])
        self.assertEqual(0, hostcheck.count_marker(
            hostcheck.to_raw(uploaded, work), marker))
        props = self.image(image_id)['properties']
        self.assertEqual('true', props['sparc_scrubbed'])
        self.assertIn('0 left; verified', props['sparc_scrub_summary'])
        self.assertNotIn(marker, props['sparc_scrub_summary'])
        [extract, upload] = self.events
        self.assertEqual(extract[2], self.scrub_image.call_args[0][0])
        self.assertEqual(('upload', image_id), upload)
