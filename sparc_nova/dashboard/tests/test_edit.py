"""The "Edit Privacy Policy" form: what it writes to Nova, every invalid
value with the words of ``sparc policy check``, the read-only parts.
"""

from unittest import mock

from django.test.utils import override_settings
from django.urls import reverse

from openstack_dashboard import api as horizon_api
from openstack_dashboard.test import helpers as test

from sparc_nova.dashboard.tests import data
from sparc_nova.dashboard.tests import helpers
from sparc_nova import policy

INDEX_URL = reverse('horizon:project:privacy:index')
WRITES = {horizon_api.nova: ['server_metadata_update',
                             'server_metadata_delete']}
MOCKS = {**helpers.READS, **WRITES}

EMPTY_FORM = {'exclude_processes': '', 'exclude_paths': '', 'follow_ipc': '',
              'scrub_free_memory': '', 'on_failure': '', 'suspend': ''}

#: (form field, submitted value): every kind of invalid value.
INVALID_VALUES = [
    ('exclude_processes', 'averyveryverylongname'),
    ('exclude_processes', 'usr/bin/gpg'),
    ('exclude_processes', 'foo:bar'),
    ('exclude_processes', 'name:'),
    ('exclude_processes', 'pid:abc'),
    ('exclude_processes', 'pid:0'),
    ('exclude_processes', 'uid:-1'),
    ('exclude_processes', 'exe:'),
    ('exclude_processes', 'exe:bin/gpg'),
    ('exclude_processes', 'cgroup:user.slice'),
    ('exclude_processes', 'keepassxc,,gpg-agent'),
    ('exclude_processes', 'keepassxc,'),
    ('exclude_paths', '/'),
    ('exclude_paths', '/**'),
    ('exclude_paths', '**'),
    ('exclude_paths', '/home/../etc/shadow'),
    ('exclude_paths', '/home/./a'),
    ('exclude_paths', '/home/x**/key'),
    ('exclude_paths', 'preset:no-such-preset'),
    ('exclude_paths', '!preset:gnupg'),
    ('exclude_paths', '/srv,,/opt'),
    ('exclude_paths', '/' + 'k' * 255),
    ('follow_ipc', 'maybe'),
    ('scrub_free_memory', 'yes'),
    ('on_failure', 'ignore'),
    ('suspend', 'never'),
]


def edit_url(instance_id):
    return reverse('horizon:project:privacy:edit', args=[instance_id])


