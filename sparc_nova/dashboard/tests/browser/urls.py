"""Horizon's URLs, plus its collected static files (served by Django
itself: the browser tests run no separate web server).
"""

from django.conf import settings
from django.urls import re_path
from django.views import static

from openstack_dashboard.urls import urlpatterns as horizon_urlpatterns

urlpatterns = [
    re_path(r'^%s(?P<path>.*)$' % settings.STATIC_URL.lstrip('/'),
            static.serve, {'document_root': settings.STATIC_ROOT}),
] + list(horizon_urlpatterns)
