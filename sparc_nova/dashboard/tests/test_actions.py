"""The "Clear Policy" and "Create Private Snapshot" actions."""

from django.urls import reverse

from openstack_dashboard import api as horizon_api
from openstack_dashboard.test import helpers as test

from sparc_nova.dashboard.tests import data
from sparc_nova.dashboard.tests import helpers

INDEX_URL = reverse('horizon:project:privacy:index')
MOCKS = {**helpers.READS,
         horizon_api.nova: ['server_metadata_delete', 'snapshot_create']}


def snapshot_url(instance_id):
    return reverse('horizon:project:privacy:snapshot', args=[instance_id])


class ClearPolicyTests(helpers.PrivacyTestCase):

    def make_servers(self):
        return [data.server('1', 'vm1', flavor_specs=data.FLAVOR_SPECS,
                            metadata={'sparc:exclude_paths': '/srv/**',
                                      'sparc:exclude_paths.1': '/opt/**',
                                      'sparc:follow_ipc': 'false',
                                      'owner': 'alice'}),
                data.server('2', 'vm2', flavor_specs={},
                            metadata={'sparc:suspend': 'refuse'})]

    @test.create_mocks(MOCKS)
    def test_row_action_deletes_only_the_instance_part(self):
        self.mock_reads(self.make_servers())
        res = self.client.post(INDEX_URL,
                               {'action': 'privacy__clear_policy__1'})
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_server_metadata_delete.assert_called_once_with(
            test.IsHttpRequest(), '1',
            ['sparc:exclude_paths', 'sparc:exclude_paths.1',
             'sparc:follow_ipc'])
        self.assertMessageCount(success=1)

    @test.create_mocks(MOCKS)
    def test_table_action_clears_the_selected_rows(self):
        self.mock_reads(self.make_servers())
        res = self.client.post(INDEX_URL,
                               {'action': 'privacy__clear_policy',
                                'object_ids': ['1', '2']})
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.assertEqual(2, self.mock_server_metadata_delete.call_count)
        self.mock_server_metadata_delete.assert_any_call(
            test.IsHttpRequest(), '2', ['sparc:suspend'])

    @test.create_mocks(MOCKS)
    def test_clear_an_instance_nova_does_not_show(self):
        self.mock_reads(self.make_servers())
        res = self.client.post(INDEX_URL,
                               {'action': 'privacy__clear_policy__foreign'})
        # Horizon only acts on rows of the table.
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_server_get.assert_not_called()
        self.mock_server_metadata_delete.assert_not_called()

    @test.create_mocks(MOCKS)
    def test_clear_reads_the_instance_again(self):
        self.mock_reads(self.make_servers())
        # Listed a moment ago, gone (or moved out of reach) now.
        self.mock_server_get.side_effect = self.exceptions.nova
        res = self.client.post(INDEX_URL,
                               {'action': 'privacy__clear_policy__1'})
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_server_metadata_delete.assert_not_called()
        self.assertMessageCount(error=1)

    @test.create_mocks(MOCKS)
    def test_nova_refusing_the_delete(self):
        self.mock_reads(self.make_servers())
        self.mock_server_metadata_delete.side_effect = self.exceptions.nova
        res = self.client.post(INDEX_URL,
                               {'action': 'privacy__clear_policy__1'})
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.assertMessageCount(error=1)


class PrivateSnapshotTests(helpers.PrivacyTestCase):

    def server(self, **kwargs):
        kwargs.setdefault('metadata', {'sparc:exclude_processes': 'gpg-agent'})
        return data.server('1', 'vm1', flavor_specs={}, **kwargs)

    @test.create_mocks(MOCKS)
    def test_get(self):
        self.mock_reads([self.server()], images={})
        res = self.client.get(snapshot_url('1'))
        self.assertTemplateUsed(res, 'project/privacy/snapshot.html')
        self.assertEqual('vm1-private', res.context['form'].initial['name'])

    @test.create_mocks(MOCKS)
    def test_post_creates_the_snapshot_through_nova(self):
        self.mock_reads([self.server()], images={})
        self.mock_snapshot_create.return_value = 'new-image-id'
        res = self.client.post(snapshot_url('1'), {'name': 'vm1-snap'})
        self.assertNoFormErrors(res)
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_snapshot_create.assert_called_once_with(
            test.IsHttpRequest(), '1', 'vm1-snap')
        self.assertMessageCount(success=1)

    @test.create_mocks(MOCKS)
    def test_name_is_required(self):
        self.mock_reads([self.server()], images={})
        res = self.client.post(snapshot_url('1'), {'name': ''})
        self.assertFormErrors(res, count=1)
        self.mock_snapshot_create.assert_not_called()

    @test.create_mocks(MOCKS)
    def test_policy_enforced_by_the_operator_alone_is_enough(self):
        self.mock_reads([data.server('1', flavor_specs=data.FLAVOR_SPECS)],
                        images={})
        res = self.client.post(snapshot_url('1'), {'name': 'vm1-snap'})
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_snapshot_create.assert_called_once()

    @test.create_mocks(MOCKS)
    def test_refused_without_a_policy(self):
        self.mock_reads([self.server(metadata={})], images={})
        for method in (self.client.get, self.client.post):
            res = method(snapshot_url('1'), {'name': 'vm1-snap'})
            self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_snapshot_create.assert_not_called()

    @test.create_mocks(MOCKS)
    def test_refused_with_an_invalid_policy(self):
        self.mock_reads([self.server(metadata={'sparc:follow_ipc': 'x'})],
                        images={})
        res = self.client.post(snapshot_url('1'), {'name': 'vm1-snap'})
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_snapshot_create.assert_not_called()

    @test.create_mocks(MOCKS)
    def test_nova_refusing_the_snapshot(self):
        self.mock_reads([self.server()], images={})
        self.mock_snapshot_create.side_effect = self.exceptions.nova
        res = self.client.post(snapshot_url('1'), {'name': 'vm1-snap'})
        self.assertEqual(200, res.status_code)
        self.assertMessageCount(res, error=1)
