"""The cloud's key manager as the end-to-end tests reach it: castellan's
``key_manager.API`` configured by nova-compute's own configuration (what
it uses for sealed suspends), request contexts of Keystone
users (oslo.context's, and Nova's own as nova-compute receives it), and
Barbican's REST API for what a project holds.
"""

from castellan import key_manager
from castellan.key_manager import key_manager as key_manager_base
from keystoneauth1.identity import v3
from keystoneauth1 import session as ks_session
from nova import context as nova_context
from oslo_config import cfg
from oslo_context import context as oslo_context

from tests.e2e.cloud import nova
from tests.e2e.cloud import settings as settings_mod

__all__ = ['castellan_api', 'session', 'request_context',
           'nova_request_context', 'barbican_url', 'project_secrets',
           'project_secret_ids']


def castellan_api(conf: settings_mod.CloudSettings
                  ) -> key_manager_base.KeyManager:
    """castellan's key manager, configured by nova-compute's
    configuration file (its ``[key_manager]`` and ``[barbican]``
    sections).
    """
    options = cfg.ConfigOpts()
    options(args=[], project='nova',
            default_config_files=[nova.compute_conf_file(conf)])
    return key_manager.API(options)


def session(conf: settings_mod.CloudSettings, username: str,
            project_name: str) -> ks_session.Session:
    """A keystoneauth session of ``username`` (the cloud's password)
    scoped to ``project_name``.
    """
    auth = v3.Password(auth_url=conf.auth_url, username=username,
                       password=conf.password, project_name=project_name,
                       user_domain_name='Default',
                       project_domain_name='Default')
    return ks_session.Session(auth=auth)


def request_context(sess: ks_session.Session) -> oslo_context.RequestContext:
    """The request context an API service builds for the session's user
    (its token, project and user).
    """
    return oslo_context.RequestContext(auth_token=sess.get_token(),
                                       project_id=sess.get_project_id(),
                                       user_id=sess.get_user_id())


def _catalog_as_nova_gets_it(catalog: list[dict]) -> list[dict]:
    """A v3 service catalog in the v2 shape that keystonemiddleware hands
    Nova (``X-Service-Catalog``): per service its type, name and one
    entry per region with a ``<interface>URL`` per interface.
    """
    services = []
    for service in catalog:
        by_region: dict = {}
        for endpoint in service.get('endpoints', []):
            region = endpoint.get('region')
            entry = by_region.setdefault(
                region, {'region': region} if region else {})
            entry[endpoint['interface'].lower() + 'URL'] = endpoint['url']
        services.append({'type': service['type'],
                         'name': service.get('name', ''),
                         'endpoints': list(by_region.values())})
    return services


def nova_request_context(sess: ks_session.Session
                         ) -> nova_context.RequestContext:
    """Nova's request context of the session's user, as nova-api builds
    it and nova-compute receives it: the token, project, user and the
    token's service catalog. castellan then authenticates with Nova's own
    auth plugin (``get_auth_plugin``) and finds Barbican in that catalog.
    """
    access = sess.auth.get_access(sess)
    return nova_context.RequestContext(
        user_id=access.user_id, project_id=access.project_id,
        auth_token=access.auth_token, is_admin=False,
        service_catalog=_catalog_as_nova_gets_it(
            access.service_catalog.catalog))


def barbican_url(sess: ks_session.Session, path: str) -> str:
    """``path`` on Barbican's public endpoint (from the session's
    catalog).
    """
    endpoint = sess.get_endpoint(service_type='key-manager',
                                 interface='public',
                                 region_name=settings_mod.REGION)
    return endpoint.rstrip('/') + path


def project_secrets(sess: ks_session.Session) -> list[dict]:
    """The secrets Barbican lists for the session's project (first 100),
    as its API describes them (``secret_ref``, ``name``, ``algorithm``...).
    """
    return sess.get(barbican_url(sess, '/v1/secrets'),
                    params={'limit': 100}).json()['secrets']


def project_secret_ids(sess: ks_session.Session) -> set[str]:
    """The ids of the secrets Barbican lists for the session's project
    (first 100).
    """
    return {s['secret_ref'].rstrip('/').rpartition('/')[2]
            for s in project_secrets(sess)}
