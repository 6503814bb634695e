"""Quality API: a version's stats, agreement, balance and compliance reports, and the review queue.

Scoping, before anything is read: the reports of a version are readable by whoever may see the
version (released versions of visible datasets; drafts only by their supplier); the review queue
only by the supplier. Everyone else gets the same 404 as for a version that does not exist.
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.models import ReviewTask
from governance.quality import consensus, reports
from governance.quality.access import readable_version, supplied_version
from governance.quality.tasks import compute_quality_reports
from marketplace.errors import DomainError
from marketplace.models import DatasetVersion


def report_payload(version: DatasetVersion, kind: str) -> dict:
    stored = reports.stored_report(version, kind)
    return {
        "dataset": version.dataset.slug,
        "version": version.number,
        "version_status": version.status,
        "kind": kind,
        "computed_at": stored.computed_at,
        "parameters": stored.parameters,
        "result": stored.result,
    }


class QualityReportView(APIView):
    """One quality report of a version (``kind``: stats, agreement, balance or compliance)."""

    kind = ""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug, number):
        version = readable_version(request.user, slug, number)
        return Response(report_payload(version, self.kind))


class RecomputeView(APIView):
    """The supplier asks for the reports to be computed again; the work runs as a background task."""

    permission_classes = [AllowAny]  # supplied_version() decides: anyone else, anonymous too, gets a 404

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, slug, number):
        version = supplied_version(request.user, slug, number)
        transaction.on_commit(lambda: compute_quality_reports.delay(version.pk, force=True))
        return Response(
            {"dataset": slug, "version": number, "status": "queued"}, status=status.HTTP_202_ACCEPTED
        )


class ReviewTaskSerializer(serializers.ModelSerializer):
    item = serializers.CharField(source="item.key")
    reviewer = serializers.CharField(source="reviewer.pseudonym", default=None)
    decided_by = serializers.CharField(source="decided_by.username", default=None)

    class Meta:
        model = ReviewTask
        fields = [
            "id",
            "item",
            "score",
            "components",
            "threshold",
            "status",
            "reviewer",
            "decided_by",
            "decided_at",
            "note",
            "created_at",
        ]


class QueueRequestSerializer(serializers.Serializer):
    threshold = serializers.FloatField(
        required=False, default=consensus.DEFAULT_REVIEW_THRESHOLD, min_value=0.0, max_value=1.0
    )


class DecisionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    reviewer = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Annotator pseudonym"
    )
    label_uid = serializers.UUIDField(required=False)
    category = serializers.CharField(required=False)
    geometry = serializers.JSONField(required=False)
    attributes = serializers.JSONField(required=False)


class ReviewQueueView(APIView):
    """The supplier's review queue: images whose annotators disagreed. POST opens tasks under a threshold."""

    permission_classes = [AllowAny]  # supplied_version() decides: anyone else, anonymous too, gets a 404

    @extend_schema(responses=ReviewTaskSerializer(many=True))
    def get(self, request, slug, number):
        version = supplied_version(request.user, slug, number)
        tasks = ReviewTask.objects.filter(version=version).select_related("item", "reviewer", "decided_by")
        wanted = request.GET.get("status")
        if wanted:
            tasks = tasks.filter(status=wanted)
        return Response(
            {
                "dataset": slug,
                "version": number,
                "open": ReviewTask.objects.filter(version=version).open().count(),
                "tasks": ReviewTaskSerializer(tasks, many=True).data,
            }
        )

    @extend_schema(request=QueueRequestSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request, slug, number):
        version = supplied_version(request.user, slug, number)
        params = QueueRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        opened = consensus.build_review_queue(version=version, threshold=params.validated_data["threshold"])
        return Response({"opened": opened, "threshold": params.validated_data["threshold"]}, status=201)


class ReviewDecisionView(APIView):
    """Accept, fix or reject the labels of one queued image; each decision is a ledger event."""

    permission_classes = [AllowAny]  # supplied_version() decides: anyone else, anonymous too, gets a 404

    decision = ""

    @extend_schema(request=DecisionSerializer, responses=ReviewTaskSerializer)
    def post(self, request, slug, number, task_id):
        version = supplied_version(request.user, slug, number)
        task = ReviewTask.objects.filter(version=version, pk=task_id).first()
        if task is None:
            raise DomainError("No such review task.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        reviewer = consensus.reviewer_named(version, data["reviewer"])
        common = {"task": task, "user": request.user, "reviewer": reviewer, "note": data["note"]}
        if self.decision == "accept":
            task = consensus.accept_review(**common)
        elif self.decision == "reject":
            task = consensus.reject_review(**common)
        else:
            if "label_uid" not in data:
                raise DomainError("Say which label to fix (label_uid).", code="label_required")
            task = consensus.fix_review(
                **common,
                label_uid=data["label_uid"],
                category=data.get("category"),
                geometry=data.get("geometry"),
                attributes=data.get("attributes"),
            )
        return Response(ReviewTaskSerializer(task).data)
