from django.urls import path

from governance.views import auditor as auditor_pages
from governance.views import ledger as ledger_pages
from governance.views import quality as quality_pages

urlpatterns = [
    # The auditor's front page: released versions and their evidence.
    path("", auditor_pages.index, name="governance-index"),
    path("labels/<uuid:uid>/", ledger_pages.label_history, name="label-history"),
    path(
        "datasets/<slug:slug>/versions/<int:number>/provenance/",
        ledger_pages.version_provenance,
        name="version-provenance",
    ),
    path("events/<int:event_id>/bundle.json", ledger_pages.event_bundle, name="ledger-event-bundle"),
    path("public-key.pem", ledger_pages.public_key, name="ledger-public-key"),
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/",
        quality_pages.quality_overview,
        name="quality-overview",
    ),
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/compliance/",
        quality_pages.compliance_report,
        name="quality-compliance",
    ),
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/review/",
        quality_pages.review_queue,
        name="quality-review",
    ),
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/review/<int:task_id>/thumbnail.jpg",
        quality_pages.review_thumbnail,
        name="quality-review-thumbnail",
    ),
    path(
        "datasets/<slug:slug>/versions/<int:number>/quality/review/<int:task_id>/by/<int:annotator_id>.jpg",
        quality_pages.review_thumbnail,
        name="quality-review-annotator-thumbnail",
    ),
]
