"""Samples of a version with their labels as JSON, preview images, and (for the entitled) originals.

The version is looked up among those the user may see, and the item inside that version, so another
tenant's draft is a 404 here as everywhere. Anonymous callers are throttled (scope "previews_anon").
"""

from __future__ import annotations

import mimetypes

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from marketplace.errors import DomainError, ErrorCode

from .. import visibility
from ..catalogue import previews
from ..catalogue.selectors import samples_payload
from ..models import DatasetVersion, Item


class PreviewAnonThrottle(AnonRateThrottle):
    """Anonymous visitors may look, not scrape: rate in settings DEFAULT_THROTTLE_RATES["previews_anon"]."""

    scope = "previews_anon"


class LabelSampleSerializer(serializers.Serializer):
    uid = serializers.UUIDField()
    category = serializers.CharField()
    category_id = serializers.IntegerField()
    color = serializers.CharField()
    geometry_type = serializers.CharField()
    geometry = serializers.DictField()
    attributes = serializers.DictField()
    source = serializers.CharField()
    model = serializers.CharField(allow_null=True)
    annotator = serializers.CharField(allow_null=True)
    guideline_version = serializers.CharField(allow_null=True)
    made_at = serializers.DateTimeField(allow_null=True)
    drawn = serializers.BooleanField()


class SampleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    split = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    attributes = serializers.DictField()
    preview_url = serializers.CharField()
    original_url = serializers.CharField(allow_null=True)
    labels = LabelSampleSerializer(many=True)


class LegendSerializer(serializers.Serializer):
    category = serializers.CharField()
    color = serializers.CharField()
    kinds = serializers.ListField(child=serializers.CharField())
    count = serializers.IntegerField()
    drawn = serializers.BooleanField()


class SamplesSerializer(serializers.Serializer):
    dataset = serializers.CharField()
    version = serializers.IntegerField()
    entitled = serializers.BooleanField()
    count = serializers.IntegerField(help_text="Items matching category/split in all pages")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    legend = LegendSerializer(many=True)
    results = SampleSerializer(many=True)


class SamplesView(APIView):
    """Items of a version to preview, stratified across classes (or the supplier's pinned items)."""

    permission_classes = [AllowAny]
    throttle_classes = [PreviewAnonThrottle]

    @extend_schema(
        parameters=[
            OpenApiParameter("category", str, description="Only items with a label of this class"),
            OpenApiParameter("split", str, enum=["train", "val", "test"]),
            OpenApiParameter(
                "page_size",
                int,
                description=f"1 to {previews.SAMPLE_LIMIT_MAX} (default {previews.SAMPLE_LIMIT_DEFAULT})",
            ),
            OpenApiParameter("page", int, description="From 1; page 1 is the stratified selection"),
            OpenApiParameter("limit", int, description="The page size's older name", deprecated=True),
        ],
        responses=SamplesSerializer,
    )
    def get(self, request, dataset_slug: str, number: int):
        version = visibility.visible_version(request.user, dataset_slug, number, detail="Not found.")
        params = request.query_params
        size = _whole(
            params.get("page_size") or params.get("limit"), previews.SAMPLE_LIMIT_DEFAULT, "page_size"
        )
        size = max(1, min(size, previews.SAMPLE_LIMIT_MAX))
        page = _whole(params.get("page"), 1, "page")
        payload = samples_payload(
            user=request.user,
            version=version,
            category=params.get("category") or None,
            split=params.get("split") or None,
            limit=size,
            page=page,
        )
        pages = max(1, -(-payload["count"] // size))
        if page < 1 or page > pages:
            raise DomainError("Invalid page.", code=ErrorCode.NOT_FOUND, status_code=404)
        url = request.build_absolute_uri()
        payload["next"] = replace_query_param(url, "page", page + 1) if page < pages else None
        if page <= 1:
            payload["previous"] = None
        elif page == 2:
            payload["previous"] = remove_query_param(url, "page")
        else:
            payload["previous"] = replace_query_param(url, "page", page - 1)
        # Paging keys first, as in every other list of the API.
        return Response({key: payload[key] for key in SamplesSerializer().fields})


def _whole(raw, default: int, name: str) -> int:
    """A whole-number query parameter, or 400 ``invalid_limit``."""
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise DomainError(f"{name} must be a whole number.", code="invalid_limit") from None


class PreviewView(APIView):
    """A preview JPEG (at most 512 px) with the labels drawn; watermarked unless you may use the data."""

    permission_classes = [AllowAny]
    throttle_classes = [PreviewAnonThrottle]

    @extend_schema(responses={(200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request, dataset_slug: str, number: int, item_id: int):
        version = visibility.visible_version(request.user, dataset_slug, number, detail="Not found.")
        item = get_object_or_404(Item.objects.filter(version=version), pk=item_id)
        item.version = version
        entitled = visibility.may_use(user=request.user, version=version)
        response = HttpResponse(
            previews.preview_bytes(item=item, entitled=entitled), content_type="image/jpeg"
        )
        # A watermarked preview of a released version is the same for everyone; anything else is private.
        public = not entitled and version.status != DatasetVersion.Status.DRAFT
        response["Cache-Control"] = "public, max-age=86400" if public else "private, max-age=3600"
        response["Vary"] = "Cookie, Authorization"
        return response


class OriginalView(APIView):
    """The original image file, for users who may use the version (entitled, its supplier, staff)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request, dataset_slug: str, number: int, item_id: int):
        version = visibility.visible_version(request.user, dataset_slug, number, detail="Not found.")
        item = get_object_or_404(Item.objects.filter(version=version), pk=item_id)
        if not visibility.may_use(user=request.user, version=version):
            raise DomainError(
                "Originals are for licensed users: license the dataset and accept its terms.",
                code="not_entitled",
                status_code=403,
            )
        content_type = mimetypes.guess_type(item.key)[0] or "application/octet-stream"
        response = FileResponse(default_storage.open(item.storage_key, "rb"), content_type=content_type)
        response["Cache-Control"] = "private, no-store"
        response["Content-Disposition"] = f'inline; filename="{item.key.rsplit("/", 1)[-1]}"'
        return response
