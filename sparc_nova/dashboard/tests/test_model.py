"""InstancePrivacy, SnapshotRecord and the plugin's API reads."""

from unittest import mock

from openstack_dashboard import api as horizon_api
from openstack_dashboard.test import helpers as test

from sparc_nova.dashboard import api
from sparc_nova.dashboard import instance_privacy
from sparc_nova.dashboard.tests import data
from sparc_nova import policy


class InstancePrivacyTests(test.TestCase):

    def make(self, metadata=None, flavor_specs=None,
             image_properties=None, **kwargs):
        server = data.server(metadata=metadata, flavor_specs=flavor_specs,
                             **kwargs)
        return instance_privacy.InstancePrivacy.from_server(
            server, flavor_specs, image_properties)

    def test_merges_the_three_sources_with_origins(self):
        row = self.make(
            metadata={'sparc:exclude_processes': 'gpg-agent,keepassxc',
                      'sparc:follow_ipc': 'false', 'owner': 'alice'},
            flavor_specs=data.FLAVOR_SPECS,
            image_properties=data.IMAGE_PROPERTIES)
        self.assertTrue(row.valid)
        self.assertEqual(['keepassxc', 'gpg-agent'],
                         row.effective.exclude_processes)
        self.assertEqual({'keepassxc': ['flavor', 'instance'],
                          'gpg-agent': ['instance']},
                         row.effective.origins['exclude_processes'])
        self.assertEqual({'/home/*/.ssh/**': ['image']},
                         row.effective.origins['exclude_paths'])
        self.assertEqual('refuse', row.effective.suspend)
        self.assertEqual(['flavor'], row.effective.origins['suspend'])
        # The tenant cannot relax follow_ipc for the flavor's keepassxc.
        self.assertTrue(row.effective.follow_ipc)
        self.assertEqual([('follow_ipc', 'instance')],
                         [(r.key, r.source) for r in row.effective.refused])
        # Only sparc-nova keys are policy; scrub records are not.
        self.assertEqual(['sparc:exclude_processes', 'sparc:follow_ipc'],
                         row.instance_keys)
        self.assertNotIn('sparc_scrubbed', row.sources['image'])
        self.assertEqual([], row.incomplete)

    def test_digest_is_the_policy_modules(self):
        metadata = {'sparc:exclude_paths': '/srv/keys/**'}
        row = self.make(metadata=metadata, flavor_specs={})
        expected = policy.from_sources(instance=metadata).digest
        self.assertEqual(expected, row.effective.digest)

    def test_invalid_source_keeps_the_problems(self):
        row = self.make(metadata={'sparc:follow_ipc': 'maybe'},
                        flavor_specs={'sparc:suspend': 'never'})
        self.assertFalse(row.valid)
        self.assertFalse(row.excludes_anything)
        self.assertEqual(
            ["sparc:suspend='never' (flavor extra spec): expected one of: "
             + ', '.join(policy.CHOICE_KEYS[policy.SUSPEND]),
             "sparc:follow_ipc='maybe' (instance metadata): expected true "
             "or false"],
            [str(p) for p in row.problems])
        self.assertIsNone(row.part(policy.INSTANCE))
        self.assertEqual(1, len(row.problems_of(policy.FLAVOR)))

    def test_unreadable_sources(self):
        row = self.make(metadata={'sparc:exclude_paths': '/a'},
                        flavor_specs=None, image_properties=None)
        self.assertEqual(['flavor', 'image'], row.incomplete)
        self.assertEqual(['/a'], row.effective.exclude_paths)

    def test_no_policy(self):
        row = self.make(flavor_specs={}, image_properties={})
        self.assertTrue(row.valid)
        self.assertFalse(row.excludes_anything)
        self.assertEqual([], row.instance_keys)

    def test_on_failure_allow_refused_unless_configured(self):
        server = data.server(metadata={'sparc:exclude_paths': '/a',
                                       'sparc:on_failure': 'allow'})
        refused = instance_privacy.InstancePrivacy.from_server(
            server, {}, {})
        self.assertEqual('abort', refused.effective.on_failure)
        self.assertEqual(1, len(refused.effective.refused))
        granted = instance_privacy.InstancePrivacy.from_server(
            server, {}, {}, on_failure_allow_from=['instance'])
        self.assertEqual('allow', granted.effective.on_failure)

    def test_snapshot_in_progress_from_task_state(self):
        row = self.make(flavor_specs={}, task_state='image_uploading')
        self.assertTrue(row.snapshot_in_progress)


