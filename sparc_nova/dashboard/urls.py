"""URLs of the Privacy panel."""

from django.urls import re_path

from sparc_nova.dashboard import views

INSTANCE = r'^(?P<instance_id>[^/]+)/%s$'

urlpatterns = [
    re_path(r'^$', views.IndexView.as_view(), name='index'),
    re_path(INSTANCE % '', views.DetailView.as_view(), name='detail'),
    re_path(INSTANCE % 'edit/', views.EditView.as_view(), name='edit'),
    re_path(INSTANCE % 'snapshot/', views.SnapshotView.as_view(),
            name='snapshot'),
]
