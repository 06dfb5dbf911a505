"""Moves of servers with a privacy policy: allowed between hosts that run
sparc-nova (trait CUSTOM_SPARC_NOVA), live migration only over libvirt's
native TLS; moves to other hosts, and resizes that drop the operator's
spec, are refused and the server stays where it was.
"""

import re

import fixtures

from nova.tests.functional.libvirt import base as libvirt_base

from sparc_nova.virt import host_traits
from tests.nova_functional import base


class MoveTest(libvirt_base.LibvirtMigrationMixin,
               base.SparcServersTestBase):

    #: The driver compute2 runs (None: SparcLibvirtDriver).
    dest_driver = None

    def setUp(self):
        super().setUp()
        if self.dest_driver:
            self.flags(compute_driver=self.dest_driver)
        self.start_compute('compute2')
        self.src = self.computes['compute1']
        self.dest = self.computes['compute2']

    def stub_disk_copy(self):
        """Nova's own migrate_disk_and_power_off copies disk files that
        fakelibvirt does not have: stubbed, as Nova's tests do.
        """
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off', return_value='[]'))

    def use_native_tls(self):
        self.flags(live_migration_with_native_tls=True, group='libvirt')

    def assert_stayed(self, server):
        return self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None,
                     'OS-EXT-SRV-ATTR:host': 'compute1'})

    def assert_tenant_told(self, server, action, words):
        """A project member (not an admin) sees ``words`` in an event of
        the server's ``action``.
        """
        member = self.api_fixture.api
        member.microversion = 'latest'
        for found in member.get_instance_actions(server['id']):
            if found['action'] != action:
                continue
            details = member.get_instance_action_details(
                server['id'], found['request_id'])
            names = [e['event'] for e in details['events']]
            if any(n.startswith('sparc-nova: ') and words in n
                   for n in names):
                return
        self.fail('no sparc-nova event with %r in the %s actions of %s'
                  % (words, action, server['id']))


class MoveBetweenSparcHostsTest(MoveTest):

    def test_every_host_reports_the_trait(self):
        for host in ('compute1', 'compute2'):
            self.assertIn(host_traits.TRAIT, self._get_provider_traits(
                self.compute_rp_uuids[host]))

    def test_live_migration_over_tls(self):
        self.assert_mode()
        self.use_native_tls()
        self.server = self.create_policy_server(host='compute1')
        server = self._live_migrate(self.server, host='compute2')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.migrate_stub_ran)

    def test_live_migration_without_tls_refused(self):
        self.server = self.create_policy_server(host='compute1')
        self._live_migrate(self.server, migration_expected_state='error',
                           host='compute2', wait_for_fault_key=False)
        self.assert_stayed(self.server)
        self.assertFalse(self.migrate_stub_ran)
        self._wait_for_log(re.escape(
            'Migration pre-check error: Live migration of instance %s is '
            'refused by its privacy policy: its memory would cross the '
            'network unencrypted ([libvirt] live_migration_with_native_tls '
            'is off)' % self.server['id']))
        self.assert_tenant_told(self.server, 'live-migration',
                                'live_migration_with_native_tls is off')

    def test_live_migration_without_policy_needs_no_tls(self):
        self.server = self._create_server(networks='none', host='compute1')
        server = self._live_migrate(self.server, host='compute2')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])

    def test_cold_migration(self):
        self.stub_disk_copy()
        self.server = self.create_policy_server(host='compute1')
        server = self._migrate_server(self.server, host='compute2')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        self._confirm_resize(server)

    def test_refused_by_configuration(self):
        self.flags(refuse_cold_migration=True, group='sparc')
        self.stub_disk_copy()
        self.server = self.create_policy_server(host='compute1')
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': 'compute2'}})
        self.assertIn('[sparc] refuse_cold_migration is set',
                      self.wait_for_fault(self.server))
        self.assert_stayed(self.server)


class MoveToPlainLibvirtHostTest(MoveTest):
    """compute2 runs Nova's own libvirt driver: it would not scrub."""

    dest_driver = 'libvirt.LibvirtDriver'

    def test_plain_host_has_no_trait(self):
        self.assertNotIn(host_traits.TRAIT, self._get_provider_traits(
            self.compute_rp_uuids['compute2']))

    def test_live_migration_refused(self):
        self.use_native_tls()
        self.server = self.create_policy_server(host='compute1')
        self._live_migrate(self.server, migration_expected_state='error',
                           host='compute2', wait_for_fault_key=False)
        self.assert_stayed(self.server)
        self.assertFalse(self.migrate_stub_ran)
        self.assertEqual(
            'Live migration of instance %s is refused by its privacy '
            'policy: host compute2 does not run sparc-nova (no trait '
            'CUSTOM_SPARC_NOVA), so its checkpoints would not be scrubbed'
            % self.server['id'], self.wait_for_fault(self.server))
        self.assert_tenant_told(self.server, 'live-migration',
                                'does not run sparc-nova')
        self.assert_running(self.server)

    def test_live_migration_without_policy(self):
        self.server = self._create_server(networks='none', host='compute1')
        server = self._live_migrate(self.server, host='compute2')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.migrate_stub_ran)

    def test_cold_migration_refused(self):
        self.stub_disk_copy()
        self.server = self.create_policy_server(host='compute1')
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': 'compute2'}})
        self.assertEqual(
            'Migration to another host of instance %s is refused by its '
            'privacy policy: host compute2 does not run sparc-nova (no '
            'trait CUSTOM_SPARC_NOVA), so its checkpoints would not be '
            'scrubbed' % self.server['id'], self.wait_for_fault(self.server))
        server = self.assert_stayed(self.server)
        self._wait_for_migration_status(server, ['error'])
        self.assert_tenant_told(self.server, 'migrate',
                                'does not run sparc-nova')


class SameHostResizeTest(base.SparcServersTestBase):

    def test_resize_that_drops_the_operators_spec_refused(self):
        self.flags(allow_resize_to_same_host=True)
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off', return_value='[]'))
        private = self.create_flavor_with_specs(
            {'sparc:exclude_paths': '/root/.ssh/**'})
        plain = self._create_flavor(memory_mb=1024)
        server = self.create_policy_server(metadata={}, flavor_id=private)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': plain}})
        self.assertIn("Resize of instance %s is refused by its privacy "
                      "policy: flavor " % server['id'],
                      self.wait_for_fault(server))
        self.assertIn("drops or changes the operator's "
                      "sparc:exclude_paths", self.faults(server)[0])
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None})
        self.assertEqual({'sparc:exclude_paths': '/root/.ssh/**'},
                         self.api.get_server(server['id'])['flavor'][
                             'extra_specs'])

    def test_resize_that_keeps_the_operators_spec(self):
        self.flags(allow_resize_to_same_host=True)
        specs = {'sparc:exclude_paths': '/root/.ssh/**'}
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off', return_value='[]'))
        current = self.create_flavor_with_specs(specs)
        smaller = self._create_flavor(memory_mb=1024, extra_spec=specs)
        server = self.create_policy_server(metadata={}, flavor_id=current)
        server = self._resize_server(server, smaller)
        self.assertEqual(1024, server['flavor']['ram'])
