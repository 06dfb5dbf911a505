"""nova-api's sparc_policy filter, with webob requests and a fake Nova
behind it.
"""

import json
import os
import subprocess
import sys

import pytest
import webob

from sparc_nova.api import middleware

SERVER = 'c6f8b1c2-4a1e-4a5e-9b0e-2f9d1f3c7a10'
BAD = {'sparc:exclude_processes': 'keepassxc,pid:x'}
BAD_PROBLEM = ("sparc:exclude_processes='keepassxc,pid:x' (instance "
               "metadata): 'pid:x': pid: takes a decimal number, not 'x'")
BAD_MESSAGE = 'invalid privacy policy: ' + BAD_PROBLEM


class FakeServers:
    """Servers by id: their facts; records every lookup."""

    def __init__(self, **servers):
        self.servers = servers
        self.lookups = []

    def get(self, context, server_id, volume_backed=False):
        self.lookups.append((context, server_id, volume_backed))
        facts = self.servers.get(server_id)
        if facts is None:
            return None
        return middleware.ServerFacts(
            {k: dict(v) for k, v in facts.sources.items()},
            facts.volume_backed if volume_backed else None)


def facts(metadata=None, flavor=None, image=None, volume_backed=False):
    return middleware.ServerFacts(
        {'flavor': dict(flavor or {}), 'image': dict(image or {}),
         'instance': dict(metadata or {})}, volume_backed)


def app_reached(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'nova']


def call(servers, method, path, body=None, project_prefix=''):
    filt = middleware.SparcPolicyMiddleware(app_reached, servers=servers)
    req = webob.Request.blank(project_prefix + path, method=method)
    req.environ['nova.context'] = 'ctx'
    if body is not None:
        req.body = json.dumps(body).encode()
        req.content_type = 'application/json'
    return req.get_response(filt)


def fault(response):
    (name, content), = response.json.items()
    return name, content['code'], content['message']


def test_message_is_what_sparc_policy_check_prints():
    sparc = os.path.join(os.path.dirname(sys.executable), 'sparc')
    result = subprocess.run([sparc, 'policy', 'check'] + [
        '%s=%s' % item for item in BAD.items()], capture_output=True,
        text=True)
    # Exit 1: problems found. Each problem is printed on its own line,
    # word for word what the API's 400 says after its prefix.
    assert result.returncode == 1
    assert '  problem: ' + BAD_PROBLEM in result.stdout.splitlines()


# -- routing ---------------------------------------------------------------

@pytest.mark.parametrize('method, path, expected', [
    ('POST', '/servers', ('create', None, None)),
    ('POST', '/proj1/servers', ('create', None, None)),
    ('GET', '/servers', (None, None, None)),
    ('PUT', '/servers/S/metadata', ('metadata-replace', 'S', None)),
    ('POST', '/servers/S/metadata', ('metadata-update', 'S', None)),
    ('PUT', '/servers/S/metadata/sparc:x', ('metadata-set', 'S', 'sparc:x')),
    ('DELETE', '/p/servers/S/metadata/k', ('metadata-delete', 'S', 'k')),
    ('GET', '/servers/S/metadata', (None, None, None)),
    ('POST', '/servers/S/action', ('action', 'S', None)),
    ('PUT', '/servers/S', (None, None, None)),
    ('POST', '/flavors/F/os-extra_specs', (None, None, None)),
    ('POST', '/servers/S/os-volume_attachments', (None, None, None)),
])
def test_route(method, path, expected):
    assert middleware.route(method, path) == expected


# -- metadata ----------------------------------------------------------------

def test_create_with_invalid_policy_is_400_with_policy_check_message():
    servers = FakeServers()
    response = call(servers, 'POST', '/servers',
                    {'server': {'name': 'a', 'metadata': BAD}})
    assert response.status_int == 400
    assert fault(response) == ('badRequest', 400, BAD_MESSAGE)
    assert servers.lookups == []


