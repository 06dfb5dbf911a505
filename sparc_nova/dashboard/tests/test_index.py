"""The Privacy table: what each row shows, row updates, the detail view."""

from unittest import mock

from django.conf import settings
from django.urls import reverse

import horizon
from openstack_dashboard.test import helpers as test

from sparc_nova.dashboard import instance_privacy
from sparc_nova.dashboard.tests import data
from sparc_nova.dashboard.tests import helpers
from sparc_nova import policy

INDEX_URL = reverse('horizon:project:privacy:index')


def detail_url(instance_id):
    return reverse('horizon:project:privacy:detail', args=[instance_id])


class IndexTests(helpers.PrivacyTestCase):

    def make_servers(self):
        return [
            data.server('1', 'vm1', flavor_specs=data.FLAVOR_SPECS,
                        metadata={'sparc:exclude_processes': 'gpg-agent',
                                  'sparc:follow_ipc': 'false',
                                  'purpose': 'web'}),
            data.server('2', 'plain', flavor_specs={}),
            data.server('3', 'broken', flavor_specs={},
                        metadata={'sparc:scrub_free_memory': 'yes'}),
        ]

    def row(self, res, instance_id):
        table = res.context['privacy_table']
        return [r for r in table.get_rows()
                if r.datum.id == instance_id][0]

    @test.create_mocks(helpers.READS)
    def test_index_shows_effective_policy_with_origins(self):
        self.mock_reads(self.make_servers(), images={},
                        snapshots={'1': data.record('1')})
        res = self.client.get(INDEX_URL)
        self.assertTemplateUsed(res, 'project/privacy/index.html')
        table = res.context['privacy_table']
        self.assertEqual(['1', '2', '3'], [r.id for r in table.data])

        row = self.row(res, '1')
        processes = str(row.cells['exclude_processes'].value)
        # keepassxc comes from the flavor: locked; gpg-agent from the
        # instance: editable.
        self.assertIn('<code>keepassxc</code>', processes)
        self.assertIn('sparc-origin-flavor', processes)
        self.assertIn('fa-lock', processes)
        self.assertIn('<code>gpg-agent</code>', processes)
        self.assertIn('sparc-origin-instance', processes)
        suspend = str(row.cells['suspend'].value)
        self.assertIn('<code>refuse</code>', suspend)
        self.assertIn('sparc-origin-flavor', suspend)
        # The instance's follow_ipc=false would weaken the flavor's
        # keepassxc: refused, and the panel says so.
        follow = str(row.cells['follow_ipc'].value)
        self.assertIn('<code>true</code>', follow)
        self.assertIn('Refused: sparc:follow_ipc=false (instance metadata)',
                      str(row.cells['policy_state'].value))
        free = str(row.cells['scrub_free_memory'].value)
        self.assertIn('<code>true</code>', free)
        self.assertIn('sparc-origin-default', free)
        self.assertIn('Enforced', str(row.cells['policy_state'].value))
        self.assertEqual('Scrubbed', row.cells['scrub'].value)
        self.assertTrue(row.cells['scrub'].status)
        snapshot = str(row.cells['last_snapshot'].value)
        self.assertIn('vm1-private', snapshot)
        self.assertIn('2 files removed, verification passed', snapshot)

        plain = self.row(res, '2')
        self.assertIn('None: checkpoints are not scrubbed',
                      str(plain.cells['policy_state'].value))
        self.assertEqual('No snapshot', plain.cells['scrub'].value)

        # The page is rendered on the server: the table is in the HTML.
        self.assertContains(res, 'id="privacy"')
        self.assertContains(res, '<code>keepassxc</code>', html=False)
        self.mock_server_list.assert_called_once_with(test.IsHttpRequest(),
                                                      marker=None)

    @test.create_mocks(helpers.READS)
    def test_invalid_policy_shows_the_policy_modules_message(self):
        self.mock_reads(self.make_servers(), images={})
        res = self.client.get(INDEX_URL)
        cell = str(self.row(res, '3').cells['policy_state'].value)
        expected = str(policy.Problem('sparc:scrub_free_memory', 'yes',
                                      policy.INSTANCE,
                                      'expected true or false'))
        self.assertIn('Invalid: checkpoints fail', cell)
        self.assertIn(expected.replace("'", '&#x27;'), cell)

    @test.create_mocks(helpers.READS)
    def test_values_are_escaped(self):
        server = data.server('1', flavor_specs={}, metadata={
            'sparc:exclude_paths': '/srv/<script>alert(1)</script>'})
        summary = '<img src=x onerror=alert(2)>'
        self.mock_reads([server], images={},
                        snapshots={'1': data.record('1', summary=summary)})
        res = self.client.get(INDEX_URL)
        self.assertNotContains(res, '<script>alert(1)', html=False)
        self.assertNotContains(res, '<img src=x', html=False)
        self.assertContains(res, '&lt;script&gt;alert(1)', html=False)
        self.assertContains(res, '&lt;img src=x', html=False)

    @test.create_mocks(helpers.READS)
    def test_image_requirements_are_locked(self):
        self.mock_reads([data.server('1', flavor_specs={})])
        res = self.client.get(INDEX_URL)
        paths = str(self.row(res, '1').cells['exclude_paths'].value)
        self.assertIn('<code>/home/*/.ssh/**</code>', paths)
        self.assertIn('sparc-origin-image', paths)
        self.assertIn('fa-lock', paths)

    @test.create_mocks(helpers.READS)
    def test_unreadable_sources_are_said(self):
        self.mock_reads([data.server('1', flavor_specs=None,
                                     metadata={'sparc:exclude_paths': '/a'})],
                        images=False)
        res = self.client.get(INDEX_URL)
        cell = str(self.row(res, '1').cells['policy_state'].value)
        self.assertIn('extra specs are not visible to you', cell)
        self.assertIn('properties could not be read', cell)

    @test.create_mocks(helpers.READS)
    def test_nova_failure_shows_an_error_and_an_empty_table(self):
        self.mock_server_list.side_effect = self.exceptions.nova
        res = self.client.get(INDEX_URL)
        self.assertEqual([], res.context['privacy_table'].data)
        self.assertMessageCount(res, error=1)

    @test.create_mocks(helpers.READS)
    def test_glance_failure_keeps_the_table(self):
        self.mock_reads(self.make_servers(), images={})
        self.mock_latest_snapshots.side_effect = self.exceptions.glance
        res = self.client.get(INDEX_URL)
        self.assertEqual(3, len(res.context['privacy_table'].data))
        self.assertMessageCount(res, error=1)

    @test.create_mocks(helpers.READS)
    def test_actions_per_row(self):
        self.mock_reads(self.make_servers(), images={})
        res = self.client.get(INDEX_URL)
        table = res.context['privacy_table']

        def actions(instance_id):
            row = [r for r in table.data if r.id == instance_id][0]
            return sorted(a.name for a in table.get_row_actions(row))

        self.assertEqual(['clear_policy', 'edit_policy', 'private_snapshot'],
                         actions('1'))
        # No policy: a snapshot would not be scrubbed; nothing to clear.
        self.assertEqual(['edit_policy'], actions('2'))
        # Invalid policy: a snapshot would fail; it can be fixed/cleared.
        self.assertEqual(['clear_policy', 'edit_policy'], actions('3'))
        self.assertEqual(['clear_policy', 'filter'],
                         sorted(a.name for a in table.get_table_actions()))


