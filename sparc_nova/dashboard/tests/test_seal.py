"""Sealed suspends in the Privacy panel: the Suspend choice offers scrub,
seal and refuse and says what each does; a suspended instance whose
newest suspend request carries the compute driver's ``sparc-nova:
sealed`` event (result Success) is shown as sealed.
"""

import re
from unittest import mock

from django.urls import reverse
from django.utils.html import strip_tags

from openstack_dashboard import api as horizon_api
from openstack_dashboard.test import helpers as test

from sparc_nova.dashboard import api
from sparc_nova.dashboard import forms as privacy_forms
from sparc_nova.dashboard import instance_privacy
from sparc_nova.dashboard.tests import data
from sparc_nova.dashboard.tests import grammar
from sparc_nova.dashboard.tests import helpers
from sparc_nova.dashboard.tests.test_model import action
from sparc_nova import policy

INDEX_URL = reverse('horizon:project:privacy:index')
WRITES = {horizon_api.nova: ['server_metadata_update',
                             'server_metadata_delete']}
MOCKS = {**helpers.READS, **WRITES}
SEALED = {'event': instance_privacy.SEALED_EVENT, 'result': 'Success'}
#: The policy module's suspend values once ``seal`` is one of them (the
#: form's choice is checked by the policy module, whatever this branch's
#: version of it accepts).
WITH_SEAL = {policy.SUSPEND: ('scrub', 'seal', 'refuse')}


def edit_url(instance_id):
    return reverse('horizon:project:privacy:edit', args=[instance_id])


def detail_url(instance_id):
    return reverse('horizon:project:privacy:detail', args=[instance_id])


def suspend_request(sealed, failed=False):
    request = instance_privacy.InstanceRequest(
        'suspend', 'req-5ea1', '2026-11-27T09:00:00.000000', failed)
    request.sealed = sealed
    return request


class SealedModelTests(test.TestCase):

    def make(self, status='SUSPENDED', metadata=None, requests=()):
        row = instance_privacy.InstancePrivacy.from_server(
            data.server(status=status, metadata=metadata), {}, {})
        row.requests = {r.action: r for r in requests}
        return row

    def test_the_sealed_event_by_exact_name_and_success(self):
        sealed_event = instance_privacy.sealed_event
        self.assertEqual('sparc-nova: sealed', instance_privacy.SEALED_EVENT)
        self.assertTrue(sealed_event([
            {'event': 'compute_suspend_instance', 'result': 'Success'},
            SEALED]))
        self.assertTrue(sealed_event([mock.Mock(**SEALED)]))
        self.assertFalse(sealed_event([dict(SEALED, result='Error')]))
        self.assertFalse(sealed_event([{'event': 'sparc-nova: sealed x',
                                        'result': 'Success'}]))
        self.assertFalse(sealed_event([{'event': 'compute_suspend_instance',
                                        'result': 'Success'}]))
        self.assertFalse(sealed_event(None))

    def test_the_sealed_event_is_no_refusal_reason(self):
        self.assertIsNone(instance_privacy.policy_reason([SEALED]))
        self.assertEqual('Resume refused: key gone',
                         instance_privacy.policy_reason([
                             SEALED,
                             {'event': 'sparc-nova: Resume refused: key '
                                       'gone', 'result': 'Error'}]))

    def test_sealed_only_while_suspended(self):
        self.assertTrue(self.make(requests=[suspend_request(True)]).sealed)
        self.assertFalse(self.make(requests=[suspend_request(False)]).sealed)
        # Events unread, or no suspend in the action log: unknown.
        self.assertIsNone(self.make(requests=[suspend_request(None)]).sealed)
        self.assertIsNone(self.make().sealed)
        resumed = self.make(status='ACTIVE',
                            requests=[suspend_request(True)])
        self.assertFalse(resumed.sealed)

    def test_suspended_instances_want_their_action_log(self):
        self.assertFalse(self.make(status='ACTIVE').may_be_policed)
        self.assertFalse(self.make(status='ACTIVE').wants_requests)
        self.assertTrue(self.make().wants_requests)


