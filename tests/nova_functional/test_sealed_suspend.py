"""Suspend with ``sparc:suspend=seal``: the key in the key manager
(castellan's in-memory one, with Barbican's project ownership), the
managed save sealed by the privileged daemon, unsealed on resume.

fakelibvirt writes no managed save, so the daemon's seal, unseal and kill
fallback are fakes that keep the key they were handed and write (or
delete) the sealed-pages file next to where the managed save would be;
the daemon's look at that file (sealed_pages_state) and its deletion
(discard_sealed_pages) are the real entry points, in-process.
"""

import os

import fixtures
from nova import context as nova_context
from nova import objects

from sparc_nova.checkpoint import sealed
from sparc_nova.privsep import checkpoint as privsep_checkpoint
from sparc_nova.virt.libvirt import driver as sparc_driver
from tests import fake_key_manager
from tests.nova_functional import base

SEAL_POLICY = {'sparc:exclude_processes': 'gpg-agent,vault',
               'sparc:suspend': 'seal'}
ENTRY = 'sparc_nova.privsep.checkpoint.'


def _managed_save_remove(domain, flags=0):
    domain._has_saved_state = False


class SealedSuspendTest(base.SparcServersTestBase):

    def setUp(self):
        self.key_manager = fake_key_manager.ProjectKeyManager()
        #: instance name -> the key the daemon sealed with.
        self.sealed_with = {}
        self.tampered = False
        super().setUp()
        # fakelibvirt's undefineFlags calls managedSaveRemove() without
        # its flags: a suspended server could not be deleted.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.managedSaveRemove',
            _managed_save_remove))
        self.useFixture(fixtures.MockPatch(
            'sparc_nova.virt.seal_keys.key_manager.API',
            return_value=self.key_manager))
        self.seal = self.useFixture(fixtures.MockPatch(
            ENTRY + 'seal_managed_save',
            side_effect=self._fake_seal)).mock
        self.unseal = self.useFixture(fixtures.MockPatch(
            ENTRY + 'unseal_managed_save',
            side_effect=self._fake_unseal)).mock
        self.kill = self.useFixture(fixtures.MockPatch(
            ENTRY + 'kill_sealed_managed_save',
            side_effect=self._fake_kill)).mock

    # -- the daemon's side, faked ------------------------------------------

    def sealed_file(self, server):
        return sealed.sealed_path(os.path.join(
            self.managed_save_dir,
            server['OS-EXT-SRV-ATTR:instance_name'] + '.save'))

    def _fake_seal(self, *, path, instance_name, key, selectors,
                   exclude_paths, follow_ipc, scrub_free_memory):
        self.assertEqual(
            os.path.join(self.managed_save_dir, instance_name + '.save'),
            path)
        self.assertIsInstance(key, bytes)
        self.assertEqual(32, len(key))
        self.sealed_with[instance_name] = key
        with open(sealed.sealed_path(path), 'wb') as f:
            f.write(b'SPARCSLD sealed pages')
        self.events.append(('privsep-seal', instance_name))
        return {'summary': 'sealed %s: 1 process' % instance_name,
                'report': {}}

    def _fake_unseal(self, *, path, instance_name, key):
        if self.tampered:
            raise privsep_checkpoint.PrivilegedScrubError(
                'SealedFileError: %s: record 3 (guest physical 0x7000) fails '
                'its authentication tag: the file was altered'
                % sealed.sealed_path(path))
        if key != self.sealed_with.get(instance_name):
            raise privsep_checkpoint.PrivilegedScrubError(
                'SealedFileError: %s: the key does not open it: a wrong '
                'key, or its header was altered' % sealed.sealed_path(path))
        os.unlink(sealed.sealed_path(path))
        self.events.append(('privsep-unseal', instance_name))
        return {'frames_restored': 12, 'byte_ranges_restored': 1,
                'pages_written': 13, 'timings': {}}

    def _fake_kill(self, *, path, instance_name, selectors, exclude_paths,
                   follow_ipc, scrub_free_memory):
        os.unlink(sealed.sealed_path(path))
        self.events.append(('privsep-kill', instance_name, list(selectors)))
        return {'summary': 'scrubbed %s: 2 processes' % instance_name,
                'report': {}}

    # -- helpers -------------------------------------------------------------

    def key_ref(self, server):
        instance = objects.Instance.get_by_uuid(
            self.ctxt, server['id'], expected_attrs=['system_metadata'])
        return instance.system_metadata.get(sparc_driver.SEAL_KEY_REF)

    def member_events(self, server, action):
        """(name, result) of the events of the server's ``action``
        requests, as a project member reads them.
        """
        member = self.api_fixture.api
        member.microversion = 'latest'
        events = []
        for found in member.get_instance_actions(server['id']):
            if found['action'] == action:
                details = member.get_instance_action_details(
                    server['id'], found['request_id'])
                events.extend((e['event'], e.get('result'))
                              for e in details['events'])
        return events

    def sealed_server(self, metadata=SEAL_POLICY):
        server = self.create_policy_server(metadata=metadata)
        server = self._suspend_server(server)
        self.assertEqual('SUSPENDED', server['status'])
        return server

    def resume_fails(self, server):
        """Ask for a resume that fails; the fault, once the server is
        SUSPENDED again.
        """
        self.api.post_server_action(server['id'], {'resume': {}})
        fault = self.wait_for_fault(server)
        self._wait_for_server_parameter(
            server, {'status': 'SUSPENDED', 'OS-EXT-STS:task_state': None})
        return fault

    # -- tests ---------------------------------------------------------------

    def test_sealed_suspend_then_resume(self):
        self.assert_mode()
        server = self.sealed_server()
        name = server['OS-EXT-SRV-ATTR:instance_name']
        # Sealed, not scrubbed: no follower, the daemon got the key.
        self.assertEqual(0, self.follow_managed_save.call_count)
        self.seal.assert_called_once_with(
            path=os.path.join(self.managed_save_dir, name + '.save'),
            instance_name=name, key=self.sealed_with[name],
            selectors=['gpg-agent', 'vault'], exclude_paths=[],
            follow_ipc=True, scrub_free_memory=True)
        # The key is the project's secret; the host keeps its reference.
        ref = self.key_ref(server)
        self.assertIsNotNone(ref)
        secret = self.key_manager.keys[ref]
        self.assertEqual(self.sealed_with[name], secret.get_encoded())
        self.assertEqual(('AES', 256), (secret.algorithm,
                                        secret.bit_length))
        self.assertIn(server['id'], secret.name)
        self.assertEqual(server['tenant_id'], self.key_manager.owners[ref])
        self.assertTrue(os.path.exists(self.sealed_file(server)))
        self.assertIn(('sparc-nova: sealed', 'Success'),
                      self.member_events(server, 'suspend'))
        self.assertEqual(['sparc.scrub.start', 'sparc.scrub.end'],
                         [e for e, _ in self.sparc_notifications()])

        server = self._resume_server(server)
        self.assert_running(server)
        self.unseal.assert_called_once_with(
            path=os.path.join(self.managed_save_dir, name + '.save'),
            instance_name=name, key=self.sealed_with[name])
        # Unsealed, then the secret deleted and forgotten.
        self.assertFalse(os.path.exists(self.sealed_file(server)))
        self.assertEqual({}, self.key_manager.keys)
        self.assertIsNone(self.key_ref(server))
        self.assertEqual(0, self.kill.call_count)

    def test_key_missing_keeps_the_server_suspended(self):
        server = self.sealed_server()
        ref = self.key_ref(server)
        self.key_manager.delete(
            nova_context.RequestContext(project_id=server['tenant_id']),
            ref)
        fault = self.resume_fails(server)
        self.assertEqual(
            'The sealing key of instance %s could not be fetched in the key '
            'manager: secret %s does not exist (it was deleted?)'
            % (server['id'], ref), fault)
        self.assertIn(('sparc-nova: ' + fault, 'Error'),
                      self.member_events(server, 'resume'))
        # Nothing changed: still sealed, the reference kept.
        self.assertTrue(os.path.exists(self.sealed_file(server)))
        self.assertEqual(ref, self.key_ref(server))
        self.assertEqual(0, self.unseal.call_count)
        self.assertEqual(0, self.kill.call_count)
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))

    def test_key_manager_down_keeps_the_server_suspended(self):
        server = self.sealed_server()
        self.key_manager.unreachable = True
        self.assertIn('the key manager failed or is unreachable',
                      self.resume_fails(server))
        self.assertTrue(os.path.exists(self.sealed_file(server)))
        self.key_manager.unreachable = False
        self._resume_server(server)
        self.assertEqual(1, self.unseal.call_count)
        self.assertEqual({}, self.key_manager.keys)

    def test_fallback_kill_resumes_without_the_excluded_processes(self):
        self.flags(seal_fallback='kill', group='sparc')
        server = self.sealed_server()
        name = server['OS-EXT-SRV-ATTR:instance_name']
        ref = self.key_ref(server)
        self.key_manager.delete(
            nova_context.RequestContext(project_id=server['tenant_id']),
            ref)
        server = self._resume_server(server)
        self.assert_running(server)
        self.assertIn(('privsep-kill', name, ['gpg-agent', 'vault']),
                      self.events)
        self.assertEqual(0, self.unseal.call_count)
        self.assertFalse(os.path.exists(self.sealed_file(server)))
        self.assertIsNone(self.key_ref(server))
        # Reported to the project.
        names = [n for n, _ in self.member_events(server, 'resume')]
        self.assertIn(
            'sparc-nova: Resumed without the excluded processes ([sparc] '
            'seal_fallback = kill): the sealing key could not be fetched: '
            'secret %s does not exist (it was deleted?)' % ref, names)

    def test_tampered_sealed_pages_are_refused_and_nothing_changes(self):
        server = self.sealed_server()
        ref = self.key_ref(server)
        self.tampered = True
        fault = self.resume_fails(server)
        self.assertTrue(fault.startswith(
            'Unseal of the sealed memory image of instance %s failed, '
            'nothing changed, the server stays suspended: SealedFileError: '
            % server['id']), fault)
        self.assertTrue(os.path.exists(self.sealed_file(server)))
        self.assertIn(ref, self.key_manager.keys)
        self.assertEqual(ref, self.key_ref(server))
        self.assertEqual(0, self.kill.call_count)

    def test_wrong_key_is_refused_and_nothing_changes(self):
        server = self.sealed_server()
        name = server['OS-EXT-SRV-ATTR:instance_name']
        self.sealed_with[name] = bytes(32)
        fault = self.resume_fails(server)
        self.assertIn('failed, nothing changed, the server stays '
                      'suspended: SealedFileError: ', fault)
        self.assertTrue(os.path.exists(self.sealed_file(server)))
        self.assertIn(self.key_ref(server), self.key_manager.keys)

    def test_delete_deletes_the_secret_and_the_sealed_pages(self):
        server = self.sealed_server()
        self.assertEqual(1, len(self.key_manager.keys))
        self._delete_server(server)
        self.assertEqual({}, self.key_manager.keys)
        self.assertFalse(os.path.exists(self.sealed_file(server)))

    def test_hard_reboot_drops_the_sealed_state(self):
        # Nova's hard reboot drops the managed save (the guest boots from
        # its disks): its sealed pages and secret go too.
        server = self.sealed_server()
        self._reboot_server(server, hard=True)
        self.assertEqual({}, self.key_manager.keys)
        self.assertFalse(os.path.exists(self.sealed_file(server)))
        self.assertIsNone(self.key_ref(server))

    def test_shelve_uploads_the_scrubbed_disk_and_drops_the_seal(self):
        server = self.sealed_server(metadata=dict(
            SEAL_POLICY, **{'sparc:exclude_paths': '/home/*/.ssh/**'}))
        self.api.post_server_action(server['id'], {'shelve': {}})
        server = self._wait_for_server_parameter(
            server, {'status': 'SHELVED_OFFLOADED',
                     'OS-EXT-STS:task_state': None})
        # The image holds the disk, scrubbed; no memory, no key.
        (image_id, body), = self.uploads.items()
        self.assertEqual(base.SCRUBBED_IMAGE, body)
        self.assertEqual('true', self.image(image_id)['properties'].get(
            'sparc_scrubbed'))
        self.assertEqual({}, self.key_manager.keys)
        self.assertFalse(os.path.exists(self.sealed_file(server)))

    def test_seal_failure_rolls_back_and_deletes_the_secret(self):
        self.seal.side_effect = privsep_checkpoint.PrivilegedScrubError(
            'ScrubError: /x.save: no vmcoreinfo in guest memory')
        server = self.create_policy_server(metadata=SEAL_POLICY)
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.assertIn('nothing unscrubbed was kept: ScrubError: /x.save: '
                      'no vmcoreinfo in guest memory',
                      self.wait_for_fault(server))
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assert_running(server)
        self.assertFalse(self.domain(server).hasManagedSaveImage(0))
        self.assertEqual({}, self.key_manager.keys)
        self.assertIsNone(self.key_ref(server))

    def test_key_manager_down_refuses_the_suspend(self):
        self.key_manager.unreachable = True
        server = self.create_policy_server(metadata=SEAL_POLICY)
        self.api.post_server_action(server['id'], {'suspend': {}})
        self.assertIn('could not be stored in the key manager: the key '
                      'manager failed or is unreachable',
                      self.wait_for_fault(server))
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assert_running(server)
        self.assertEqual(0, self.seal.call_count)
        self.assertFalse(self.domain(server).hasManagedSaveImage(0))

    def test_operator_scrub_overrides_a_tenants_seal(self):
        flavor_id = self.create_flavor_with_specs({'sparc:suspend': 'scrub'})
        server = self.create_policy_server(metadata=SEAL_POLICY,
                                           flavor_id=flavor_id)
        self._suspend_server(server)
        self.assertEqual(0, self.seal.call_count)
        self.assertEqual(1, self.follow_managed_save.call_count)
        self.assertEqual({}, self.key_manager.keys)
