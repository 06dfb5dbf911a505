"""Who may see and change an instance's policy: Horizon's policy rules
(with its shipped compute policy file) and Nova's own authorisation.
"""

from django.urls import reverse

from openstack_dashboard import api as horizon_api
from openstack_dashboard.test import helpers as test

from sparc_nova.dashboard.tests import data
from sparc_nova.dashboard.tests import helpers

INDEX_URL = reverse('horizon:project:privacy:index')
MOCKS = {**helpers.READS,
         horizon_api.nova: ['server_metadata_update',
                            'server_metadata_delete', 'snapshot_create']}
POLICY_METADATA = {'sparc:exclude_paths': '/srv/**'}


def url(name, instance_id):
    return reverse('horizon:project:privacy:' + name, args=[instance_id])


class PolicyRulesTests(helpers.RealPolicyMixin, helpers.PrivacyTestCase):

    def own_server(self):
        return data.server('1', 'mine', flavor_specs={},
                           metadata=POLICY_METADATA)

    def foreign_server(self):
        # What an admin-scoped listing could return: another project's
        # instance.
        return data.server('9', 'theirs', flavor_specs={},
                           metadata=POLICY_METADATA,
                           tenant_id=data.OTHER_PROJECT_ID)

    def assert_no_writes(self):
        self.mock_server_metadata_update.assert_not_called()
        self.mock_server_metadata_delete.assert_not_called()
        self.mock_snapshot_create.assert_not_called()

    def row_actions(self, res, instance_id):
        table = res.context['privacy_table']
        row = [r for r in table.data if r.id == instance_id][0]
        return sorted(a.name for a in table.get_row_actions(row))

    @test.create_mocks(MOCKS)
    def test_member_may_edit_clear_and_snapshot(self):
        self.as_user(['member', 'reader'])
        self.mock_reads([self.own_server()], images={})
        res = self.client.get(INDEX_URL)
        self.assertEqual(['clear_policy', 'edit_policy', 'private_snapshot'],
                         self.row_actions(res, '1'))
        res = self.client.post(url('edit', '1'),
                               {'exclude_paths': '/home/**'})
        self.assertNoFormErrors(res)
        self.mock_server_metadata_update.assert_called_once()

    @test.create_mocks(MOCKS)
    def test_reader_sees_the_table_but_no_action(self):
        self.as_user(['reader'])
        self.mock_reads([self.own_server()], images={})
        res = self.client.get(INDEX_URL)
        self.assertEqual(200, res.status_code)
        self.assertEqual([], self.row_actions(res, '1'))
        self.assertContains(res, '<code>/srv/**</code>', html=False)

    @test.create_mocks(MOCKS)
    def test_reader_cannot_edit_clear_or_snapshot(self):
        self.as_user(['reader'])
        self.mock_reads([self.own_server()], images={})
        self.assertEqual(403, self.client.get(url('edit', '1')).status_code)
        res = self.client.post(url('edit', '1'), {'exclude_paths': ''})
        self.assertEqual(403, res.status_code)
        res = self.client.post(url('snapshot', '1'), {'name': 'x'})
        self.assertEqual(403, res.status_code)
        res = self.client.post(INDEX_URL,
                               {'action': 'privacy__clear_policy__1'})
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.assertMessageCount(error=1)
        self.assert_no_writes()

    @test.create_mocks(MOCKS)
    def test_member_cannot_touch_another_projects_instance(self):
        self.as_user(['member', 'reader'])
        self.mock_reads([self.own_server(), self.foreign_server()],
                        images={})
        res = self.client.get(INDEX_URL)
        self.assertEqual([], self.row_actions(res, '9'))
        self.assertEqual(403, self.client.get(url('edit', '9')).status_code)
        self.assertEqual(403, self.client.get(url('detail', '9'))
                         .status_code)
        res = self.client.post(url('edit', '9'), {'exclude_paths': ''})
        self.assertEqual(403, res.status_code)
        res = self.client.post(url('snapshot', '9'), {'name': 'x'})
        self.assertEqual(403, res.status_code)
        res = self.client.post(INDEX_URL,
                               {'action': 'privacy__clear_policy__9'})
        self.assertMessageCount(error=1)
        self.assert_no_writes()

    @test.create_mocks(MOCKS)
    def test_user_without_a_role_cannot_open_the_panel(self):
        self.as_user([])
        self.mock_reads([self.own_server()], images={})
        res = self.client.get(INDEX_URL)
        self.assertNotEqual(200, res.status_code)
        self.mock_server_list.assert_not_called()


class NovaAuthorisationTests(helpers.PrivacyTestCase):
    """Nova answers 404 for an instance of another project: nothing is
    shown and nothing is written.
    """

    @test.create_mocks(MOCKS)
    def test_instance_nova_does_not_show(self):
        self.mock_reads([data.server('1', flavor_specs={})])
        for name in ('edit', 'snapshot', 'detail'):
            with self.subTest(view=name):
                res = self.client.get(url(name, 'foreign'))
                self.assertRedirectsNoFollow(res, INDEX_URL)
        for name, form in (('edit', {'exclude_paths': '/a'}),
                           ('snapshot', {'name': 'x'})):
            with self.subTest(view=name, method='POST'):
                res = self.client.post(url(name, 'foreign'), form)
                self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_server_metadata_update.assert_not_called()
        self.mock_server_metadata_delete.assert_not_called()
        self.mock_snapshot_create.assert_not_called()