class SealedApiTests(test.APITestCase):

    def setUp(self):
        super().setUp()
        self.request = self.factory.get('/')
        self.request.session = {}

    def read(self, mock_actions, mock_client, events, suspended=True):
        mock_actions.return_value = [
            action('suspend', '2026-11-27T08:00:00.000000',
                   request_id='req-old'),
            action('suspend', '2026-11-27T09:00:00.000000',
                   request_id='req-new'),
            action('resume', '2026-11-27T08:30:00.000000',
                   request_id='req-resume')]
        get = mock_client.return_value.instance_action.get
        if isinstance(events, Exception):
            get.side_effect = events
        else:
            get.return_value = mock.Mock(events=events)
        newest = api.policed_requests(self.request, '1',
                                      suspended=suspended)
        return newest['suspend'], get

    @mock.patch.object(horizon_api._nova, 'novaclient')
    @mock.patch.object(horizon_api.nova, 'instance_action_list')
    def test_the_newest_suspend_of_a_suspended_instance_is_read(
            self, mock_actions, mock_client):
        suspend, get = self.read(mock_actions, mock_client, [
            {'event': 'compute_suspend_instance', 'result': 'Success'},
            SEALED])
        mock_client.assert_called_once_with(self.request, version='2.51')
        get.assert_called_once_with('1', 'req-new')
        self.assertTrue(suspend.sealed)
        self.assertFalse(suspend.failed)
        self.assertIsNone(suspend.reason)

    @mock.patch.object(horizon_api._nova, 'novaclient')
    @mock.patch.object(horizon_api.nova, 'instance_action_list')
    def test_a_suspend_without_the_event_is_not_sealed(
            self, mock_actions, mock_client):
        suspend, _get = self.read(mock_actions, mock_client, [
            {'event': 'compute_suspend_instance', 'result': 'Success'}])
        self.assertIs(False, suspend.sealed)

    @mock.patch.object(horizon_api._nova, 'novaclient')
    @mock.patch.object(horizon_api.nova, 'instance_action_list')
    def test_unreadable_events_leave_sealed_unknown(
            self, mock_actions, mock_client):
        suspend, _get = self.read(mock_actions, mock_client,
                                  self.exceptions.nova)
        self.assertIsNone(suspend.sealed)

    @mock.patch.object(horizon_api._nova, 'novaclient')
    @mock.patch.object(horizon_api.nova, 'instance_action_list')
    def test_not_suspended_reads_no_events(self, mock_actions, mock_client):
        self.read(mock_actions, mock_client, [SEALED], suspended=False)
        mock_client.assert_not_called()


class SuspendChoiceTests(helpers.PrivacyTestCase):

    def server(self, metadata=None, status='ACTIVE'):
        return data.server('1', 'vm1', flavor_specs={}, metadata=metadata,
                           status=status)

    @test.create_mocks(MOCKS)
    def test_the_form_offers_scrub_seal_refuse_and_says_what_each_does(self):
        self.mock_reads([self.server()], images={})
        res = self.client.get(edit_url('1'))
        field = res.context['form'].fields['suspend']
        self.assertEqual(['', 'scrub', 'seal', 'refuse'],
                         [value for value, _label in field.widget.choices])
        self.assertEqual('Not set (default: scrub)',
                         str(field.widget.choices[0][1]))
        help_text = str(field.help_text)
        self.assertIn("scrub: the excluded processes' memory is zeroed in "
                      "the saved state; they are gone after resume.",
                      help_text)
        self.assertIn("seal: their memory is encrypted in the saved state "
                      "with a key kept in the project's key manager; they "
                      "continue after resume.", help_text)
        self.assertIn('refuse: suspend is refused.', help_text)
        self.assertContains(res, '<option value="seal">seal</option>',
                            html=True)
        # The help text is on the page.
        self.assertContains(res, 'seal: their memory is encrypted in the '
                                 'saved state with a key kept in the')

    def test_every_suspend_value_of_the_policy_is_offered(self):
        offered = privacy_forms.choice_values(policy.SUSPEND)
        self.assertLessEqual(set(policy.CHOICE_KEYS[policy.SUSPEND]),
                             set(offered))
        self.assertEqual(len(offered), len(set(offered)))
        with mock.patch.dict(policy.CHOICE_KEYS,
                             {policy.SUSPEND: ('scrub', 'refuse', 'later')}):
            self.assertEqual(
                ('scrub', 'seal', 'refuse', 'later'),
                privacy_forms.choice_values(policy.SUSPEND))
        self.assertEqual(policy.CHOICE_KEYS[policy.ON_FAILURE],
                         privacy_forms.choice_values(policy.ON_FAILURE))

    @test.create_mocks(MOCKS)
    def test_seal_is_written_as_sparc_suspend_seal(self):
        self.mock_reads([self.server()], images={})
        form = {'exclude_processes': 'keepassxc', 'exclude_paths': '',
                'follow_ipc': '', 'scrub_free_memory': '', 'on_failure': '',
                'suspend': 'seal'}
        with mock.patch.dict(policy.CHOICE_KEYS, WITH_SEAL):
            res = self.client.post(edit_url('1'), form)
        self.assertNoFormErrors(res)
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_server_metadata_update.assert_called_once_with(
            test.IsHttpRequest(), '1',
            {'sparc:exclude_processes': 'keepassxc',
             'sparc:suspend': 'seal'})

    @test.create_mocks(MOCKS)
    def test_a_stored_seal_is_the_forms_initial_value(self):
        self.mock_reads([self.server({'sparc:exclude_processes': 'keepassxc',
                                      'sparc:suspend': 'seal'})], images={})
        with mock.patch.dict(policy.CHOICE_KEYS, WITH_SEAL):
            res = self.client.get(edit_url('1'))
        self.assertEqual('seal', res.context['form'].initial['suspend'])


