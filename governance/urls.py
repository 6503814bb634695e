from django.urls import path

from . import views

urlpatterns = [
    path("labels/<uuid:uid>/", views.label_history, name="label-history"),
    path(
        "datasets/<slug:slug>/versions/<int:number>/provenance/",
        views.version_provenance,
        name="version-provenance",
    ),
    path("events/<int:event_id>/bundle.json", views.event_bundle, name="ledger-event-bundle"),
    path("public-key.pem", views.public_key, name="ledger-public-key"),
]

# --------------------------------------------------------------------------- quality pages (governance.quality_views)
from . import quality_views  # noqa: E402

urlpatterns += [
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/",
        quality_views.quality_overview,
        name="quality-overview",
    ),
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/compliance/",
        quality_views.compliance_report,
        name="quality-compliance",
    ),
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/review/",
        quality_views.review_queue,
        name="quality-review",
    ),
]

# --------------------------------------------------------------------------- the auditor's front page (governance.auditor_views)
from . import auditor_views  # noqa: E402

urlpatterns += [path("", auditor_views.index, name="governance-index")]
