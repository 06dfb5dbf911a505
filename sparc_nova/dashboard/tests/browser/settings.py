"""Settings of the Horizon that the browser tests serve: Horizon's
production settings (with the Privacy panel enabled through
``openstack_dashboard/local/enabled``, as tools/horizon/install.sh links
it) pointed at the test cloud's Keystone, on 127.0.0.1 only.

Everything that differs from a deployment comes from the environment the
test sets: ``OS_AUTH_URL`` (the cloud's Keystone), ``SPARC_HORIZON_STATIC``
(collected and compressed static files), ``SPARC_HORIZON_SECRET_KEY`` and
``SPARC_HORIZON_LOG``.
"""

import os

from openstack_dashboard.settings import *  # noqa: F403,H303

DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
SECRET_KEY = os.environ['SPARC_HORIZON_SECRET_KEY']
ROOT_URLCONF = 'sparc_nova.dashboard.tests.browser.urls'

OPENSTACK_KEYSTONE_URL = os.environ['OS_AUTH_URL']
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = 'Default'
OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
OPENSTACK_API_VERSIONS = {'identity': 3}
OPENSTACK_ENDPOINT_TYPE = 'publicURL'

# No memcached: sessions in signed cookies, caches in memory.
SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'
CACHES = {'default': {
    'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}

STATIC_ROOT = os.environ['SPARC_HORIZON_STATIC']
COMPRESS_ROOT = STATIC_ROOT
COMPRESS_OFFLINE = True
# Horizon's default anti-clickjacking script hides every page until
# JavaScript runs; without it, Django's X-Frame-Options header (DENY)
# still forbids framing, and pages can be read with JavaScript off.
DISALLOW_IFRAME_EMBED = False
# Row updates poll often enough for a test to wait for them.
HORIZON_CONFIG['ajax_poll_interval'] = 2000  # noqa: F405

# Mirrors nova.conf [sparc] on_failure_allow_from of the test cloud.
SPARC_ON_FAILURE_ALLOW_FROM = ['flavor']

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'file': {
        'class': 'logging.FileHandler',
        'filename': os.environ.get('SPARC_HORIZON_LOG', '/dev/null'),
        'formatter': 'plain'}},
    'formatters': {'plain': {
        'format': '%(asctime)s %(levelname)s %(name)s: %(message)s'}},
    'root': {'handlers': ['file'], 'level': 'INFO'},
}
