"""The API under /api/v1/, one module per resource; every route is declared here, in one list."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import datasets, deliveries, samples
from . import exports as ex
from . import licensing as licensing_api
from . import workspace as ws

router = SimpleRouter()
router.register("datasets", datasets.DatasetViewSet, basename="api-dataset")

licensing_router = SimpleRouter()
licensing_router.register("orders", licensing_api.OrderViewSet, basename="api-order")
licensing_router.register(
    "access-requests", licensing_api.AccessRequestViewSet, basename="api-access-request"
)
licensing_router.register("entitlements", licensing_api.EntitlementViewSet, basename="api-entitlement")

_WS = "workspace/datasets/<slug:slug>"
_VERSION = "datasets/<slug:dataset_slug>/versions/<int:number>"

urlpatterns = [
    # The catalogue (marketplace.api.datasets)
    *router.urls,
    path(
        "datasets/<slug:dataset_slug>/versions/",
        datasets.VersionViewSet.as_view({"get": "list"}),
        name="api-version-list",
    ),
    path(f"{_VERSION}/", datasets.VersionViewSet.as_view({"get": "retrieve"}), name="api-version-detail"),
    # Supplier deliveries (marketplace.api.deliveries)
    path(
        "datasets/<slug:dataset_slug>/deliveries/",
        deliveries.DatasetDeliveriesView.as_view(),
        name="api-dataset-deliveries",
    ),
    path("deliveries/", deliveries.DeliveryListView.as_view(), name="api-delivery-list"),
    path("deliveries/<int:pk>/", deliveries.DeliveryDetailView.as_view(), name="api-delivery-detail"),
    # The supplier's workspace, the version diff and notifications (marketplace.api.workspace)
    path("workspace/datasets/", ws.DatasetListView.as_view(), name="api-ws-dataset-list"),
    path(f"{_WS}/", ws.DatasetDetailView.as_view(), name="api-ws-dataset-detail"),
    path(f"{_WS}/versions/", ws.VersionListView.as_view(), name="api-ws-version-list"),
    path(f"{_WS}/versions/<int:number>/", ws.VersionDetailView.as_view(), name="api-ws-version-detail"),
    path(f"{_WS}/versions/<int:number>/datasheet/", ws.DatasheetView.as_view(), name="api-ws-datasheet"),
    path(f"{_WS}/versions/<int:number>/schema/", ws.SchemaView.as_view(), name="api-ws-schema"),
    path(f"{_WS}/versions/<int:number>/publish/", ws.PublishView.as_view(), name="api-ws-publish"),
    path(f"{_WS}/versions/<int:number>/deprecate/", ws.DeprecateView.as_view(), name="api-ws-deprecate"),
    path(f"{_WS}/diff/", ws.WorkspaceDiffView.as_view(), name="api-ws-diff"),
    path(f"{_WS}/guidelines/", ws.GuidelineListView.as_view(), name="api-ws-guidelines"),
    path(f"{_WS}/offers/", ws.OfferListView.as_view(), name="api-ws-offer-list"),
    path(f"{_WS}/offers/<int:pk>/", ws.OfferDetailView.as_view(), name="api-ws-offer-detail"),
    path("workspace/licenses/", ws.LicenseListView.as_view(), name="api-ws-licenses"),
    path("datasets/<slug:slug>/diff/", ws.DatasetDiffView.as_view(), name="api-dataset-diff"),
    path("notifications/", ws.NotificationListView.as_view(), name="api-notification-list"),
    path("notifications/read/", ws.NotificationReadView.as_view(), name="api-notification-read"),
    # Buyer exports, signed downloads and Croissant metadata (marketplace.api.exports)
    path(f"{_VERSION}/exports/", ex.VersionExportsView.as_view(), name="api-export-list"),
    path(f"{_VERSION}/croissant/", ex.VersionCroissantView.as_view(), name="api-version-croissant"),
    path("exports/<int:pk>/", ex.ExportDetailView.as_view(), name="api-export-detail"),
    path("exports/<int:pk>/download/", ex.ExportDownloadView.as_view(), name="api-export-download"),
    path(
        "datasets/<slug:dataset_slug>/downloads/",
        ex.DatasetDownloadsView.as_view(),
        name="api-dataset-downloads",
    ),
    # Samples and previews (marketplace.api.samples)
    path(f"{_VERSION}/samples/", samples.SamplesView.as_view(), name="api-samples"),
    path(
        f"{_VERSION}/items/<int:item_id>/preview/", samples.PreviewView.as_view(), name="api-sample-preview"
    ),
    path(
        f"{_VERSION}/items/<int:item_id>/original/",
        samples.OriginalView.as_view(),
        name="api-sample-original",
    ),
    # Licensing (marketplace.api.licensing)
    path("offers/<int:offer_id>/purchase/", licensing_api.PurchaseView.as_view(), name="api-offer-purchase"),
    path(
        "offers/<int:offer_id>/request-access/",
        licensing_api.RequestAccessView.as_view(),
        name="api-offer-request-access",
    ),
    *licensing_router.urls,
]
