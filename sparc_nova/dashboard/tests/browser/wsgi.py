"""WSGI entry point of the Horizon the browser tests serve (Horizon's own
``openstack_dashboard.wsgi`` forces its production settings module).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ['DJANGO_SETTINGS_MODULE'] = (
    'sparc_nova.dashboard.tests.browser.settings')
application = get_wsgi_application()
