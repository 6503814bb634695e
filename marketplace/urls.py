from django.urls import path

from . import views

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("datasets/<slug:slug>/", views.dataset_detail, name="dataset-detail"),
]

# Where a user lands after logging in, by role (marketplace.navigation)
from . import navigation  # noqa: E402

urlpatterns += [path("home/", navigation.home, name="home")]

# The supplier's delivery pages (marketplace.supplier_views)
from . import supplier_views  # noqa: E402

urlpatterns += [
    path("supplier/deliveries/", supplier_views.deliveries, name="supplier-deliveries"),
    path("supplier/deliveries/<int:pk>/", supplier_views.delivery_detail, name="supplier-delivery"),
]

# The buyer's marketplace: samples, licensing, library; the supplier's requests and orders (marketplace.views)
urlpatterns += [
    path("datasets/<slug:slug>/versions/<int:number>/samples/", views.samples, name="samples"),
    path("datasets/<slug:slug>/offers/<int:offer_id>/", views.offer, name="offer"),
    path("library/", views.library, name="library"),
    path("library/actions/", views.library_action, name="library-action"),
    path("supplier/requests/", views.supplier_requests, name="supplier-requests"),
    path("supplier/orders/", views.supplier_orders, name="supplier-orders"),
]

# The supplier's workspace and everyone's notifications (marketplace.workspace_views)
from . import workspace_views as ws  # noqa: E402

urlpatterns += [
    path("workspace/", ws.home, name="workspace"),
    path("workspace/<slug:slug>/", ws.dataset_editor, name="workspace-dataset"),
    path("workspace/<slug:slug>/drafts/", ws.start_draft, name="workspace-start-draft"),
    path("workspace/<slug:slug>/guidelines/", ws.guidelines, name="workspace-guidelines"),
    path("workspace/<slug:slug>/offers/", ws.offers, name="workspace-offers"),
    path("workspace/<slug:slug>/versions/<int:number>/", ws.version_review, name="workspace-version"),
    path("workspace/<slug:slug>/versions/<int:number>/datasheet/", ws.datasheet, name="workspace-datasheet"),
    path("workspace/<slug:slug>/versions/<int:number>/schema/", ws.schema, name="workspace-schema"),
    path("workspace/<slug:slug>/versions/<int:number>/publish/", ws.publish, name="workspace-publish"),
    path("workspace/<slug:slug>/versions/<int:number>/deprecate/", ws.deprecate, name="workspace-deprecate"),
    path("notifications/", ws.notification_list, name="notifications"),
]
