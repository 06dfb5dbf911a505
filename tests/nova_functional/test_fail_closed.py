"""Paths that persist guest memory or disk fail closed: a failed shelve
leaves no image, a snapshot Nova uploads past the scrub is deleted, a
managed save whose scrub a crash interrupted is deleted at the next start,
a crash dump is refused, nova-compute refuses to start on a Nova it does
not know; and a project member can read why an operation failed.
"""

import os

import fixtures

from nova.compute import power_state
from sparc_nova import exception
from sparc_nova.privsep import save_markers
from sparc_nova.virt.libvirt import nova_support
from tests.nova_functional import base


class MemberViewMixin:

    def member_events(self, server, action):
        """Event names of the server's ``action`` requests, as a project
        member (not an admin) reads them.
        """
        member = self.api_fixture.api
        member.microversion = 'latest'
        names = []
        for found in member.get_instance_actions(server['id']):
            if found['action'] == action:
                details = member.get_instance_action_details(
                    server['id'], found['request_id'])
                names.extend(e['event'] for e in details['events'])
        return names

    def assert_member_reads(self, server, action, text):
        names = self.member_events(server, action)
        self.assertIn('sparc-nova: ' + text, names)


class ShelveFailureTest(MemberViewMixin, base.SparcServersTestBase):

    def images_named(self, name):
        return [i for i in self.glance.images.values()
                if i.get('name') == name]

    def test_failed_scrub_leaves_no_image_and_the_server_as_it_was(self):
        self.assert_mode()
        self.scrub_image.side_effect = exception.DiskScrubError(
            '/snap', 'mount of /dev/sda1 failed')
        server = self.create_policy_server()
        self.api.post_server_action(server['id'], {'shelve': {}})
        fault = self.wait_for_fault(server)
        self.assertEqual(
            'Privacy scrub of the snapshot %s of instance %s failed; '
            'nothing unscrubbed was kept: /snap: mount of /dev/sda1 failed'
            % (self.shelve_image_id(server), server['id']), fault)
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        # No queued "<name>-shelved" left in Glance, nothing uploaded.
        self.assertEqual([], self.images_named(server['name'] + '-shelved'))
        self.assertEqual({}, self.uploads)
        # The guest runs again, as before the shelve.
        self.assert_running(server)
        self.assertEqual(power_state.RUNNING,
                         self.api.get_server(server['id'])[
                             'OS-EXT-STS:power_state'])
        self.assert_member_reads(
            server, 'shelve', 'Privacy scrub of the snapshot %s of instance '
            '%s failed; nothing unscrubbed was kept: /snap: mount of '
            '/dev/sda1 failed' % (self.shelve_image_id(server), server['id']))
        # Once the cause is gone the server shelves.
        self.scrub_image.side_effect = self._fake_scrub_image
        self._shelve_server(server)

    def test_failed_scrub_of_a_stopped_server(self):
        self.scrub_image.side_effect = exception.DiskScrubError('/s', 'x')
        server = self._stop_server(self.create_policy_server())
        self.api.post_server_action(server['id'], {'shelve': {}})
        self.wait_for_fault(server)
        self._wait_for_server_parameter(
            server, {'status': 'SHUTOFF', 'OS-EXT-STS:task_state': None})
        self.assertEqual([], self.images_named(server['name'] + '-shelved'))
        self.assertFalse(self.domain(server).isActive())

    def test_invalid_policy_leaves_no_image(self):
        server = self.create_policy_server(
            metadata={'sparc:follow_ipc': 'maybe'})
        self.api.post_server_action(server['id'], {'shelve': {}})
        self.assertIn("sparc:follow_ipc='maybe' (instance metadata): "
                      "expected true or false", self.wait_for_fault(server))
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual([], self.images_named(server['name'] + '-shelved'))
        self.assert_running(server)

    def shelve_image_id(self, server):
        """The id of the image the shelve asked for (from the events of
        the scrub notification).
        """
        return self.sparc_notifications()[0][1]['image_id']