class EditFormTests(helpers.PrivacyTestCase):

    def post(self, instance_id='1', **fields):
        form = dict(EMPTY_FORM, **fields)
        return self.client.post(edit_url(instance_id), form)

    def server(self, metadata=None):
        return data.server('1', 'vm1', flavor_specs=data.FLAVOR_SPECS,
                           metadata=metadata)

    @test.create_mocks(MOCKS)
    def test_get_shows_the_instance_part_and_the_enforced_parts(self):
        self.mock_reads([self.server({
            'sparc:exclude_processes': 'gpg-agent',
            'sparc:exclude_paths': '/srv/a/**',
            'sparc:exclude_paths.1': '/srv/b/**,/srv/c\\,d',
            'sparc:follow_ipc': 'false', 'owner': 'alice'})])
        res = self.client.get(edit_url('1'))
        self.assertTemplateUsed(res, 'project/privacy/edit.html')
        form = res.context['form']
        self.assertEqual('gpg-agent', form.initial['exclude_processes'])
        self.assertEqual('/srv/a/**\n/srv/b/**\n/srv/c\\,d',
                         form.initial['exclude_paths'])
        self.assertEqual('false', form.initial['follow_ipc'])
        self.assertEqual('', form.initial['suspend'])
        # What the flavor and the image enforce is shown, read-only, and
        # is not part of the form.
        self.assertContains(res, 'sparc-enforced-flavor')
        self.assertContains(res, 'sparc-enforced-image')
        self.assertContains(res, '<code>keepassxc</code>', html=False)
        self.assertContains(res, '<code>refuse</code>', html=False)
        self.assertContains(res, '<code>/home/*/.ssh/**</code>', html=False)
        self.assertNotIn('keepassxc', form.initial['exclude_processes'])
        self.assertEqual(sorted(EMPTY_FORM), sorted(form.fields))
        # The form needs no snapshot history (Nova calls are slow).
        self.mock_latest_snapshots.assert_not_called()
        self.mock_policed_requests.assert_not_called()

    @test.create_mocks(MOCKS)
    def test_get_with_invalid_metadata_shows_it_raw_with_its_problems(self):
        self.mock_reads([self.server({'sparc:exclude_paths': '/a,,/b',
                                      'sparc:suspend': 'never'})])
        res = self.client.get(edit_url('1'))
        self.assertEqual('/a,,/b',
                         res.context['form'].initial['exclude_paths'])
        self.assertEqual('never', res.context['form'].initial['suspend'])
        self.assertContains(res, 'sparc-current-problems')
        self.assertContains(res, 'expected one of: ' + ', '.join(
            policy.CHOICE_KEYS[policy.SUSPEND]))

    @test.create_mocks(MOCKS)
    def test_valid_post_writes_the_metadata(self):
        self.mock_reads([self.server({'owner': 'alice'})])
        res = self.post(exclude_processes='gpg-agent\nexe:/usr/bin/pass, '
                                          'uid:1000',
                        exclude_paths='/home/*/.gnupg/**\n\n'
                                      'preset:ssh-private-keys',
                        follow_ipc='true', on_failure='abort',
                        suspend='scrub')
        self.assertNoFormErrors(res)
        self.assertRedirectsNoFollow(res, INDEX_URL)
        self.mock_server_metadata_update.assert_called_once_with(
            test.IsHttpRequest(), '1',
            {'sparc:exclude_processes': 'gpg-agent,exe:/usr/bin/pass,'
                                        'uid:1000',
             'sparc:exclude_paths': '/home/*/.gnupg/**,'
                                    'preset:ssh-private-keys',
             'sparc:follow_ipc': 'true', 'sparc:on_failure': 'abort',
             'sparc:suspend': 'scrub'})
        # Nothing stale; other metadata is not touched.
        self.mock_server_metadata_delete.assert_not_called()
        self.assertMessageCount(success=1)

    @test.create_mocks(MOCKS)
    def test_long_lists_use_continuation_keys(self):
        self.mock_reads([self.server()])
        paths = ['/home/user%02d/.ssh/**' % i for i in range(30)]
        res = self.post(exclude_paths='\n'.join(paths))
        self.assertNoFormErrors(res)
        written = self.mock_server_metadata_update.call_args[0][2]
        self.assertEqual(['sparc:exclude_paths', 'sparc:exclude_paths.1',
                          'sparc:exclude_paths.2'], sorted(written))
        self.assertTrue(all(len(v) <= 255 for v in written.values()))
        rc, errors = helpers.sparc_policy_check(written)
        self.assertEqual((0, []), (rc, errors))

    @test.create_mocks(MOCKS)
    def test_stale_keys_are_deleted_after_the_update(self):
        self.mock_reads([self.server({
            'sparc:exclude_paths': '/a', 'sparc:exclude_paths.1': '/b',
            'sparc:exlude_processes': 'typo', 'sparc:follow_ipc': 'false',
            'owner': 'alice'})])
        calls = mock.Mock()
        calls.attach_mock(self.mock_server_metadata_update, 'update')
        calls.attach_mock(self.mock_server_metadata_delete, 'delete')
        res = self.post(exclude_paths='/a')
        self.assertNoFormErrors(res)
        self.assertEqual(
            [mock.call.update(test.IsHttpRequest(), '1',
                              {'sparc:exclude_paths': '/a'}),
             mock.call.delete(test.IsHttpRequest(), '1',
                              ['sparc:exclude_paths.1',
                               'sparc:exlude_processes',
                               'sparc:follow_ipc'])],
            calls.mock_calls)

    @test.create_mocks(MOCKS)
    def test_emptying_the_form_deletes_the_instance_part(self):
        self.mock_reads([self.server({'sparc:exclude_paths': '/a',
                                      'owner': 'alice'})])
        res = self.post()
        self.assertNoFormErrors(res)
        self.mock_server_metadata_update.assert_not_called()
        self.mock_server_metadata_delete.assert_called_once_with(
            test.IsHttpRequest(), '1', ['sparc:exclude_paths'])

    @test.create_mocks(MOCKS)
    def test_every_invalid_value_gets_the_message_of_sparc_policy_check(self):
        self.mock_reads([self.server()])
        for field, value in INVALID_VALUES:
            with self.subTest(field=field, value=value):
                rc, expected = helpers.sparc_policy_check(
                    {'sparc:' + field: value})
                self.assertEqual(1, rc)
                self.assertEqual(1, len(expected))
                res = self.post(**{field: value})
                self.assertEqual(200, res.status_code)
                errors = res.context['form'].errors
                self.assertEqual({field: expected}, dict(errors))
                self.assertContains(res, expected[0].replace("'", '&#x27;')
                                    .replace('"', '&quot;'))
        self.mock_server_metadata_update.assert_not_called()
        self.mock_server_metadata_delete.assert_not_called()

    @test.create_mocks(MOCKS)
    def test_all_invalid_values_at_once(self):
        self.mock_reads([self.server()])
        res = self.post(exclude_processes='a/b', exclude_paths='/',
                        follow_ipc='maybe', scrub_free_memory='yes',
                        on_failure='ignore', suspend='never')
        self.assertFormErrors(res, count=6)
        self.mock_server_metadata_update.assert_not_called()

    @test.create_mocks(MOCKS)
    def test_posted_values_cannot_touch_the_enforced_parts(self):
        self.mock_reads([self.server()])
        form = dict(EMPTY_FORM, exclude_paths='/srv/**')
        form.update({'sparc:exclude_processes': '',
                     'flavor': 'sparc:exclude_processes=',
                     'sparc:suspend': 'scrub'})
        res = self.client.post(edit_url('1'), form)
        self.assertNoFormErrors(res)
        self.mock_server_metadata_update.assert_called_once_with(
            test.IsHttpRequest(), '1', {'sparc:exclude_paths': '/srv/**'})

    @test.create_mocks(MOCKS)
    def test_refused_on_failure_allow_is_saved_with_a_warning(self):
        self.mock_reads([self.server()])
        res = self.post(exclude_paths='/srv/**', on_failure='allow')
        self.assertNoFormErrors(res)
        self.mock_server_metadata_update.assert_called_once()
        self.assertMessageCount(success=1, warning=1)
        rc, errors = helpers.sparc_policy_check({'sparc:on_failure': 'allow'})
        self.assertEqual((0, []), (rc, errors))

    @test.create_mocks(MOCKS)
    @override_settings(SPARC_ON_FAILURE_ALLOW_FROM=['flavor', 'instance'])
    def test_on_failure_allow_where_the_operator_permits_it(self):
        self.mock_reads([data.server('1', flavor_specs={})], images={})
        res = self.post(exclude_paths='/srv/**', on_failure='allow')
        self.assertNoFormErrors(res)
        self.assertMessageCount(success=1, warning=0)

    @test.create_mocks(MOCKS)
    def test_nova_refusing_the_update(self):
        self.mock_reads([self.server()])
        self.mock_server_metadata_update.side_effect = self.exceptions.nova
        res = self.post(exclude_paths='/srv/**')
        # The form stays open with the error, nothing else is written.
        self.assertEqual(200, res.status_code)
        self.assertMessageCount(res, error=1)
        self.mock_server_metadata_delete.assert_not_called()