def test_create_with_valid_policy_reaches_nova():
    response = call(FakeServers(), 'POST', '/proj/servers', {'server': {
        'name': 'a', 'metadata': {'sparc:exclude_paths': '/home/*/.ssh/**',
                                  'other': 'x'}}})
    assert response.body == b'nova'


def test_create_without_metadata_reaches_nova():
    assert call(FakeServers(), 'POST', '/servers',
                {'server': {'name': 'a'}}).body == b'nova'


def test_metadata_set_one_invalid_is_400():
    servers = FakeServers(**{SERVER: facts({'a': 'b'})})
    key, value = next(iter(BAD.items()))
    response = call(servers, 'PUT', '/servers/%s/metadata/%s'
                    % (SERVER, key), {'meta': {key: value}})
    assert fault(response) == ('badRequest', 400, BAD_MESSAGE)


def test_metadata_update_merges_with_current_metadata():
    # exclude_paths.1 alone is a gap; with the current base key it is not.
    servers = FakeServers(**{SERVER: facts(
        {'sparc:exclude_paths': '/secrets/**'})})
    response = call(servers, 'POST', '/servers/%s/metadata' % SERVER,
                    {'metadata': {'sparc:exclude_paths.1': '*.pem'}})
    assert response.body == b'nova'
    servers = FakeServers(**{SERVER: facts({})})
    response = call(servers, 'POST', '/servers/%s/metadata' % SERVER,
                    {'metadata': {'sparc:exclude_paths.1': '*.pem'}})
    assert response.status_int == 400
    assert 'sparc:exclude_paths is missing' in fault(response)[2]


def test_metadata_replace_invalid_is_400():
    servers = FakeServers(**{SERVER: facts({})})
    response = call(servers, 'PUT', '/servers/%s/metadata' % SERVER,
                    {'metadata': dict(BAD, other='1')})
    assert fault(response)[2] == BAD_MESSAGE


def test_deleting_base_key_of_continuation_is_400():
    servers = FakeServers(**{SERVER: facts(
        {'sparc:exclude_paths': '/a', 'sparc:exclude_paths.1': '/b'})})
    response = call(servers, 'DELETE', '/servers/%s/metadata/'
                    'sparc:exclude_paths' % SERVER)
    assert response.status_int == 400


def test_an_invalid_policy_can_be_repaired_key_by_key():
    current = dict(BAD, **{'sparc:follow_ipc': 'maybe'})
    servers = FakeServers(**{SERVER: facts(current)})
    response = call(servers, 'DELETE', '/servers/%s/metadata/'
                    'sparc:follow_ipc' % SERVER)
    assert response.body == b'nova'
    response = call(servers, 'PUT', '/servers/%s/metadata/other' % SERVER,
                    {'meta': {'other': 'x'}})
    assert response.body == b'nova'
    # ... but a new problem is not let in next to the old ones.
    response = call(servers, 'POST', '/servers/%s/metadata' % SERVER,
                    {'metadata': {'sparc:suspend': 'never'}})
    assert response.status_int == 400
    assert "sparc:suspend='never'" in fault(response)[2]


def test_metadata_without_policy_keys_needs_no_lookup():
    servers = FakeServers()
    response = call(servers, 'POST', '/servers/%s/metadata' % SERVER,
                    {'metadata': {'owner': 'me'}})
    assert response.body == b'nova'
    assert servers.lookups == []


def test_unknown_server_is_left_to_nova():
    response = call(FakeServers(), 'PUT', '/servers/%s/metadata/%s'
                    % (SERVER, 'sparc:follow_ipc'),
                    {'meta': {'sparc:follow_ipc': 'maybe'}})
    assert response.body == b'nova'


def test_rebuild_metadata_is_checked():
    servers = FakeServers(**{SERVER: facts({})})
    response = call(servers, 'POST', '/servers/%s/action' % SERVER,
                    {'rebuild': {'imageRef': 'x', 'metadata': BAD}})
    assert fault(response)[2] == BAD_MESSAGE


