"""Suspend (managedSave) of servers with and without a privacy policy."""

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt

from sparc_nova.privsep import checkpoint as privsep_checkpoint
from sparc_nova.privsep import save_markers
from tests.nova_functional import base


class SuspendTest(base.SparcServersTestBase):

    def save_path(self, server):
        return '%s/%s.save' % (self.managed_save_dir,
                               server['OS-EXT-SRV-ATTR:instance_name'])

    def test_suspend_scrubs_the_managed_save_and_resume_works(self):
        self.assert_mode()
        server = self.create_policy_server(metadata={
            'sparc:exclude_processes': 'gpg-agent,vault',
            'sparc:exclude_paths': '/home/*/.ssh/**',
            'sparc:scrub_free_memory': 'false'})
        server = self._suspend_server(server)
        self.assertEqual('SUSPENDED', server['status'])
        name = server['OS-EXT-SRV-ATTR:instance_name']
        self.follow_managed_save.assert_called_once_with(
            instance_name=name,
            selectors=['gpg-agent', 'vault'],
            # The scoped rule list (each source's rules in its scope).
            exclude_paths=['scope:instance', '/home/*/.ssh/**'],
            follow_ipc=True, scrub_free_memory=False)
        self.finish_managed_save.assert_called_once_with(
            instance_name=name, saved=True)
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))
        events = self.sparc_notifications()
        self.assertEqual(['sparc.scrub.start', 'sparc.scrub.end'],
                         [e for e, _ in events])
        self.assertEqual('suspend', events[0][1]['operation'])
        self.assertEqual(self.save_path(server), events[0][1]['path'])
        server = self._resume_server(server)
        self.assert_running(server)

    def test_the_scrub_follows_the_save_while_libvirt_writes_it(self):
        server = self.create_policy_server()
        domain_class = type(self.domain(server))
        managed_save = domain_class.managedSave

        def save(domain, flags=0):
            self.events.append(('managedSave',))
            return managed_save(domain, flags)
        self.useFixture(fixtures.MockPatchObject(
            domain_class, 'managedSave', save, autospec=False))
        del self.events[:]
        self._suspend_server(server)
        name = server['OS-EXT-SRV-ATTR:instance_name']
        self.assertEqual([('privsep-follow', name), ('managedSave',),
                          ('privsep-finish', name, True)], self.events)

    def test_failed_save_stops_the_follower(self):
        server = self.create_policy_server()
        domain_class = type(self.domain(server))

        def save(domain, flags=0):
            self.events.append(('managedSave',))
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'no space left on device',
                error_code=fakelibvirt.VIR_ERR_OPERATION_FAILED)
        self.useFixture(fixtures.MockPatchObject(
            domain_class, 'managedSave', save, autospec=False))
        del self.events[:]
        self.api.post_server_action(server['id'], {'suspend': {}})
        # As with the stock driver: the error reaches Nova unchanged
        # (which puts the server in ERROR), and the guest runs on.
        self.assertEqual('libvirtError', self.wait_for_fault(server))
        server = self._wait_for_server_parameter(
            server, {'status': 'ERROR', 'OS-EXT-STS:task_state': None})
        name = server['OS-EXT-SRV-ATTR:instance_name']
        self.assertEqual([('privsep-follow', name), ('managedSave',),
                          ('privsep-finish', name, False)], self.events)
        self.assertEqual([], save_markers.pending())
        self.assertFalse(self.domain(server).hasManagedSaveImage(0))
        self.assert_running(server)
        # Not a scrub failure: no scrub error was notified.
        self.assertNotIn('sparc.scrub.error',
                         [e for e, _ in self.sparc_notifications()])

    def test_suspend_without_policy(self):
        server = self._create_server(networks='none')
        server = self._suspend_server(server)
        self.assertEqual(0, self.follow_managed_save.call_count)
        self._resume_server(server)

    def test_suspend_refused_by_policy(self):
        server = self.create_policy_server(metadata={
            'sparc:exclude_processes': 'vault', 'sparc:suspend': 'refuse'})
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.assertEqual(
            'Suspend of instance %s is refused by its privacy policy: '
            'sparc:suspend=refuse' % server['id'],
            self.wait_for_fault(server))
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertFalse(self.domain(server).hasManagedSaveImage(0))
        self.assert_running(server)
        self.assertEqual(0, self.follow_managed_save.call_count)

    def test_scrub_failure_rolls_the_suspend_back(self):
        self.finish_managed_save.side_effect = (
            privsep_checkpoint.PrivilegedScrubError(
                'ScrubError: /x.save: no vmcoreinfo in guest memory'))
        server = self.create_policy_server()
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.assertEqual(
            'Privacy scrub of the memory image of instance %s failed; '
            'nothing unscrubbed was kept: ScrubError: /x.save: no '
            'vmcoreinfo in guest memory' % server['id'],
            self.wait_for_fault(server))
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        # Restored from the managed save, which libvirt then drops.
        self.assert_running(server)
        self.assertFalse(self.domain(server).hasManagedSaveImage(0))
        events = self.sparc_notifications()
        self.assertEqual(['sparc.scrub.start', 'sparc.scrub.error'],
                         [e for e, _ in events])
        self.assertEqual('aborted', events[1][1]['outcome'])
        # And it can be suspended again once the cause is fixed.
        self.finish_managed_save.side_effect = self._fake_finish_managed_save
        self._suspend_server(server)

    def test_scrub_failure_allowed_by_operator(self):
        self.finish_managed_save.side_effect = (
            privsep_checkpoint.PrivilegedScrubError('ScrubError: x'))
        flavor_id = self.create_flavor_with_specs(
            {'sparc:on_failure': 'allow'})
        server = self.create_policy_server(flavor_id=flavor_id)
        server = self._suspend_server(server)
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))
        self.assertEqual('kept-unscrubbed',
                         self.sparc_notifications()[1][1]['outcome'])

    def test_tenant_cannot_allow_failures(self):
        self.finish_managed_save.side_effect = (
            privsep_checkpoint.PrivilegedScrubError('ScrubError: x'))
        server = self.create_policy_server(metadata=dict(
            base.POLICY, **{'sparc:on_failure': 'allow'}))
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.assertIn('nothing unscrubbed was kept',
                      self.wait_for_fault(server))
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})

    def test_invalid_policy_refuses_the_suspend(self):
        server = self.create_policy_server(metadata={
            'sparc:exclude_processes': 'pid:1'})
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.assertIn('refusing pid:1: killing init panics the guest',
                      self.wait_for_fault(server))
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assert_running(server)
