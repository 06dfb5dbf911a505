"""Nova's API with sparc-nova's pieces in it: the sparc:* extra spec
validators (as the entry point registers them) and the sparc_policy paste
filter (added to the harness's api-paste.ini by the same tool the DevStack
plugin runs), against the harness's real API, conductor, compute, Glance
and Cinder fixtures.
"""

import configparser
import copy
import os

import fixtures
from nova.api.validation.extra_specs import validators
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.api import client

from sparc_nova.api import extra_specs
from sparc_nova.api import paste_ini
from sparc_nova import policy
from tests.nova_functional import base
from tests.policy_check import policy_check_error

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NOVA_SNIPPET = os.path.join(REPO, 'etc', 'nova', 'sparc-nova-api.conf')

BAD = {'sparc:exclude_processes': 'keepassxc,pid:x'}
DISK_POLICY = {'sparc:exclude_paths': '/home/*/.ssh/**'}
MEMORY_POLICY = {'sparc:exclude_processes': 'gpg-agent'}
PARENT_RECORDS = {'sparc_scrubbed': 'true',
                  'sparc_policy_digest': 'sha256:' + 'ab' * 32,
                  'sparc_scrub_summary': 'parent: 3 paths removed'}


BAD_MESSAGE = policy_check_error(BAD)


def shipped_non_inheritable() -> list[str]:
    ini = configparser.RawConfigParser()
    ini.read(NOVA_SNIPPET)
    if not ini.has_option('DEFAULT', 'non_inheritable_image_properties'):
        return ['cache_in_nova', 'bittorrent']   # Nova's default
    return ini.get('DEFAULT', 'non_inheritable_image_properties').split(',')