class RowUpdateTests(helpers.PrivacyTestCase):

    @test.create_mocks(helpers.READS)
    def test_pending_snapshot_row_polls_until_the_record_lands(self):
        server = data.server('1', flavor_specs={},
                             metadata={'sparc:exclude_paths': '/srv/**'})
        pending = data.record('1', status='queued', scrubbed=None)
        self.mock_reads([server], images={}, snapshots={'1': pending})
        res = self.client.get(INDEX_URL)
        row = res.context['privacy_table'].get_rows()[0]
        self.assertIsNone(row.status)
        self.assertEqual('In progress', row.cells['scrub'].value)
        self.assertIn('ajax-update', row.classes)
        self.assertIn('warning', row.classes)  # Horizon polls these
        update_url = row.attrs['data-update-url']
        self.assertIn('action=row_update', update_url)
        # A pending snapshot must not be started twice.
        self.assertNotIn('private_snapshot',
                         [a.name for a in res.context['privacy_table']
                          .get_row_actions(row.datum)])

        # The compute driver uploads the scrubbed image with its records.
        self.mock_reads([server], images={},
                        snapshots={'1': data.record('1')})
        res = self.client.get(update_url,
                              HTTP_X_REQUESTED_WITH='XMLHttpRequest')
        self.assertEqual(200, res.status_code)
        self.assertContains(res, 'Scrubbed')
        self.assertContains(res, 'verification passed')
        self.assertContains(res, 'status_up')
        self.mock_server_get.assert_called_with(test.IsHttpRequest(), '1')

    @test.create_mocks(helpers.READS)
    def test_unscrubbed_snapshot_marks_the_row(self):
        server = data.server('1', flavor_specs={},
                             metadata={'sparc:exclude_paths': '/srv/**',
                                       'sparc:on_failure': 'allow'})
        kept = data.record('1', scrubbed='false',
                           summary='scrub failed, kept unscrubbed '
                                   '(on_failure=allow): no space left')
        self.mock_reads([server], images={}, snapshots={'1': kept})
        res = self.client.get(INDEX_URL)
        row = res.context['privacy_table'].get_rows()[0]
        self.assertFalse(row.status)
        self.assertEqual('Not scrubbed', row.cells['scrub'].value)
        self.assertIn('kept unscrubbed',
                      str(row.cells['last_snapshot'].value))


