from django.urls import path

from . import ledger, quality

_VERSION = "datasets/<slug:slug>/versions/<int:number>/"

urlpatterns = [
    path("labels/<uuid:uid>/history/", ledger.LabelHistoryView.as_view(), name="api-label-history"),
    path(
        "datasets/<slug:slug>/versions/<int:number>/provenance/",
        ledger.VersionProvenanceView.as_view(),
        name="api-version-provenance",
    ),
    path(
        "datasets/<slug:slug>/versions/<int:number>/superseded-labels/",
        ledger.SupersededLabelsView.as_view(),
        name="api-superseded-labels",
    ),
    path("datasets/<slug:slug>/annotators/", ledger.AnnotatorsView.as_view(), name="api-dataset-annotators"),
    path("ledger/public-key/", ledger.PublicKeyView.as_view(), name="api-ledger-public-key"),
    path("ledger/verify/", ledger.VerifyView.as_view(), name="api-ledger-verify"),
    path(
        "ledger/verify/<int:job_id>/", ledger.VerificationStatusView.as_view(), name="api-ledger-verification"
    ),
    path(
        "ledger/events/<int:event_id>/bundle/",
        ledger.EventBundleView.as_view(),
        name="api-ledger-event-bundle",
    ),
    *[
        path(f"{_VERSION}{kind}/", quality.QualityReportView.as_view(kind=kind), name=f"api-version-{kind}")
        for kind in ("stats", "agreement", "balance", "compliance")
    ],
    path(f"{_VERSION}quality/recompute/", quality.RecomputeView.as_view(), name="api-quality-recompute"),
    path(f"{_VERSION}review-queue/", quality.ReviewQueueView.as_view(), name="api-review-queue"),
    *[
        path(
            f"{_VERSION}review-queue/<int:task_id>/{decision}/",
            quality.ReviewDecisionView.as_view(decision=decision),
            name=f"api-review-{decision}",
        )
        for decision in ("accept", "fix", "reject")
    ],
]