class SnapshotRecordTests(test.TestCase):

    def test_states(self):
        cases = [
            (dict(scrubbed='true'), instance_privacy.SCRUB_DONE),
            (dict(scrubbed='false'), instance_privacy.SCRUB_UNSCRUBBED),
            (dict(scrubbed=None), instance_privacy.SCRUB_NO_RECORD),
            (dict(scrubbed=None, status='queued'),
             instance_privacy.SCRUB_PENDING),
            (dict(scrubbed=None, status='saving'),
             instance_privacy.SCRUB_PENDING),
            (dict(scrubbed=None, status='killed'),
             instance_privacy.SCRUB_FAILED),
        ]
        for kwargs, state in cases:
            with self.subTest(**kwargs):
                self.assertEqual(state, data.record(**kwargs).state)

    def test_records(self):
        record = data.record(summary='scrubbed: 3 files')
        self.assertTrue(record.scrubbed)
        self.assertEqual('scrubbed: 3 files', record.summary)
        self.assertTrue(record.digest.startswith('sha256:'))

    def test_latest_snapshot_per_instance(self):
        images = [
            data.snapshot('1', image_id='old', created_at='2026-01-01'),
            data.snapshot('1', image_id='new', created_at='2026-02-01'),
            data.snapshot('2', image_id='other', created_at='2026-01-15'),
            data.image(image_id='base'),  # not a snapshot
        ]
        latest = instance_privacy.latest_snapshots(images)
        self.assertEqual({'1': 'new', '2': 'other'},
                         {k: v.image_id for k, v in latest.items()})


def action(name, start_time, message=None, request_id='req-1'):
    """A Nova instance action as novaclient returns it."""
    return mock.Mock(action=name, start_time=start_time, message=message,
                     request_id=request_id)


def request(name, start_time, failed=False, reason=None,
            request_id='req-1'):
    return instance_privacy.InstanceRequest(name, request_id, start_time,
                                            failed, reason)


class InstanceRequestTests(test.TestCase):

    def test_policy_reason_from_the_events(self):
        events = [{'event': 'compute_shelve_instance', 'result': 'Error'},
                  {'event': 'sparc-nova: Privacy scrub of the snapshot x '
                            'failed', 'result': 'Error'}]
        self.assertEqual('Privacy scrub of the snapshot x failed',
                         instance_privacy.policy_reason(events))
        self.assertIsNone(instance_privacy.policy_reason(events[:1]))
        self.assertIsNone(instance_privacy.policy_reason(None))

    def test_newest_request_of_each_policed_action(self):
        actions = [action('create', '2026-11-27T07:00:00.000000'),
                   action('createImage', '2026-11-27T08:00:00.000000',
                          request_id='req-old'),
                   action('createImage', '2026-11-27T09:00:00.000000',
                          message='Error', request_id='req-new'),
                   action('suspend', '2026-11-27T09:30:00.000000',
                          message='Error', request_id='req-suspend'),
                   action('shelve', 'not a time', request_id='req-bad'),
                   action('reboot', '2026-11-27T10:00:00.000000')]
        newest = instance_privacy.newest_requests(actions)
        self.assertEqual({'createImage': 'req-new',
                          'suspend': 'req-suspend'},
                         {k: v.request_id for k, v in newest.items()})
        self.assertTrue(newest['createImage'].failed)
        self.assertFalse(newest['createImage'].refused)  # no reason yet
        self.assertEqual({}, instance_privacy.newest_requests(
            [action('reboot', '2026-11-27T10:00:00.000000')]))

    def make(self, requests, snapshot=None):
        server = data.server(metadata={'sparc:exclude_paths': '/srv/**'})
        row = instance_privacy.InstancePrivacy.from_server(
            server, {}, {}, last_snapshot=snapshot)
        row.requests = {r.action: r for r in requests}
        return row

    def test_failed_request_newer_than_the_last_snapshot(self):
        failed = request('createImage', '2026-11-27T09:00:00.000000', True)
        older = data.record(created_at='2026-11-27T08:00:00Z')
        newer = data.record(created_at='2026-11-27T09:30:00Z')
        self.assertTrue(self.make([failed]).last_request_failed)
        self.assertTrue(self.make([failed], older).last_request_failed)
        self.assertFalse(self.make([failed], newer).last_request_failed)
        done = request('createImage', '2026-11-27T09:00:00.000000')
        self.assertFalse(self.make([done], older).last_request_failed)
        self.assertFalse(self.make([], older).last_request_failed)

    def test_last_request_is_the_newest_snapshot_making_one(self):
        shelve = request('shelve', '2026-11-27T09:00:00.000000', True)
        image = request('createImage', '2026-11-27T08:00:00.000000')
        suspend = request('suspend', '2026-11-27T10:00:00.000000', True)
        row = self.make([shelve, image, suspend])
        self.assertIs(shelve, row.last_request)
        self.assertTrue(row.last_request_failed)

    def test_refused_requests_newest_first_with_a_reason_only(self):
        suspend = request('suspend', '2026-11-27T10:00:00.000000', True,
                          'Suspend of instance 1 refused')
        shelve = request('shelve', '2026-11-27T09:00:00.000000', True,
                         'Privacy scrub failed')
        # Failed, but not because of the policy: no sparc-nova event.
        resize = request('resize', '2026-11-27T11:00:00.000000', True)
        image = request('createImage', '2026-11-27T12:00:00.000000')
        row = self.make([shelve, suspend, resize, image])
        self.assertEqual([suspend, shelve], row.refused_requests)

    def test_a_later_request_of_the_same_action_hides_a_refusal(self):
        # Only the newest request of each action counts: Nova's action
        # log as the API returns it, the failure first.
        actions = [action('suspend', '2026-11-27T09:00:00.000000',
                          message='Error', request_id='req-refused'),
                   action('suspend', '2026-11-27T10:00:00.000000',
                          request_id='req-done')]
        row = self.make([])
        row.requests = instance_privacy.newest_requests(actions)
        self.assertEqual('req-done', row.requests['suspend'].request_id)
        self.assertEqual([], row.refused_requests)

    def test_who_may_be_policed(self):
        self.assertTrue(self.make([]).may_be_policed)
        plain = instance_privacy.InstancePrivacy.from_server(
            data.server(), {}, {})
        self.assertFalse(plain.may_be_policed)
        # Hidden extra specs may hold the operator's policy.
        hidden = instance_privacy.InstancePrivacy.from_server(
            data.server(), None, {})
        self.assertTrue(hidden.may_be_policed)

    def test_parse_time(self):
        nova = instance_privacy.parse_time('2026-11-27T09:00:00.000000')
        glance = instance_privacy.parse_time('2026-11-27T09:00:00Z')
        self.assertEqual(nova, glance)
        self.assertIsNone(instance_privacy.parse_time('yesterday'))
        self.assertIsNone(instance_privacy.parse_time(None))