class FailedSnapshotTests(helpers.PrivacyTestCase):
    """A scrub that fails keeps nothing: Nova's action log is the trace."""

    def server(self):
        return data.server('1', flavor_specs={},
                           metadata={'sparc:exclude_paths': '/srv/**'})

    @test.create_mocks(helpers.READS)
    def test_failed_request_after_the_last_snapshot(self):
        failed = instance_privacy.InstanceRequest(
            'createImage', 'req-0f1', '2026-11-27T09:00:00.000000', True)
        self.mock_reads([self.server(), data.server('2', flavor_specs={})],
                        images={}, requests={'1': failed},
                        snapshots={'1': data.record(
                            '1', created_at='2026-11-27T08:00:00Z')})
        res = self.client.get(INDEX_URL)
        row = [r for r in res.context['privacy_table'].get_rows()
               if r.datum.id == '1'][0]
        self.assertEqual('Failed', row.cells['scrub'].value)
        self.assertFalse(row.status)
        cell = str(row.cells['last_snapshot'].value)
        self.assertIn('failed and no image was kept', cell)
        self.assertIn('req-0f1', cell)
        # Only instances whose snapshots are scrubbed are looked up.
        self.mock_policed_requests.assert_called_once_with(
            test.IsHttpRequest(), '1', suspended=False)

    @test.create_mocks(helpers.READS)
    def test_failed_request_shows_why(self):
        failed = instance_privacy.InstanceRequest(
            'shelve', 'req-0f2', '2026-11-27T09:00:00.000000', True,
            reason="Invalid privacy policy for instance 1: "
                   "sparc:follow_ipc='maybe' (instance metadata): expected "
                   "true or false")
        self.mock_reads([self.server()], images={}, requests={'1': failed})
        res = self.client.get(INDEX_URL)
        cell = str(res.context['privacy_table'].get_rows()[0]
                   .cells['last_snapshot'].value)
        self.assertIn('failed and no image was kept', cell)
        self.assertIn('Why: Invalid privacy policy for instance 1: '
                      'sparc:follow_ipc=&#x27;maybe&#x27; (instance '
                      'metadata): expected true or false', cell)

    @test.create_mocks(helpers.READS)
    def test_failure_before_the_last_snapshot_is_history(self):
        failed = instance_privacy.InstanceRequest(
            'createImage', 'req-0f1', '2026-11-27T07:00:00.000000', True)
        self.mock_reads([self.server()], images={}, requests={'1': failed},
                        snapshots={'1': data.record(
                            '1', created_at='2026-11-27T08:00:00Z')})
        res = self.client.get(INDEX_URL)
        row = res.context['privacy_table'].get_rows()[0]
        self.assertEqual('Scrubbed', row.cells['scrub'].value)

    @test.create_mocks(helpers.READS)
    def test_row_update_turns_failed_when_the_image_is_gone(self):
        server = data.server('1', flavor_specs={},
                             task_state='image_uploading',
                             metadata={'sparc:exclude_paths': '/srv/**'})
        self.mock_reads([server], images={})
        res = self.client.get(INDEX_URL)
        row = res.context['privacy_table'].get_rows()[0]
        self.assertEqual('In progress', row.cells['scrub'].value)
        # Nova deleted the half-made image and marked the action Error.
        failed = instance_privacy.InstanceRequest(
            'createImage', 'req-0f1', '2026-11-27T09:00:00.000000', True)
        self.mock_reads([self.server()], images={}, requests={'1': failed})
        res = self.client.get(row.attrs['data-update-url'],
                              HTTP_X_REQUESTED_WITH='XMLHttpRequest')
        self.assertContains(res, 'Failed')
        self.assertContains(res, 'failed and no image was kept')
        self.assertContains(res, 'status_down')