class UploadCheckTest(base.SparcServersTestBase):
    """A Nova that uploads the snapshot past the driver's image API (here:
    the wrapper is bypassed, as if Nova had moved the upload).
    """

    def test_snapshot_uploaded_past_the_scrub_is_deleted(self):
        driver = self.computes['compute1'].driver
        scrubbing = driver._image_api
        driver._image_api = scrubbing._image_api
        self.addCleanup(setattr, driver, '_image_api', scrubbing)
        server = self.create_policy_server()
        result = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})
        image_id = result['image_id']
        self.assertEqual(
            'Privacy scrub of the snapshot %s of instance %s failed; '
            'nothing unscrubbed was kept: Nova did not upload it through '
            'the scrub (is this Nova supported?); the image was deleted'
            % (image_id, server['id']), self.wait_for_fault(server))
        self.assertIsNone(self.image(image_id))
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})

    def test_glance_holding_other_bytes_fails_the_snapshot(self):
        update = self.glance.update

        def short_upload(context, image_id, metadata, data=None,
                         purge_props=False):
            image = update(context, image_id, metadata, data=data,
                           purge_props=purge_props)
            if data is not None:
                image['size'] = 3
            return image

        self.glance.update = short_upload
        server = self.create_policy_server()
        result = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})
        self.assertIn('Nova did not upload it through the scrub',
                      self.wait_for_fault(server))
        self.assertIsNone(self.image(result['image_id']))


class InterruptedSuspendTest(MemberViewMixin, base.SparcServersTestBase):

    def save_path(self, server):
        return os.path.join(self.managed_save_dir,
                            server['OS-EXT-SRV-ATTR:instance_name'] + '.save')

    def test_record_exists_during_the_scrub_only(self):
        seen = []

        def follow(**kwargs):
            # Before managedSave starts writing.
            seen.append(('follow', save_markers.pending()))
            return self._fake_follow_managed_save(**kwargs)

        def finish(**kwargs):
            seen.append(('finish', save_markers.pending()))
            return {'summary': 'scrubbed', 'report': {}}

        self.follow_managed_save.side_effect = follow
        self.finish_managed_save.side_effect = finish
        server = self.create_policy_server()
        self._suspend_server(server)
        name = server['OS-EXT-SRV-ATTR:instance_name']
        self.assertEqual([('follow', [name]), ('finish', [name])], seen)
        self.assertEqual([], save_markers.pending())

    def test_record_cleared_after_a_failed_scrub(self):
        from sparc_nova.privsep import checkpoint
        self.finish_managed_save.side_effect = (
            checkpoint.PrivilegedScrubError('ScrubError: x'))
        server = self.create_policy_server()
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.wait_for_fault(server)
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual([], save_markers.pending())
        self.assert_member_reads(
            server, 'suspend', 'Privacy scrub of the memory image of '
            'instance %s failed; nothing unscrubbed was kept: ScrubError: x'
            % server['id'])

    def test_start_deletes_a_managed_save_whose_scrub_was_cut_short(self):
        server = self.create_policy_server()
        server = self._suspend_server(server)
        name = server['OS-EXT-SRV-ATTR:instance_name']
        # nova-compute died during the scrub: the record and the
        # (unscrubbed) memory image are there.
        save_markers.write(name)
        with open(self.save_path(server), 'wb') as f:
            f.write(base.MARKER)
        os.chmod(self.save_path(server), 0o600)
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))

        self.restart_compute_service('compute1')

        self.assertFalse(os.path.exists(self.save_path(server)))
        self.assertEqual([], save_markers.pending())
        self.assertFalse(self.domain(server).hasManagedSaveImage(0))
        # The API says what happened, to the project too.
        member = self.api_fixture.api
        shown = self._wait_for_state_change(server, 'ERROR')
        shown = member.get_server(server['id'])
        self.assertIn('did not finish scrubbing its memory image',
                      shown['fault']['message'])
        # A hard reboot starts it again from its disks.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self._wait_for_state_change(server, 'ACTIVE')

    def test_start_without_records_changes_nothing(self):
        server = self._suspend_server(self.create_policy_server())
        self.restart_compute_service('compute1')
        self.assertEqual('SUSPENDED',
                         self.api.get_server(server['id'])['status'])
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))


