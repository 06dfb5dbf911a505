"""Keystone's content: the service project, one user per service (with
the admin and service roles in the service project), the service catalog,
and a tenant: project :data:`MEMBER_PROJECT` whose user :data:`MEMBER_USER`
has only the ``member`` role.
"""

import openstack

from tests.e2e.cloud import settings as settings_mod

Settings = settings_mod.CloudSettings

#: service name -> (service type, path of its endpoint)
SERVICES = {
    'glance': ('image', ''),
    'placement': ('placement', ''),
    'neutron': ('network', ''),
    'nova': ('compute', '/v2.1'),
    'barbican': ('key-manager', ''),
}


#: The tenant's project and its member (roles member and, implied, reader).
MEMBER_PROJECT = 'sparc-tenant'
MEMBER_USER = 'sparc-member'


def member_auth(conf: Settings) -> dict[str, str]:
    """openstacksdk auth arguments of the tenant's member."""
    return dict(admin_auth(conf), username=MEMBER_USER,
                project_name=MEMBER_PROJECT)


def connect_member(conf: Settings) -> openstack.connection.Connection:
    """An openstacksdk connection as the tenant's member (no admin role)."""
    return openstack.connect(region_name=settings_mod.REGION,
                             identity_api_version='3',
                             connect_retries=3,
                             **member_auth(conf))


def admin_auth(conf: Settings) -> dict[str, str]:
    """openstacksdk auth arguments of the cloud's admin."""
    return {
        'auth_url': conf.auth_url,
        'username': 'admin',
        'password': conf.password,
        'project_name': 'admin',
        'user_domain_name': 'Default',
        'project_domain_name': 'Default',
    }


def connect(conf: Settings) -> openstack.connection.Connection:
    """An openstacksdk connection as the cloud's admin.

    A request whose connection fails is retried (three times, keystoneauth
    backs off from 0.5 s): the scenarios test the product, not the test
    cloud's sockets; a service that is really gone still fails them.
    """
    return openstack.connect(region_name=settings_mod.REGION,
                             identity_api_version='3',
                             connect_retries=3,
                             **admin_auth(conf))


def populate(conf: Settings) -> None:
    """Create the service project, users, services and endpoints."""
    conn = connect(conf)
    ident = conn.identity
    project = ident.create_project(name=settings_mod.SERVICE_PROJECT,
                                   domain_id='default')
    # Services validate each other's service tokens by the "service" role.
    roles = [ident.find_role('admin'),
             ident.find_role('service') or ident.create_role(name='service')]
    for name, (service_type, path) in SERVICES.items():
        user = ident.create_user(name=name, password=conf.password,
                                 domain_id='default',
                                 default_project_id=project.id)
        for role in roles:
            ident.assign_project_role_to_user(project, user, role)
        service = ident.create_service(name=name, type=service_type)
        for interface in ('public', 'internal'):
            ident.create_endpoint(service_id=service.id, interface=interface,
                                  url=conf.url(name, path),
                                  region_id=settings_mod.REGION)
    tenant = ident.create_project(name=MEMBER_PROJECT, domain_id='default')
    member = ident.create_user(name=MEMBER_USER, password=conf.password,
                               domain_id='default',
                               default_project_id=tenant.id)
    ident.assign_project_role_to_user(tenant, member,
                                      ident.find_role('member'))
    conn.close()


def openrc(conf: Settings) -> str:
    """Shell lines that point the ``openstack`` client at the cloud."""
    auth = admin_auth(conf)
    return ''.join('export OS_%s=%s\n' % (k.upper(), v) for k, v in (
        list(auth.items()) + [('region_name', settings_mod.REGION),
                              ('identity_api_version', '3')]))
