"""The WSGI application gunicorn serves for one OpenStack API.

``SPARC_CLOUD_WSGI_MODULE`` names the service's own WSGI module
(``keystone.wsgi.api``, ``nova.wsgi.osapi_compute``, ...). Those modules
parse ``sys.argv`` with oslo.config at import time and would reject
gunicorn's options, so the arguments are dropped first; each service finds
its configuration through its ``OS_<SERVICE>_CONFIG_*`` variables instead.

With ``SPARC_CLOUD_WSGI_PASTE_INI=<file>`` the application is that paste
file's ``main`` instead (after importing the module): Barbican's WSGI
script loads a fixed ``/etc/barbican`` paste file.

With ``SPARC_CLOUD_WSGI_CONFIGURE_MAPPERS=1`` SQLAlchemy's mappers are
configured once the application is loaded: neutron-server's port listing
reads a relationship that only exists once they are (``Port.
port_forwardings``, a backref), before its first query would configure
them.
"""

import importlib
import os
import sys

sys.argv = sys.argv[:1]
_module = importlib.import_module(os.environ['SPARC_CLOUD_WSGI_MODULE'])
if os.environ.get('SPARC_CLOUD_WSGI_PASTE_INI'):
    from paste import deploy
    application = deploy.loadapp(
        'config:' + os.environ['SPARC_CLOUD_WSGI_PASTE_INI'])
else:
    application = _module.application
if os.environ.get('SPARC_CLOUD_WSGI_CONFIGURE_MAPPERS') == '1':
    from sqlalchemy import orm
    orm.configure_mappers()