class SealedViewTests(helpers.PrivacyTestCase):

    def server(self, status='SUSPENDED', metadata=None, server_id='1'):
        return data.server(server_id, 'vm%s' % server_id, flavor_specs={},
                           status=status, metadata=metadata or {
                               'sparc:exclude_processes': 'keepassxc'})

    def suspend_cell(self, res, instance_id='1'):
        table = res.context['privacy_table']
        row = [r for r in table.get_rows() if r.datum.id == instance_id][0]
        return str(row.cells['suspend'].value)

    @test.create_mocks(helpers.READS)
    def test_index_marks_a_sealed_suspended_instance(self):
        self.mock_reads([self.server(), self.server(server_id='2')],
                        images={},
                        requests={'1': suspend_request(True),
                                  '2': suspend_request(False)})
        res = self.client.get(INDEX_URL)
        cell = self.suspend_cell(res, '1')
        self.assertIn('<code>scrub</code>', cell)
        self.assertIn('sparc-sealed', cell)
        self.assertIn('>Sealed</span>', cell)
        self.assertNotIn('sparc-sealed', self.suspend_cell(res, '2'))

    @test.create_mocks(helpers.READS)
    def test_index_looks_up_suspended_instances_without_a_policy(self):
        self.mock_reads([self.server(metadata={'owner': 'a'}),
                         self.server(status='ACTIVE', metadata={'owner': 'a'},
                                     server_id='2')],
                        images={}, requests={'1': suspend_request(True)})
        res = self.client.get(INDEX_URL)
        self.assertEqual(
            [mock.call(test.IsHttpRequest(), '1', suspended=True)],
            self.mock_policed_requests.call_args_list)
        self.assertIn('sparc-sealed', self.suspend_cell(res, '1'))

    @test.create_mocks(helpers.READS)
    def test_a_resumed_instance_is_not_marked(self):
        self.mock_reads([self.server(status='ACTIVE')], images={},
                        requests={'1': suspend_request(True)})
        res = self.client.get(INDEX_URL)
        self.assertNotIn('sparc-sealed', self.suspend_cell(res))
        self.assertEqual(
            [mock.call(test.IsHttpRequest(), '1', suspended=False)],
            self.mock_policed_requests.call_args_list)

    def detail_text(self, res):
        return re.sub(r'\s+', ' ', strip_tags(res.content.decode()))

    @test.create_mocks(helpers.READS)
    def test_detail_says_sealed(self):
        self.mock_reads([self.server()], images={},
                        requests={'1': suspend_request(True)})
        res = self.client.get(detail_url('1'))
        self.assertContains(res, 'sparc-suspend-sealed')
        text = self.detail_text(res)
        self.assertIn("Suspended Sealed: The excluded processes' memory is "
                      "encrypted in the saved state with a key kept in the "
                      "project's key manager; they continue after resume.",
                      text.replace('&#x27;', "'"))
        self.assertEqual([], grammar.count_disagreements(text))

    @test.create_mocks(helpers.READS)
    def test_detail_says_not_sealed_or_unknown(self):
        self.mock_reads([self.server()], images={},
                        requests={'1': suspend_request(False)})
        res = self.client.get(detail_url('1'))
        self.assertContains(res, 'sparc-suspend-not-sealed')
        self.assertNotContains(res, 'sparc-suspend-sealed')
        self.assertIn('Suspended Not sealed: Its suspend did not seal',
                      self.detail_text(res))

        self.mock_reads([self.server()], images={}, requests={})
        res = self.client.get(detail_url('1'))
        self.assertContains(res, 'sparc-suspend-unknown')

    @test.create_mocks(helpers.READS)
    def test_detail_of_a_running_instance_says_nothing_of_it(self):
        self.mock_reads([self.server(status='ACTIVE')], images={},
                        requests={'1': suspend_request(True)})
        res = self.client.get(detail_url('1'))
        self.assertNotContains(res, 'sparc-suspend-state')
