"""Exports API: ask for a version in a format (202), follow the job, download over a signed link.

Access, in this order (marketplace.visibility): a version or export the user cannot see is a 404;
anonymous callers get 401; a user who can see the version but holds no license that covers it
gets 403. The download view checks the signed token, the user and the license again, records
the download, then streams the file or redirects to a presigned S3 URL.
"""

from __future__ import annotations

from django.http import FileResponse, HttpResponseRedirect, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.errors import DomainError

from .. import visibility
from ..exports import documents as export_documents
from ..exports import downloads as export_downloads
from ..exports import tasks as export_tasks
from ..models import Download, Export
from .pagination import Pagination


class ExportSerializer(serializers.ModelSerializer):
    """An export as the buyer follows it; ``download_url`` once it is ready (signed, expiring)."""

    dataset = serializers.CharField(source="version.dataset.slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    download_url = serializers.SerializerMethodField()
    download_expires_in = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id",
            "dataset",
            "version",
            "format",
            "options",
            "status",
            "progress",
            "size_bytes",
            "sha256",
            "notes",
            "error",
            "created_at",
            "finished_at",
            "download_url",
            "download_expires_in",
        ]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download_url(self, obj):
        request = self.context.get("request")
        if obj.status != Export.Status.READY or request is None:
            return None
        return export_downloads.download_url_for(export=obj, user=request.user, request=request)

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_download_expires_in(self, obj):
        from django.conf import settings

        return settings.DOWNLOAD_URL_TTL if obj.status == Export.Status.READY else None


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=Export.Format.choices)
    options = serializers.DictField(required=False, default=dict)


class DownloadSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None, read_only=True)
    organization = serializers.CharField(source="organization.name", default=None, read_only=True)
    version = serializers.IntegerField(source="export.version.number", read_only=True)
    format = serializers.CharField(source="export.format", read_only=True)
    export = serializers.IntegerField(source="export.pk", read_only=True)
    sha256 = serializers.CharField(source="export.sha256", read_only=True)

    class Meta:
        model = Download
        fields = ["id", "at", "user", "organization", "export", "version", "format", "sha256", "ip_address"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if not (request is not None and request.user.is_staff):
            # A buyer's IP address is personal data the supplier has no need of: staff only.
            data["ip_address"] = None
        return data


def _export_for(user, pk: int) -> Export:
    """The export, if the user can see its version (404 otherwise) and may export it (401/403)."""
    export = Export.objects.select_related("version__dataset__supplier").filter(pk=pk).first()
    if export is None or not visibility.versions(user).filter(pk=export.version_id).exists():
        raise DomainError("No such export.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    include_images = bool((export.options or {}).get("include_images"))
    visibility.require_export_of(user, export.version, include_images=include_images)
    return export


class VersionExportsView(APIView):
    """POST: ask for an export of this version (202; a finished identical one is reused). GET: its exports."""

    permission_classes = [AllowAny]  # access is decided below: 404 for what is hidden, then 401/403

    @extend_schema(request=ExportRequestSerializer, responses={202: ExportSerializer})
    def post(self, request, dataset_slug: str, number: int):
        version = visibility.visible_version(request.user, dataset_slug, number)
        visibility.require_export(request.user, version)
        body = ExportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        export = export_tasks.request_export(
            version=version,
            user=request.user,
            format=body.validated_data["format"],
            options=body.validated_data.get("options") or {},
        )
        export.refresh_from_db()
        data = ExportSerializer(export, context={"request": request}).data
        headers = {"Location": request.build_absolute_uri(f"/api/v1/exports/{export.pk}/")}
        return Response(data, status=status.HTTP_202_ACCEPTED, headers=headers)

    @extend_schema(responses=ExportSerializer(many=True))
    def get(self, request, dataset_slug: str, number: int):
        version = visibility.visible_version(request.user, dataset_slug, number)
        visibility.require_export(request.user, version)
        qs = Export.objects.filter(version=version).select_related("version__dataset").order_by("-created_at")
        qs = visibility.exports_of_version(request.user, version, qs)
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            ExportSerializer(page, many=True, context={"request": request}).data
        )


class ExportDetailView(APIView):
    """An export's status, progress, size, sha256, notes and (when ready) its download link."""

    permission_classes = [AllowAny]

    @extend_schema(responses=ExportSerializer)
    def get(self, request, pk: int):
        export = _export_for(request.user, pk)
        return Response(ExportSerializer(export, context={"request": request}).data)


class ExportDownloadView(APIView):
    """The signed download: checks the link and the user, records the download, sends the file."""

    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[OpenApiParameter("token", OpenApiTypes.STR, required=True)],
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 302: None},
    )
    def get(self, request, pk: int):
        export = _export_for(request.user, pk)
        export_downloads.check_download_token(
            request.query_params.get("token", ""), export=export, user=request.user
        )
        if export.status != Export.Status.READY or not export.file.name:
            raise DomainError(
                "The export is not ready yet.", code="not_ready", status_code=status.HTTP_409_CONFLICT
            )
        export_downloads.record_download(
            export=export, user=request.user, ip_address=request.META.get("REMOTE_ADDR")
        )
        presigned = export_downloads.storage_download_url(export)
        if presigned:
            return HttpResponseRedirect(presigned)
        content_type = (
            "application/ld+json" if export.format == Export.Format.CROISSANT else "application/zip"
        )
        response = FileResponse(
            export.file.open("rb"),
            as_attachment=True,
            filename=export_downloads.download_filename(export),
            content_type=content_type,
        )
        response["X-Content-SHA256"] = export.sha256
        return response


class DatasetDownloadsView(APIView):
    """Who downloaded this dataset's exports, when: for its supplier, auditors and staff."""

    permission_classes = [AllowAny]

    @extend_schema(responses=DownloadSerializer(many=True))
    def get(self, request, dataset_slug: str):
        dataset = visibility.datasets(request.user).filter(slug=dataset_slug).first()
        if dataset is None:
            raise DomainError("No such dataset.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
        if not request.user.is_authenticated:
            raise NotAuthenticated("Log in to see downloads.")
        if not visibility.can_list_downloads(request.user, dataset):
            raise DomainError(
                "Only the dataset's supplier and auditors see its downloads.",
                code="forbidden",
                status_code=403,
            )
        qs = (
            Download.objects.filter(export__version__dataset=dataset)
            .select_related("user", "organization", "export__version")
            .order_by("-at", "-pk")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            DownloadSerializer(page, many=True, context={"request": request}).data
        )


class VersionCroissantView(APIView):
    """The version's Croissant JSON-LD, with its Responsible-AI fields from the datasheet."""

    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "application/ld+json"): OpenApiTypes.OBJECT})
    def get(self, request, dataset_slug: str, number: int):
        version = visibility.visible_version(request.user, dataset_slug, number)
        return JsonResponse(
            export_documents.croissant_document(version),
            content_type="application/ld+json",
            json_dumps_params={"ensure_ascii": False},
        )