class ApiTests(test.APITestCase):

    def setUp(self):
        super().setUp()
        # A request with the logged-in test user (project self.tenant).
        self.request = self.factory.get('/')
        self.request.session = {}

    @mock.patch.object(api._nova, 'novaclient')
    def test_server_list_embeds_flavors_and_pages(self, mock_novaclient):
        raw = [data.server(server_id=str(i))._apiresource for i in range(3)]
        mock_novaclient.return_value.servers.list.return_value = raw
        with self.settings(API_RESULT_PAGE_SIZE=2):
            servers, has_more = api.server_list(self.request, marker='m')
        mock_novaclient.assert_called_once_with(self.request, version='2.47')
        mock_novaclient.return_value.servers.list.assert_called_once_with(
            detailed=True, search_opts={'project_id': self.tenant.id},
            marker='m', limit=3)
        self.assertTrue(has_more)
        self.assertEqual(['0', '1'], [s.id for s in servers])

    @mock.patch.object(api._nova, 'novaclient')
    def test_server_get(self, mock_novaclient):
        raw = data.server(server_id='7')._apiresource
        mock_novaclient.return_value.servers.get.return_value = raw
        self.assertEqual('7', api.server_get(self.request, '7').id)
        mock_novaclient.return_value.servers.get.assert_called_once_with('7')

    @mock.patch.object(horizon_api.nova, 'flavor_get_extras')
    def test_flavor_extra_specs(self, mock_extras):
        embedded = data.server(flavor_specs={'sparc:suspend': 'refuse'})
        self.assertEqual({'sparc:suspend': 'refuse'},
                         api.flavor_extra_specs(self.request, embedded))
        hidden = data.server(flavor_specs=None)
        self.assertIsNone(api.flavor_extra_specs(self.request, hidden))
        mock_extras.return_value = {'sparc:follow_ipc': 'true'}
        by_id = data.server(embedded_flavor=False)
        self.assertEqual({'sparc:follow_ipc': 'true'},
                         api.flavor_extra_specs(self.request, by_id))
        mock_extras.assert_called_once_with(self.request, 'f1', raw=True)
        mock_extras.side_effect = self.exceptions.nova
        self.assertIsNone(api.flavor_extra_specs(self.request, by_id))

    @mock.patch.object(horizon_api.glance, 'image_list_detailed')
    def test_image_properties(self, mock_list):
        mock_list.return_value = (
            [data.image(properties=data.IMAGE_PROPERTIES)], False, False)
        servers = [data.server('1'), data.server('2', image_id=None),
                   data.server('3', image_id='gone')]
        found = api.image_properties(self.request, servers)
        mock_list.assert_called_once_with(
            self.request, filters={'id': 'in:%s,gone' % data.IMAGE_ID})
        self.assertEqual('/home/*/.ssh/**',
                         found['1']['sparc_exclude_paths'])
        self.assertEqual({}, found['2'])     # booted from a volume
        self.assertIsNone(found['3'])        # image not visible

    @mock.patch.object(horizon_api._nova, 'novaclient')
    @mock.patch.object(horizon_api.nova, 'instance_action_list')
    def test_policed_requests(self, mock_actions, mock_client):
        mock_actions.return_value = [
            action('createImage', '2026-11-27T08:00:00.000000',
                   message='Error', request_id='req-old'),
            action('createImage', '2026-11-27T09:00:00.000000',
                   message='Error', request_id='req-image'),
            action('suspend', '2026-11-27T10:00:00.000000',
                   message='Error', request_id='req-suspend'),
            action('shelve', '2026-11-27T11:00:00.000000',
                   request_id='req-shelve'),
            action('stop', '2026-11-27T12:00:00.000000', message='Error',
                   request_id='req-stop')]
        events = {
            'req-image': [
                {'event': 'compute_snapshot_instance', 'result': 'Error'},
                {'event': 'sparc-nova: Privacy scrub of the snapshot x '
                          'failed', 'result': 'Error'}],
            'req-suspend': [
                {'event': 'compute_suspend_instance', 'result': 'Error'}]}
        get = mock_client.return_value.instance_action.get
        get.side_effect = lambda instance_id, request_id: mock.Mock(
            events=events[request_id])
        newest = api.policed_requests(self.request, '1')
        mock_actions.assert_called_once_with(self.request, '1')
        self.assertEqual(['createImage', 'shelve', 'suspend'],
                         sorted(newest))
        # The events of the newest failed request of each action say why
        # (members see them from microversion 2.51); nothing else is
        # read: one get per failed action, not per failed request.
        mock_client.assert_called_once_with(self.request, version='2.51')
        self.assertCountEqual([mock.call('1', 'req-image'),
                               mock.call('1', 'req-suspend')],
                              get.call_args_list)
        self.assertEqual('Privacy scrub of the snapshot x failed',
                         newest['createImage'].reason)
        self.assertTrue(newest['createImage'].refused)
        # A suspend that failed without sparc-nova's event: not refused.
        self.assertTrue(newest['suspend'].failed)
        self.assertIsNone(newest['suspend'].reason)
        self.assertFalse(newest['shelve'].failed)

    @mock.patch.object(horizon_api._nova, 'novaclient')
    @mock.patch.object(horizon_api.nova, 'instance_action_list')
    def test_unreadable_events_leave_the_request_failed(
            self, mock_actions, mock_client):
        mock_actions.return_value = [
            action('shelve', '2026-11-27T10:00:00.000000', message='Error',
                   request_id='req-shelve')]
        get = mock_client.return_value.instance_action.get
        get.side_effect = self.exceptions.nova
        shelve = api.policed_requests(self.request, '1')['shelve']
        self.assertTrue(shelve.failed)
        self.assertIsNone(shelve.reason)

    @mock.patch.object(horizon_api._nova, 'novaclient')
    @mock.patch.object(horizon_api.nova, 'instance_action_list')
    def test_policed_requests_without_failures_reads_no_events(
            self, mock_actions, mock_client):
        mock_actions.return_value = [
            action('suspend', '2026-11-27T10:00:00.000000')]
        self.assertFalse(api.policed_requests(self.request, '1')[
            'suspend'].failed)
        mock_client.assert_not_called()

    @mock.patch.object(horizon_api.glance, 'image_list_detailed')
    def test_latest_snapshots_and_snapshots(self, mock_list):
        mock_list.return_value = (
            [data.snapshot('1', image_id='a', created_at='2026-01-01'),
             data.snapshot('1', image_id='b', created_at='2026-03-01')],
            False, False)
        latest = api.latest_snapshots(self.request, instance_id='1')
        mock_list.assert_called_with(
            self.request, filters={'owner': self.tenant.id,
                                   'instance_uuid': '1'})
        self.assertEqual('b', latest['1'].image_id)
        records = api.snapshots(self.request, '1')
        self.assertEqual(['b', 'a'], [r.image_id for r in records])