class ApiChecksTest(base.SparcServersTestBase):

    def setUp(self):
        self._register_validators()
        super().setUp()

    def _register_validators(self):
        registry = dict(validators.VALIDATORS)
        namespaces = set(validators.NAMESPACES)
        for validator in extra_specs.register():
            registry[validator.name] = validator
            namespaces.add(validator.name_regex.split(':', 1)[0])
        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.validation.extra_specs.validators.VALIDATORS',
            registry))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.validation.extra_specs.validators.NAMESPACES',
            namespaces))

    def api_paste_config(self):
        """Nova's api-paste.ini with the sparc_policy filter."""
        with open(super().api_paste_config()) as f:
            text = paste_ini.add_filter(f.read())
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'api-paste.ini')
        with open(path, 'w') as f:
            f.write(text)
        return path

    # -- set-time checks -------------------------------------------------

    def fault(self, response):
        (content,) = response.body.values()
        return content['message']

    def test_flavor_extra_spec_invalid_is_400(self):
        flavor_id = self._create_flavor()
        response = self.admin_api.api_post(
            '/flavors/%s/os-extra_specs' % flavor_id,
            {'extra_specs': {'sparc:follow_ipc': 'maybe'}},
            check_response_status=[400])
        self.assertIn("sparc:follow_ipc='maybe' (flavor extra spec): "
                      "expected true or false", self.fault(response))
        self.admin_api.api_post(
            '/flavors/%s/os-extra_specs' % flavor_id,
            {'extra_specs': {'sparc:follow_ipc': 'false',
                             'sparc:exclude_paths.1': '*.pem'}},
            check_response_status=[200])

    def test_server_create_invalid_metadata_is_400(self):
        server = self._build_server(networks='none')
        server['metadata'] = dict(BAD)
        response = self.api.api_post('/servers', {'server': server},
                                     check_response_status=[400])
        self.assertEqual(BAD_MESSAGE, self.fault(response))
        self.assertEqual([], self.api.get_servers())

    def test_metadata_set_invalid_is_400_and_nothing_changes(self):
        server = self.create_policy_server(metadata={'a': 'b'})
        key, value = next(iter(BAD.items()))
        for method, uri, body in (
                ('api_put', '/servers/%s/metadata/%s' % (server['id'], key),
                 {'meta': {key: value}}),
                ('api_post', '/servers/%s/metadata' % server['id'],
                 {'metadata': BAD}),
                ('api_put', '/servers/%s/metadata' % server['id'],
                 {'metadata': BAD})):
            response = getattr(self.api, method)(
                uri, body, check_response_status=[400])
            self.assertEqual(BAD_MESSAGE, self.fault(response))
        self.assertEqual({'a': 'b'},
                         self.api.get_server(server['id'])['metadata'])
        self.api.post_server_metadata(server['id'], {key: 'keepassxc'})
        self.assertEqual('keepassxc',
                         self.api.get_server(server['id'])['metadata'][key])

    def test_other_project_server_is_404_not_checked(self):
        server = self.create_policy_server(metadata={})
        other = client.TestOpenStackClient(
            'other', self.api.base_url, project_id='other-project',
            roles=['reader', 'member'])
        other.microversion = self.microversion
        self.assertRaises(
            client.OpenStackApiNotFoundException, other.api_post,
            '/servers/%s/metadata' % server['id'], {'metadata': BAD})

    # -- refusals ----------------------------------------------------------

    def create_volume_backed_server(self, metadata):
        server = self._build_server(networks='none')
        server.pop('imageRef')
        server['block_device_mapping_v2'] = [{
            'boot_index': 0,
            'uuid': nova_fixtures.CinderFixture.IMAGE_BACKED_VOL,
            'source_type': 'volume', 'destination_type': 'volume'}]
        server['metadata'] = dict(metadata)
        server = self.api.post_server({'server': server})
        return self._wait_for_state_change(server, 'ACTIVE')

    def test_volume_backed_snapshot_with_disk_policy_is_refused(self):
        server = self.create_volume_backed_server(DISK_POLICY)
        images_before = len(self.glance.images)
        for action in ({'createImage': {'name': 'snap'}},
                       {'createBackup': {'name': 'b', 'backup_type': 'daily',
                                         'rotation': 1}}):
            response = self.api.api_post(
                '/servers/%s/action' % server['id'], action,
                check_response_status=[409])
            message = self.fault(response)
            self.assertIn('A snapshot of the volumes of volume-backed server '
                          '%s is refused by its privacy policy'
                          % server['id'], message)
        self.assertEqual(images_before, len(self.glance.images))
        self.assertEqual({}, dict(self.cinder.volume_snapshots))

    def test_volume_backed_snapshot_without_disk_policy_reaches_nova(self):
        server = self.create_volume_backed_server(MEMORY_POLICY)
        # The Cinder fixture's volumes lack what Nova's volume snapshot
        # reads: Nova's own call stands in for it.
        snapshot = self.useFixture(fixtures.MockPatch(
            'nova.compute.api.API.snapshot_volume_backed',
            return_value={'id': 'a4a3c4e2-0d8f-4a39-8d5b-2c1f6b0e9e11'}
        )).mock
        response = self.api.api_post(
            '/servers/%s/action' % server['id'],
            {'createImage': {'name': 'snap'}},
            check_response_status=[200, 202])
        self.assertEqual('a4a3c4e2-0d8f-4a39-8d5b-2c1f6b0e9e11',
                         response.body['image_id'])
        snapshot.assert_called_once()

    def test_crash_dump_with_memory_policy_is_refused(self):
        server = self.create_policy_server(metadata=MEMORY_POLICY)
        response = self.api.api_post(
            '/servers/%s/action' % server['id'],
            {'trigger_crash_dump': None}, check_response_status=[409])
        self.assertIn('A crash dump of server %s is refused by its privacy '
                      'policy' % server['id'], self.fault(response))
        flavor_id = self.create_flavor_with_specs(MEMORY_POLICY)
        server = self.create_policy_server(metadata={}, flavor_id=flavor_id)
        self.api.api_post('/servers/%s/action' % server['id'],
                          {'trigger_crash_dump': None},
                          check_response_status=[409])

    def test_crash_dump_without_memory_policy_reaches_nova(self):
        server = self.create_policy_server(metadata=DISK_POLICY)
        self.api.api_post('/servers/%s/action' % server['id'],
                          {'trigger_crash_dump': None},
                          check_response_status=[202])

    # -- records -------------------------------------------------------

    def test_snapshot_does_not_inherit_scrub_records(self):
        self.flags(non_inheritable_image_properties=shipped_non_inheritable())
        parent = copy.deepcopy(self.glance.image1)
        parent.pop('id')
        parent['properties'].update(PARENT_RECORDS)
        parent = self.glance.create(self.ctxt, parent)
        created = []
        create = self.glance.create

        def capture(context, metadata, data=None):
            created.append(copy.deepcopy(metadata))
            return create(context, metadata, data)

        self.glance.create = capture
        self.addCleanup(setattr, self.glance, 'create', create)
        server = self.create_policy_server(metadata={},
                                           image_uuid=parent['id'])
        image_id = self.create_image(server)
        self.assertEqual(1, len(created))
        for key in PARENT_RECORDS:
            self.assertNotIn(key, created[0]['properties'])
        final = self.image(image_id)['properties']
        for key in policy.RECORD_PROPERTIES:
            self.assertNotEqual(PARENT_RECORDS[key], final.get(key))
