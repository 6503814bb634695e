"""The pages (marketplace/views/), grouped by audience."""

from django.urls import path

from .views import accounts, catalogue, home, library, supplier
from .views import workspace as ws

urlpatterns = [
    # Everyone: the catalogue, a dataset, its samples, an offer.
    path("", catalogue.catalogue, name="catalogue"),
    # Where a user lands after logging in, by role (marketplace.navigation).
    path("home/", home.home, name="home"),
    path("datasets/<slug:slug>/", catalogue.dataset_detail, name="dataset-detail"),
    path("datasets/<slug:slug>/versions/<int:number>/samples/", catalogue.samples, name="samples"),
    path("datasets/<slug:slug>/offers/<int:offer_id>/", catalogue.offer, name="offer"),
    # Buyers: sign-up with e-mail confirmation.
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/confirm/<str:token>/", accounts.signup_confirm, name="signup-confirm"),
    # Buyers: the library and its buttons.
    path("library/", library.library, name="library"),
    path("library/actions/", library.library_action, name="library-action"),
    # Suppliers: deliveries, access requests, orders.
    path("supplier/deliveries/", supplier.deliveries, name="supplier-deliveries"),
    path("supplier/deliveries/<int:pk>/", supplier.delivery_detail, name="supplier-delivery"),
    path("supplier/requests/", supplier.supplier_requests, name="supplier-requests"),
    path("supplier/orders/", supplier.supplier_orders, name="supplier-orders"),
    # Suppliers: the workspace; everyone: notifications.
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
    path(
        "workspace/<slug:slug>/versions/<int:number>/delete/", ws.delete_draft, name="workspace-delete-draft"
    ),
    path("notifications/", ws.notification_list, name="notifications"),
]