class RefusedOperationTests(helpers.PrivacyTestCase):
    """What the compute driver refused, and why, as a member sees it:
    the ``sparc-nova:`` event of the request in Nova's action log.
    """

    SUSPEND_REASON = ('Suspend of instance 1 refused: sparc:suspend=refuse '
                      '(flavor extra specs)')

    def server(self):
        return data.server('1', flavor_specs={'sparc:suspend': 'refuse'},
                           metadata={'sparc:exclude_paths': '/srv/**'})

    def cell(self, requests):
        self.mock_reads([self.server()], images={},
                        requests={'1': requests})
        res = self.client.get(INDEX_URL)
        row = res.context['privacy_table'].get_rows()[0]
        return row, str(row.cells['last_refused'].value)

    @test.create_mocks(helpers.READS)
    def test_refused_suspend_shows_why(self):
        suspend = instance_privacy.InstanceRequest(
            'suspend', 'req-5u5', '2026-11-27T09:00:00.000000', True,
            reason=self.SUSPEND_REASON)
        row, cell = self.cell([suspend])
        self.assertIn('Suspend failed', cell)
        self.assertIn(self.SUSPEND_REASON, cell)
        self.assertIn('2026-11-27 09:00:00 UTC', cell)
        self.assertIn('req-5u5', cell)
        self.assertIn('sparc-refused-suspend', cell)
        # No snapshot failed: the scrub state is unaffected.
        self.assertEqual('No snapshot', row.cells['scrub'].value)

    @test.create_mocks(helpers.READS)
    def test_refused_shelve_shows_why_and_fails_the_scrub(self):
        reason = ('Privacy scrub of the snapshot of instance 1 failed: '
                  'no space left on device')
        shelve = instance_privacy.InstanceRequest(
            'shelve', 'req-5he', '2026-11-27T10:00:00.000000', True,
            reason=reason)
        suspend = instance_privacy.InstanceRequest(
            'suspend', 'req-5u5', '2026-11-27T09:00:00.000000', True,
            reason=self.SUSPEND_REASON)
        row, cell = self.cell([suspend, shelve])
        self.assertIn('Shelve failed', cell)
        self.assertIn(reason, cell)
        # Newest first.
        self.assertLess(cell.index('Shelve failed'),
                        cell.index('Suspend failed'))
        self.assertEqual('Failed', row.cells['scrub'].value)

    @test.create_mocks(helpers.READS)
    def test_reason_is_escaped(self):
        # The reason quotes tenant metadata: never markup.
        reason = ("Invalid privacy policy for instance 1: "
                  "sparc:exclude_paths='<script>alert(1)</script>' "
                  "(instance metadata): not an absolute path")
        suspend = instance_privacy.InstanceRequest(
            'suspend', 'req-<b>', '2026-11-27T09:00:00.000000', True,
            reason=reason)
        self.mock_reads([self.server()], images={},
                        requests={'1': [suspend]})
        res = self.client.get(INDEX_URL)
        self.assertNotContains(res, '<script>alert(1)</script>')
        self.assertNotContains(res, 'req-<b>')
        self.assertContains(res, '&lt;script&gt;alert(1)&lt;/script&gt;')
        self.assertContains(res, 'req-&lt;b&gt;')

    @test.create_mocks(helpers.READS)
    def test_failure_without_a_policy_event_is_not_a_refusal(self):
        resize = instance_privacy.InstanceRequest(
            'resize', 'req-r', '2026-11-27T09:00:00.000000', True)
        row, cell = self.cell([resize])
        self.assertEqual('-', cell)

    @test.create_mocks(helpers.READS)
    def test_later_request_of_the_same_action_hides_the_refusal(self):
        # Nova's action log for the instance: the refused suspend, then
        # one that went through (the policy was changed in between). Only
        # the newest request of each action counts.
        log = [mock.Mock(action='suspend', request_id='req-ok',
                         start_time='2026-11-27T10:00:00.000000',
                         message=None),
               mock.Mock(action='suspend', request_id='req-refused',
                         start_time='2026-11-27T09:00:00.000000',
                         message='Error')]
        newest = instance_privacy.newest_requests(log)
        row, cell = self.cell(list(newest.values()))
        self.assertEqual('-', cell)

    @test.create_mocks(helpers.READS)
    def test_only_instances_the_driver_may_police_are_looked_up(self):
        self.mock_reads([self.server(), data.server('2', flavor_specs={}),
                         data.server('3', flavor_specs=None)],
                        images={})
        self.client.get(INDEX_URL)
        self.assertEqual(
            ['1', '3'],
            sorted(c.args[1]
                   for c in self.mock_policed_requests.call_args_list))