class CrashDumpTest(MemberViewMixin, base.SparcServersTestBase):

    def test_crash_dump_refused_with_a_policy(self):
        nmi = self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.libvirt.Domain.injectNMI')).mock
        server = self.create_policy_server()
        self.api.post_server_action(server['id'],
                                    {'trigger_crash_dump': None})
        self.assertEqual(
            "Crash dump of instance %s is refused by its privacy policy: "
            "the guest's kdump would write its memory, excluded processes "
            "included, to its disk" % server['id'],
            self.wait_for_fault(server))
        self.assertEqual(0, nmi.call_count)
        self.assert_running(server)
        self.assertIn('trigger_crash_dump',
                      [a['action'] for a in
                       self.api_fixture.api.get_instance_actions(
                           server['id'])])
        self.assert_member_reads(
            server, 'trigger_crash_dump', "Crash dump of instance %s is "
            "refused by its privacy policy: the guest's kdump would write "
            "its memory, excluded processes included, to its disk"
            % server['id'])

    def test_crash_dump_without_policy(self):
        nmi = self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.libvirt.Domain.injectNMI')).mock
        server = self._create_server(networks='none')
        self.api.post_server_action(server['id'],
                                    {'trigger_crash_dump': None})
        self._wait_for_instance_action_event(
            server, 'trigger_crash_dump', 'compute_trigger_crash_dump',
            'Success')
        self.assertEqual(1, nmi.call_count)


class MemberSeesWhyTest(MemberViewMixin, base.SparcServersTestBase):

    def test_invalid_policy_named_in_the_suspend_events(self):
        server = self.create_policy_server(metadata={
            'sparc:exclude_processes': 'gpg-agent',
            'sparc:follow_ipc': 'maybe'})
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.wait_for_fault(server)
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assert_member_reads(
            server, 'suspend', "Invalid privacy policy for instance %s: "
            "sparc:follow_ipc='maybe' (instance metadata): expected true "
            "or false" % server['id'])

    def test_failed_snapshot_named_in_the_create_image_events(self):
        self.scrub_image.side_effect = exception.DiskScrubError(
            '/snap', 'no filesystem found')
        server = self.create_policy_server()
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': 'snap'}})
        self.wait_for_fault(server)
        names = self.member_events(server, 'createImage')
        self.assertTrue(any(
            n.startswith('sparc-nova: Privacy scrub of the snapshot ') and
            n.endswith('nothing unscrubbed was kept: /snap: no filesystem '
                       'found') for n in names), names)


class UnsupportedNovaTest(base.SparcServersTestBase):

    def test_compute_refuses_to_start_on_an_unknown_nova(self):
        self.useFixture(fixtures.MockPatch(
            'sparc_nova.virt.libvirt.nova_support._nova_version',
            return_value='35.0.0'))
        self.assertIn(
            'sparc-nova cannot enforce privacy policies on this Nova '
            '(35.0.0); refusing to start: Nova 35.0.0 is not a supported '
            'release (supported: 34.x)', self.start_fails('compute2'))

    def start_fails(self, host):
        """The message of the error that stops ``host`` from starting."""
        try:
            self.start_compute(host)
        except Exception as e:
            if isinstance(e, nova_support.UnsupportedNova):
                return e.format_message()
            return str(e)
        self.fail('%s started' % host)

    def test_compute_refuses_to_start_when_an_internal_moved(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_resume_guest_after_snapshot', new=lambda self, ctx, inst: 0))
        self.assertIn('LibvirtDriver._resume_guest_after_snapshot(context, '
                      'live_snapshot, original_power_state, instance, '
                      'guest) takes (ctx, inst)', self.start_fails('compute2'))