@pytest.mark.parametrize('body', [b'not json', b'[1, 2]', b''])
def test_bodies_nova_refuses_pass_through(body):
    filt = middleware.SparcPolicyMiddleware(app_reached,
                                            servers=FakeServers())
    req = webob.Request.blank('/servers', method='POST', body=body)
    assert req.get_response(filt).body == b'nova'


def test_body_still_reaches_nova():
    seen = []

    def app(environ, start_response):
        seen.append(webob.Request(environ).body)
        return app_reached(environ, start_response)

    filt = middleware.SparcPolicyMiddleware(app, servers=FakeServers())
    body = json.dumps({'server': {'name': 'a', 'metadata': {
        'sparc:follow_ipc': 'true'}}}).encode()
    webob.Request.blank('/servers', method='POST', body=body).get_response(
        filt)
    assert seen == [body]


# -- actions -----------------------------------------------------------------

DISK_POLICY = {'sparc:exclude_paths': '/secrets/**'}
MEMORY_POLICY = {'sparc:exclude_processes': 'vault'}


@pytest.mark.parametrize('action, body', [
    ('createImage', {'name': 'snap'}),
    ('createBackup', {'name': 'b', 'backup_type': 'daily', 'rotation': 1}),
])
@pytest.mark.parametrize('source', ['instance', 'flavor', 'image'])
def test_volume_backed_snapshot_with_disk_policy_is_refused(action, body,
                                                            source):
    policy = DISK_POLICY if source != 'image' else {
        'sparc_exclude_paths': '/secrets/**'}
    servers = FakeServers(**{SERVER: facts(
        volume_backed=True, **{
            {'instance': 'metadata'}.get(source, source): policy})})
    response = call(servers, 'POST', '/servers/%s/action' % SERVER,
                    {action: body})
    assert response.status_int == 409
    name, code, message = fault(response)
    assert message.startswith('A snapshot of the volumes of volume-backed '
                              'server %s is refused by its privacy policy'
                              % SERVER)
    assert 'cannot remove the files the policy excludes' in message
    assert servers.lookups == [('ctx', SERVER, True)]


@pytest.mark.parametrize('server', [
    facts(DISK_POLICY, volume_backed=False),        # the driver scrubs it
    facts(MEMORY_POLICY, volume_backed=True),       # no disk part
    facts({}, volume_backed=True),
])
def test_other_snapshots_reach_nova(server):
    response = call(FakeServers(**{SERVER: server}), 'POST',
                    '/servers/%s/action' % SERVER,
                    {'createImage': {'name': 'snap'}})
    assert response.body == b'nova'


def test_volume_backed_snapshot_with_invalid_policy_is_refused():
    servers = FakeServers(**{SERVER: facts(BAD, volume_backed=True)})
    response = call(servers, 'POST', '/servers/%s/action' % SERVER,
                    {'createImage': {'name': 'snap'}})
    assert response.status_int == 409
    assert 'its privacy policy is invalid' in fault(response)[2]
    assert "'pid:x'" in fault(response)[2]


def test_crash_dump_with_memory_policy_is_refused():
    servers = FakeServers(**{SERVER: facts(MEMORY_POLICY)})
    response = call(servers, 'POST', '/servers/%s/action' % SERVER,
                    {'trigger_crash_dump': None})
    assert response.status_int == 409
    assert fault(response)[2].startswith(
        'A crash dump of server %s is refused by its privacy policy' % SERVER)
    assert servers.lookups == [('ctx', SERVER, False)]


@pytest.mark.parametrize('server', [facts(DISK_POLICY), facts({})])
def test_crash_dump_without_memory_policy_reaches_nova(server):
    response = call(FakeServers(**{SERVER: server}), 'POST',
                    '/servers/%s/action' % SERVER,
                    {'trigger_crash_dump': None})
    assert response.body == b'nova'


def test_other_actions_need_no_lookup():
    servers = FakeServers(**{SERVER: facts(MEMORY_POLICY)})
    response = call(servers, 'POST', '/servers/%s/action' % SERVER,
                    {'suspend': None})
    assert response.body == b'nova'
    assert servers.lookups == []