class DetailTests(helpers.PrivacyTestCase):

    @test.create_mocks(helpers.READS)
    def test_detail_lists_snapshots_with_their_records(self):
        server = data.server('1', flavor_specs=data.FLAVOR_SPECS,
                             metadata={'sparc:exclude_paths': '/srv/**'})
        self.mock_reads([server], snapshots={'1': data.record('1')})
        res = self.client.get(detail_url('1'))
        self.assertTemplateUsed(res, 'project/privacy/detail.html')
        instance = res.context['instance']
        self.assertContains(res, instance.effective.digest)
        self.assertContains(res, '2 files removed, verification passed')
        self.assertContains(res, 'sparc-scrub-scrubbed')
        self.assertContains(res, 'sparc-enforced-flavor')
        self.assertContains(res, 'sparc-enforced-image')

    @test.create_mocks(helpers.READS)
    def test_detail_lists_refused_operations_escaped(self):
        server = data.server('1', flavor_specs={},
                             metadata={'sparc:exclude_paths': '/srv/**'})
        suspend = instance_privacy.InstanceRequest(
            'suspend', 'req-5u5', '2026-11-27T09:00:00.000000', True,
            reason='Suspend refused: <script>alert(1)</script>')
        self.mock_reads([server], requests={'1': [suspend]})
        res = self.client.get(detail_url('1'))
        self.assertContains(res, 'sparc-refused-suspend')
        self.assertContains(res, '2026-11-27 09:00:00')
        self.assertContains(res, 'req-5u5')
        self.assertContains(
            res, 'Suspend refused: &lt;script&gt;alert(1)&lt;/script&gt;')
        self.assertNotContains(res, '<script>alert(1)</script>')

    def mock_refusals(self, *actions):
        """Instance 1 with a policy, a snapshot and a refused request of
        each of ``actions``.
        """
        server = data.server('1', flavor_specs={},
                             metadata={'sparc:exclude_paths': '/srv/**'})
        requests = [instance_privacy.InstanceRequest(
            action, 'req-%d' % i, '2026-11-27T09:0%d:00.000000' % i, True,
            reason='refused') for i, action in enumerate(actions)]
        self.mock_reads([server], snapshots={'1': data.record('1')},
                        requests={'1': requests})

    @test.create_mocks(helpers.READS)
    def test_detail_counts_in_the_singular(self):
        self.mock_refusals('suspend')
        res = self.client.get(detail_url('1'))
        self.assertContains(res, '1 snapshot of this instance.')
        self.assertContains(
            res, '1 operation was refused by the privacy policy')

    @test.create_mocks(helpers.READS)
    def test_detail_counts_in_the_plural(self):
        self.mock_refusals('suspend', 'createImage')
        self.mock_snapshots.return_value = [
            data.record('1'),
            data.record('1', image_id='5a000000-0000-4000-8000-000000000002',
                        name='vm1-older')]
        res = self.client.get(detail_url('1'))
        self.assertContains(res, '2 snapshots of this instance.')
        self.assertContains(
            res, '2 operations were refused by the privacy policy')

    @test.create_mocks(helpers.READS)
    def test_detail_of_an_instance_nova_does_not_show(self):
        self.mock_reads([])
        res = self.client.get(detail_url('foreign'))
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_snapshots.assert_not_called()


class PluginTests(test.TestCase):
    """The enabled/ file puts the panel where the issue says."""

    def test_panel_is_under_project_compute(self):
        dashboard = horizon.get_dashboard('project')
        panel = dashboard.get_panel('privacy')
        self.assertEqual('Privacy', str(panel.name))
        group = [g for g in dashboard.get_panel_groups().values()
                 if 'privacy' in [p.slug for p in g]][0]
        self.assertEqual('compute', group.slug)
        self.assertIn('horizon.dashboard.sparc.images',
                      settings.HORIZON_CONFIG['angular_modules'])
        self.assertIn('dashboard/sparc/images.module.js',
                      settings.HORIZON_CONFIG['js_files'])
        self.assertIn('sparc_nova.dashboard', settings.INSTALLED_APPS)
