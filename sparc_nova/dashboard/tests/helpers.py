"""A base test case for the Privacy panel's views: Horizon's TestCase with
the panel's API reads mocked, as Horizon's own view tests mock its API.
"""

import argparse
import contextlib
import io
import json

from django.test.utils import override_settings
from openstack_auth import policy as auth_policy

from openstack_dashboard.test import helpers as test

from sparc_nova.cmd import policy as cmd_policy
from sparc_nova.dashboard import api
from sparc_nova.dashboard.tests import data

#: Horizon's shipped policy files, checked as a deployment checks them.
REAL_POLICY_SETTINGS = {
    'POLICY_CHECK_FUNCTION': 'openstack_auth.policy.check',
    'POLICY_FILES': {'compute': 'nova_policy.yaml',
                     'identity': 'keystone_policy.yaml'},
}

READS = {api: ['server_list', 'server_get', 'image_properties',
               'latest_snapshots', 'snapshots', 'policed_requests']}


class PrivacyTestCase(test.TestCase):
    """Mocks for the reads are set up by :func:`mock_reads` (call it in a
    test decorated with ``test.create_mocks(READS)``).
    """

    def mock_reads(self, servers, images=None, snapshots=None,
                   requests=None):
        """Nova answers with ``servers``; every image is the base image
        with ``images`` as its properties; ``snapshots`` are the latest
        snapshot records by instance id, ``requests`` the newest policed
        requests (Nova's action log) by instance id: one
        ``InstanceRequest`` or a list of them, at most one per action.
        """
        images = (data.IMAGE_PROPERTIES if images is None else images)
        by_id = {s.id: s for s in servers}

        def server_get(request, server_id):
            if server_id not in by_id:
                raise self.exceptions.nova
            return by_id[server_id]

        def image_properties(request, wanted):
            return {s.id: dict(images) if images is not False else None
                    for s in wanted}

        def latest_snapshots(request, instance_id=None):
            found = dict(snapshots or {})
            if instance_id:
                return {k: v for k, v in found.items() if k == instance_id}
            return found

        self.mock_server_list.return_value = (servers, False)
        self.mock_server_get.side_effect = server_get
        self.mock_image_properties.side_effect = image_properties
        self.mock_latest_snapshots.side_effect = latest_snapshots
        self.mock_snapshots.return_value = list((snapshots or {}).values())

        def policed_requests(request, instance_id, suspended=False):
            found = (requests or {}).get(instance_id) or []
            if not isinstance(found, list):
                found = [found]
            return {r.action: r for r in found}

        self.mock_policed_requests.side_effect = policed_requests


class RealPolicyMixin(object):
    """Horizon's policy checks on, with its shipped compute policy."""

    def setUp(self):
        super().setUp()
        auth_policy.reset()
        override = override_settings(**REAL_POLICY_SETTINGS)
        override.enable()
        self.addCleanup(override.disable)
        self.addCleanup(auth_policy.reset)

    def as_user(self, roles, tenant_id=None):
        """Log in the test user with ``roles`` (names) in its project."""
        self._setup_user(
            roles=[{'id': str(i), 'name': r} for i, r in enumerate(roles)],
            tenant_id=tenant_id or self.tenant.id)


def sparc_policy_check(pairs):
    """The errors ``sparc policy check --format json`` gives for
    ``pairs`` (instance metadata).
    """
    parser = argparse.ArgumentParser()
    cmd_policy.register(parser.add_subparsers())
    args = parser.parse_args(['policy', 'check', '--format', 'json'] +
                             ['%s=%s' % kv for kv in pairs.items()])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = args.func(args)
    result = json.loads(out.getvalue())
    return rc, result.get('errors', [])
