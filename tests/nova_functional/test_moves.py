"""Moves whose copies cannot be scrubbed are refused for servers with a
privacy policy.
"""

from nova.tests.functional.libvirt import base as libvirt_base

from tests.nova_functional import base


class MoveTest(libvirt_base.LibvirtMigrationMixin,
               base.SparcServersTestBase):

    def setUp(self):
        super().setUp()
        self.start_compute('compute2')
        self.src = self.computes['compute1']
        self.dest = self.computes['compute2']

    def test_live_migration_refused(self):
        self.assert_mode()
        self.server = self.create_policy_server(host='compute1')
        self._live_migrate(self.server, migration_expected_state='error',
                           host='compute2', wait_for_fault_key=False)
        server = self.api.get_server(self.server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual('compute1', server['OS-EXT-SRV-ATTR:host'])
        self.assertFalse(self.migrate_stub_ran)
        self._wait_for_log('Migration pre-check error: Live migration of '
                           'instance %s is refused by its privacy policy: '
                           'its memory stream cannot be scrubbed'
                           % server['id'])

    def test_live_migration_without_policy(self):
        self.server = self._create_server(networks='none', host='compute1')
        server = self._live_migrate(self.server, host='compute2')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.migrate_stub_ran)

    def test_cold_migration_refused(self):
        self.server = self.create_policy_server(host='compute1')
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': 'compute2'}})
        self.assertEqual(
            'Migration to another host of instance %s is refused by its '
            'privacy policy: its disk copy cannot be scrubbed'
            % self.server['id'], self.wait_for_fault(self.server))
        server = self._wait_for_server_parameter(
            self.server, {'status': 'ACTIVE',
                          'OS-EXT-STS:task_state': None,
                          'OS-EXT-SRV-ATTR:host': 'compute1'})
        self._wait_for_migration_status(server, ['error'])
