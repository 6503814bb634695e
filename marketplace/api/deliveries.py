"""Deliveries API: a supplier uploads an archive (202) and follows its validation.

Only the dataset's supplier sees its deliveries: for everyone else, signed in or not, the
dataset's delivery endpoints and every delivery are a 404, so they do not learn that they exist.
"""

from __future__ import annotations

import json

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import visibility
from ..deliveries import service as deliveries
from ..deliveries import tasks as delivery_tasks
from ..models import Dataset, Delivery
from .pagination import Pagination


class DeliverySerializer(serializers.ModelSerializer):
    """A delivery as its supplier follows it: status, progress, counts and the validation report."""

    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    version = serializers.SerializerMethodField()
    stage = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    provenance = serializers.SerializerMethodField()
    report = serializers.SerializerMethodField()
    problem_counts = serializers.SerializerMethodField()
    problems_not_listed = serializers.SerializerMethodField()
    lineage = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = [
            "id",
            "dataset",
            "original_name",
            "format",
            "status",
            "progress",
            "stage",
            "version",
            "counts",
            "provenance",
            "report",
            "problem_counts",
            "problems_not_listed",
            "defaults",
            "matching",
            "lineage",
            "created_at",
            "finished_at",
        ]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_version(self, obj):
        return obj.version.number if obj.version_id else None

    def get_stage(self, obj) -> str:
        return (obj.report or {}).get("stage", "")

    @extend_schema_field(serializers.DictField())
    def get_counts(self, obj):
        return (obj.report or {}).get("counts", {})

    @extend_schema_field(serializers.DictField())
    def get_provenance(self, obj):
        return (obj.report or {}).get("provenance", {})

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_report(self, obj):
        return [
            {k: p.get(k) for k in ("severity", "code", "file", "location", "message")}
            for p in (obj.report or {}).get("problems", [])
        ]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_problem_counts(self, obj):
        return (obj.report or {}).get("problem_counts", {"error": 0, "warning": 0, "info": 0})

    def get_problems_not_listed(self, obj) -> int:
        return (obj.report or {}).get("problems_not_listed", 0)

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_lineage(self, obj):
        """How the labels were matched to the previous version's (counts by method, examples, thresholds)."""
        return (obj.report or {}).get("lineage")


class DeliveryUploadSerializer(serializers.Serializer):
    """The upload form: the archive, its format (auto-detected by default), provenance defaults."""

    archive = serializers.FileField()
    format = serializers.ChoiceField(choices=Delivery.Format.choices, default=Delivery.Format.AUTO)
    defaults = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text='JSON object of provenance defaults, e.g. {"guideline_version": "v1.2", "source": "human"}',
    )

    matching = serializers.ChoiceField(
        choices=[("auto", "match to the previous version"), ("none", "no matching: a new generation")],
        default="auto",
        help_text="none: every label gets a new uid and the previous version's labels are recorded as deleted",
    )
    thresholds = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text='JSON object of matching thresholds, e.g. {"iou": 0.6, "oks": 0.5, "distance": 8, '
        '"distance_3d": 0.5, "relabel": 0.9}',
    )

    def validate_thresholds(self, value: str) -> dict:
        if not value:
            return {}
        try:
            parsed = json.loads(value)
        except ValueError:
            raise serializers.ValidationError(
                "thresholds must be a JSON object", code="invalid_matching"
            ) from None
        if not isinstance(parsed, dict):
            raise serializers.ValidationError("thresholds must be a JSON object", code="invalid_matching")
        return parsed

    def matching_options(self) -> dict:
        data = self.validated_data
        options: dict = {"enabled": data.get("matching", "auto") != "none"}
        if data.get("thresholds"):
            options["thresholds"] = data["thresholds"]
        return options

    def validate_defaults(self, value: str) -> dict:
        if not value:
            return {}
        try:
            parsed = json.loads(value)
        except ValueError:
            raise serializers.ValidationError(
                "defaults must be a JSON object", code="invalid_defaults"
            ) from None
        if not isinstance(parsed, dict):
            raise serializers.ValidationError("defaults must be a JSON object", code="invalid_defaults")
        return parsed


def _supplied_dataset(user, slug: str) -> Dataset:
    return get_object_or_404(visibility.supplied_datasets(user), slug=slug)


class DatasetDeliveriesView(APIView):
    """``/datasets/{slug}/deliveries/``: the supplier's deliveries of one dataset, and uploads."""

    # Access is decided by the queryset: a dataset the user does not supply is a 404 for everyone.
    permission_classes = [AllowAny]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=DeliverySerializer(many=True))
    def get(self, request, dataset_slug: str):
        dataset = _supplied_dataset(request.user, dataset_slug)
        paginator = Pagination()
        page = paginator.paginate_queryset(
            visibility.deliveries(request.user).filter(dataset=dataset), request
        )
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(request=DeliveryUploadSerializer, responses={202: DeliverySerializer})
    def post(self, request, dataset_slug: str):
        dataset = _supplied_dataset(request.user, dataset_slug)
        upload = DeliveryUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        archive = upload.validated_data["archive"]
        delivery = deliveries.create_delivery(
            dataset=dataset,
            archive=archive,
            format=upload.validated_data["format"],
            defaults=upload.validated_data.get("defaults") or {},
            uploaded_by=request.user,
            original_name=archive.name,
            matching=upload.matching_options(),
        )
        # Enqueue once the delivery row is committed, never before (a worker could not see it).
        # Without a broker the task runs eagerly right here, so the answer already has the outcome.
        transaction.on_commit(lambda: delivery_tasks.ingest_delivery.delay(delivery.pk))
        delivery.refresh_from_db()
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryListView(APIView):
    """``/deliveries/``: every delivery of the datasets the user supplies."""

    permission_classes = [AllowAny]

    @extend_schema(responses=DeliverySerializer(many=True))
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(visibility.deliveries(request.user), request)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryDetailView(APIView):
    """``/deliveries/{id}/``: status, progress, counts, provenance coverage and the report."""

    permission_classes = [AllowAny]

    @extend_schema(responses=DeliverySerializer)
    def get(self, request, pk: int):
        delivery = get_object_or_404(visibility.deliveries(request.user), pk=pk)
        return Response(DeliverySerializer(delivery).data)
