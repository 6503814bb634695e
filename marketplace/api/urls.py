from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("datasets", views.DatasetViewSet, basename="api-dataset")

urlpatterns = [
    *router.urls,
    path(
        "datasets/<slug:dataset_slug>/versions/",
        views.VersionViewSet.as_view({"get": "list"}),
        name="api-version-list",
    ),
    path(
        "datasets/<slug:dataset_slug>/versions/<int:number>/",
        views.VersionViewSet.as_view({"get": "retrieve"}),
        name="api-version-detail",
    ),
]
