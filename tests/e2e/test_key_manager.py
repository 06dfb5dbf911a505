"""The cloud's key manager, as Nova's sealed suspend uses it: castellan's
``key_manager.API`` built from nova-compute's own ``nova-cpu.conf`` (its
``[key_manager]`` and ``[barbican]`` sections, written by
devstack/lib/sparc's ``configure_sparc_key_manager``), with a project member's
request context (an oslo.context ``RequestContext`` holding the member's
Keystone token and project), reaches Barbican through the catalog:

* it stores a 256-bit AES key and gets the same bytes back; another
  member of the same project gets them too (a resume may be asked for
  by another user than the suspend), also with Nova's own request
  context as nova-compute receives it;
* the secret belongs to the member's project: ``openstack secret list``
  of that member shows it, a member of another project can neither read
  nor delete it (Barbican answers 403 or 404) nor sees it listed, and a
  request without a token is refused (401);
* the member deletes it, after which it is gone (castellan's not-found
  error, and no longer listed).
"""

import os
import uuid

from castellan.common import exception as castellan_exception
from castellan.common.objects import symmetric_key
import pytest
import requests

from tests.e2e import castellan_client
from tests.e2e.cloud import catalog

pytestmark = pytest.mark.e2e


def _listed(cli, secret_id: str) -> bool:
    """Whether ``openstack secret list`` (the member's) shows the secret."""
    return any(row['Secret href'].endswith('/' + secret_id)
               for row in cli.json('secret', 'list'))


@pytest.fixture(scope='module')
def key_manager_api(cloud):
    """castellan's key manager configured by nova-compute's file."""
    return castellan_client.castellan_api(cloud.conf)


def _add_member(cloud, conn, project, made: list):
    """A new user with the member role in ``project``; its session."""
    user = conn.identity.create_user(
        name='sparc-e2e-member-' + uuid.uuid4().hex[:8],
        password=cloud.conf.password, domain_id='default',
        default_project_id=project.id)
    made.append(user)
    conn.identity.assign_project_role_to_user(
        project, user, conn.identity.find_role('member'))
    return castellan_client.session(cloud.conf, user.name, project.name)


@pytest.fixture(scope='module')
def members(cloud, conn):
    """Sessions of two users made for this module: ``same``, another
    member of the tenant's project, and ``other``, the member of another
    project.
    """
    made: list = []
    other_project = conn.identity.create_project(
        name='sparc-e2e-other-' + uuid.uuid4().hex[:8], domain_id='default')
    try:
        tenant = conn.identity.find_project(catalog.MEMBER_PROJECT,
                                            ignore_missing=False)
        yield {'same': _add_member(cloud, conn, tenant, made),
               'other': _add_member(cloud, conn, other_project, made)}
    finally:
        for user in made:
            conn.identity.delete_user(user, ignore_missing=True)
        conn.identity.delete_project(other_project, ignore_missing=True)


def test_member_stores_gets_and_deletes_a_project_key(
        cloud, key_manager_api, member_cli, members):
    other_member = members['other']
    member = castellan_client.session(cloud.conf, catalog.MEMBER_USER,
                                      catalog.MEMBER_PROJECT)
    ctx = castellan_client.request_context(member)
    key_bytes = os.urandom(32)
    key_id = key_manager_api.store(
        ctx, symmetric_key.SymmetricKey('AES', 256, key_bytes))
    try:
        fetched = key_manager_api.get(ctx, key_id)
        assert fetched.get_encoded() == key_bytes
        assert (fetched.algorithm, fetched.bit_length) == ('AES', 256)
        assert _listed(member_cli, key_id)
        # Another member of the same project reads it.
        same_ctx = castellan_client.request_context(members['same'])
        assert same_ctx.project_id == ctx.project_id
        assert same_ctx.user_id != ctx.user_id
        assert key_manager_api.get(same_ctx, key_id).get_encoded() == \
            key_bytes
        # So does Nova's own context of that member, as nova-compute
        # gets it (castellan uses Nova's auth plugin and its catalog).
        nova_ctx = castellan_client.nova_request_context(members['same'])
        assert key_manager_api.get(nova_ctx, key_id).get_encoded() == \
            key_bytes

        # Another project's member: refused, and not in its listing.
        other_ctx = castellan_client.request_context(other_member)
        assert other_ctx.project_id != ctx.project_id
        with pytest.raises((castellan_exception.KeyManagerError,
                            castellan_exception.ManagedObjectNotFoundError)):
            key_manager_api.get(other_ctx, key_id)
        with pytest.raises((castellan_exception.KeyManagerError,
                            castellan_exception.ManagedObjectNotFoundError)):
            key_manager_api.delete(other_ctx, key_id)
        url = castellan_client.barbican_url(other_member,
                                            '/v1/secrets/' + key_id)
        for method in ('GET', 'DELETE'):
            response = other_member.request(url, method, raise_exc=False)
            assert response.status_code in (403, 404), (
                method, response.status_code, response.text)
        assert key_id not in castellan_client.project_secret_ids(other_member)
        # No token, no secret: keystonemiddleware is in the pipeline.
        anonymous = requests.get(castellan_client.barbican_url(
            member, '/v1/secrets/' + key_id), timeout=30)
        assert anonymous.status_code == 401, anonymous.text
        assert key_id in castellan_client.project_secret_ids(member)
        # Still there for its own project.
        assert key_manager_api.get(ctx, key_id).get_encoded() == key_bytes
    finally:
        key_manager_api.delete(ctx, key_id)
    with pytest.raises(castellan_exception.ManagedObjectNotFoundError):
        key_manager_api.get(ctx, key_id)
    assert not _listed(member_cli, key_id)
