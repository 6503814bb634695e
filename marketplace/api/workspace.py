"""The supplier's write API: datasets, datasheets, schemas, guidelines, offers and the version lifecycle.

Every view resolves the dataset through ``visibility.access_dataset``, which looks only among the
datasets of the caller's supplier organisations: for anyone else -- a buyer, another supplier --
the dataset is a 404, whatever the method, so the API does not tell them it exists.
Services in ``marketplace.workspace`` validate and raise ``DomainError``; the views parse, call
and serialize.
"""

from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.models import GuidelineVersion
from marketplace.errors import DomainError
from marketplace.workspace import diff as workspace_diff
from marketplace.workspace import editing as workspace_editing
from marketplace.workspace import lifecycle as workspace_lifecycle
from marketplace.workspace import schema as workspace_schema

from .. import visibility
from ..models import (
    DATASHEET_SECTIONS,
    Dataset,
    DatasetVersion,
    Datasheet,
    Delivery,
    License,
    Notification,
    Offer,
    Organization,
)
from ..notifications import service as notifications
from .pagination import Pagination
from .parsers import LimitedJSONParser
from .query import parse_bool
from .serializers import LicenseSerializer

# --------------------------------------------------------------------------- serializers


class WorkspaceVersionSerializer(serializers.ModelSerializer):
    """A version as its supplier sees it, with what it still needs before release."""

    items = serializers.SerializerMethodField()
    labels = serializers.SerializerMethodField()
    datasheet_completeness = serializers.SerializerMethodField()
    missing = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "status",
            "release_notes",
            "content_hash",
            "created_at",
            "published_at",
            "deprecated_at",
            "deprecation_reason",
            "items",
            "labels",
            "datasheet_completeness",
            "missing",
        ]

    def get_items(self, obj) -> int:
        return (obj.stats or {}).get("items", 0)

    def get_labels(self, obj) -> int:
        return (obj.stats or {}).get("labels", 0)

    def get_datasheet_completeness(self, obj) -> float | None:
        sheet = Datasheet.objects.filter(version=obj).first()
        return round(sheet.completeness(), 3) if sheet else None

    def get_missing(self, obj) -> list[str]:
        """What a draft needs before it can be published (empty for released versions)."""
        if obj.status != DatasetVersion.Status.DRAFT:
            return []
        return workspace_lifecycle.check_publishable(obj)


class WorkspaceVersionDetailSerializer(WorkspaceVersionSerializer):
    counts = serializers.SerializerMethodField()
    deliveries = serializers.SerializerMethodField()
    guideline_versions = serializers.SerializerMethodField()

    class Meta(WorkspaceVersionSerializer.Meta):
        fields = [*WorkspaceVersionSerializer.Meta.fields, "counts", "deliveries", "guideline_versions"]

    @extend_schema_field(serializers.DictField())
    def get_counts(self, obj):
        return workspace_lifecycle.version_counts(obj)

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_deliveries(self, obj):
        return [
            {
                "id": d.pk,
                "status": d.status,
                "original_name": d.original_name,
                "created_at": d.created_at,
                "url": f"/api/v1/deliveries/{d.pk}/",
            }
            for d in Delivery.objects.filter(version=obj).order_by("-created_at")
        ]

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_guideline_versions(self, obj):
        return [
            {"guideline": g.guideline.title, "tag": g.tag, "sha256": g.sha256}
            for g in obj.guideline_versions.select_related("guideline").order_by("guideline__title", "tag")
        ]


class VersionRowSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.CharField()
    published_at = serializers.DateTimeField(allow_null=True)
    items = serializers.IntegerField()
    labels = serializers.IntegerField()


class WorkspaceDatasetSerializer(serializers.ModelSerializer):
    supplier = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    draft = serializers.SerializerMethodField()
    versions = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "slug",
            "title",
            "summary",
            "description",
            "domain",
            "task_types",
            "tags",
            "status",
            "supplier",
            "created_at",
            "updated_at",
            "draft",
            "versions",
        ]

    @staticmethod
    def _versions(obj):
        return sorted(obj.versions.all(), key=lambda v: -v.number)

    def get_draft(self, obj) -> int | None:
        """The number of the draft the editor writes to, when the newest version is one."""
        versions = self._versions(obj)
        return versions[0].number if versions and versions[0].status == DatasetVersion.Status.DRAFT else None

    @extend_schema_field(VersionRowSerializer(many=True))
    def get_versions(self, obj):
        return [
            {
                "number": v.number,
                "status": v.status,
                "published_at": v.published_at,
                "items": (v.stats or {}).get("items", 0),
                "labels": (v.stats or {}).get("labels", 0),
            }
            for v in self._versions(obj)
        ]


class DatasetWriteSerializer(serializers.Serializer):
    """Shape of a create or edit; the service validates the values."""

    slug = serializers.CharField(required=False, help_text="Lower-case words and hyphens; set once")
    supplier = serializers.CharField(
        required=False, help_text="Your organisation's slug, if you have several"
    )
    title = serializers.CharField(required=False)
    summary = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    domain = serializers.CharField(required=False)
    task_types = serializers.ListField(child=serializers.CharField(), required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)


def _datasheet_fields():
    return {
        name: serializers.CharField(required=False, allow_blank=True, help_text=question)
        for name, question in workspace_editing.DATASHEET_FIELDS.items()
    }


DatasheetWriteSerializer = inline_serializer("DatasheetWrite", fields=_datasheet_fields())


class CategoryWriteSerializer(serializers.Serializer):
    name = serializers.CharField()
    source_id = serializers.IntegerField(required=False, allow_null=True)
    supercategory = serializers.CharField(required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    geometry_types = serializers.ListField(child=serializers.CharField())
    keypoint_names = serializers.ListField(child=serializers.CharField(), required=False)
    skeleton = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        required=False,
        help_text="Pairs of 1-based keypoint numbers, as in COCO",
    )
    keypoint_sigmas = serializers.ListField(child=serializers.FloatField(), required=False)
    flip_idx = serializers.ListField(child=serializers.IntegerField(), required=False)
    color = serializers.CharField(required=False, allow_blank=True)


class AttributeWriteSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["choice", "text", "number", "boolean"], required=False)
    scope = serializers.ChoiceField(choices=["label", "item"], required=False)
    allowed_values = serializers.ListField(child=serializers.CharField(), required=False)
    categories = serializers.ListField(child=serializers.CharField(), required=False)
    describes_person = serializers.BooleanField(required=False)
    target_distribution = serializers.DictField(child=serializers.FloatField(), required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class SchemaWriteSerializer(serializers.Serializer):
    categories = CategoryWriteSerializer(many=True)
    attributes = AttributeWriteSerializer(many=True)


class GuidelineVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    guideline = serializers.CharField(source="guideline.title", read_only=True)
    tag = serializers.CharField(read_only=True)
    sha256 = serializers.CharField(read_only=True)
    effective_date = serializers.DateField(read_only=True)
    change_notes = serializers.CharField(read_only=True)
    has_document = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(read_only=True)

    def get_has_document(self, obj) -> bool:
        return bool(obj.document)


class GuidelineWriteSerializer(serializers.Serializer):
    title = serializers.CharField(help_text="The guideline's name; a new name starts a new guideline")
    tag = serializers.CharField(help_text="e.g. v1.2")
    effective_date = serializers.DateField(required=False)
    text = serializers.CharField(required=False, allow_blank=True)
    document = serializers.FileField(required=False, help_text="The guideline as a PDF")
    change_notes = serializers.CharField(required=False, allow_blank=True)
    attach_to_draft = serializers.BooleanField(required=False, default=True)


class WorkspaceOfferSerializer(serializers.ModelSerializer):
    license = LicenseSerializer(read_only=True)

    class Meta:
        model = Offer
        fields = ["id", "license", "access_mode", "price", "currency", "description", "active", "created_at"]


class OfferWriteSerializer(serializers.Serializer):
    license = serializers.IntegerField(required=False, help_text="Id of a standard license or one of yours")
    access_mode = serializers.ChoiceField(choices=Offer.AccessMode.values, required=False)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, required=False)
    currency = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


class LicenseWriteSerializer(serializers.Serializer):
    supplier = serializers.CharField(required=False)
    name = serializers.CharField()
    text = serializers.CharField(required=False, allow_blank=True)
    url = serializers.URLField(required=False, allow_blank=True)
    commercial_use = serializers.BooleanField(required=False)
    ai_training = serializers.BooleanField(required=False)
    derivatives = serializers.BooleanField(required=False)
    redistribution = serializers.BooleanField(required=False)
    attribution_required = serializers.BooleanField(required=False)
    duration_days = serializers.IntegerField(required=False, allow_null=True)
    seats = serializers.IntegerField(required=False, allow_null=True)


class NotificationSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "kind",
            "dataset",
            "version_number",
            "subject",
            "body",
            "url",
            "created_at",
            "read_at",
        ]


DiffSerializer = inline_serializer(
    "VersionDiff",
    fields={
        "dataset": serializers.CharField(),
        "from": serializers.IntegerField(),
        "to": serializers.IntegerField(),
        "items": serializers.DictField(child=serializers.IntegerField()),
        "labels": serializers.DictField(child=serializers.IntegerField()),
        "candidate_labels": serializers.DictField(child=serializers.IntegerField()),
        "classes": serializers.ListField(child=serializers.DictField()),
        "categories": serializers.DictField(),
        "guideline_versions": serializers.DictField(),
        "examples": serializers.DictField(),
    },
)
NotPublishableSerializer = inline_serializer(
    "NotPublishable",
    fields={
        "code": serializers.CharField(),
        "detail": serializers.CharField(),
        "missing": serializers.ListField(child=serializers.CharField()),
    },
)


# --------------------------------------------------------------------------- helpers


def _body(request) -> dict:
    """The request body as a plain dict (a form's QueryDict gives its last value per key)."""
    data = request.data
    if hasattr(data, "dict"):
        return data.dict()
    return dict(data) if isinstance(data, dict) else {}


def _parse(serializer_class, request, *, partial=False) -> dict:
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _workspace_datasets(user):
    return (
        visibility.supplied_datasets(user)
        .select_related("supplier")
        .prefetch_related(Prefetch("versions", queryset=DatasetVersion.objects.order_by("-number")))
        .order_by("-created_at", "slug")
    )


def _supplier_org(user, slug: str | None) -> Organization | None:
    if not slug:
        return None
    for org in workspace_editing.supplier_orgs(user):
        if org.slug == slug:
            return org
    raise workspace_editing.InvalidInput({"supplier": ["You are not a supplier of that organisation."]})


def _version(request, slug: str, number: int) -> DatasetVersion:
    return visibility.access_version(request.user, slug, number)


class WorkspaceView(APIView):
    permission_classes = [IsAuthenticated]


# --------------------------------------------------------------------------- datasets


class DatasetListView(WorkspaceView):
    """Your organisations' datasets, drafts included; create one."""

    @extend_schema(responses=WorkspaceDatasetSerializer(many=True), operation_id="workspace_datasets_list")
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(_workspace_datasets(request.user), request, view=self)
        return paginator.get_paginated_response(WorkspaceDatasetSerializer(page, many=True).data)

    @extend_schema(request=DatasetWriteSerializer, responses={201: WorkspaceDatasetSerializer})
    def post(self, request):
        data = _parse(DatasetWriteSerializer, request)
        organization = _supplier_org(request.user, data.pop("supplier", None))
        dataset = workspace_editing.create_dataset(user=request.user, organization=organization, **data)
        dataset = _workspace_datasets(request.user).get(pk=dataset.pk)
        return Response(WorkspaceDatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(WorkspaceView):
    """One of your datasets: read and edit what the catalogue shows."""

    @extend_schema(responses=WorkspaceDatasetSerializer, operation_id="workspace_datasets_retrieve")
    def get(self, request, slug):
        return Response(
            WorkspaceDatasetSerializer(get_object_or_404(_workspace_datasets(request.user), slug=slug)).data
        )

    @extend_schema(request=DatasetWriteSerializer, responses=WorkspaceDatasetSerializer)
    def patch(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        data = _parse(DatasetWriteSerializer, request, partial=True)
        data.pop("supplier", None)
        workspace_editing.update_dataset(dataset=dataset, **data)
        return Response(WorkspaceDatasetSerializer(_workspace_datasets(request.user).get(pk=dataset.pk)).data)


# --------------------------------------------------------------------------- versions


class VersionListView(WorkspaceView):
    """Every version of your dataset, drafts included; POST starts the next draft."""

    @extend_schema(responses=WorkspaceVersionSerializer(many=True), operation_id="workspace_versions_list")
    def get(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        versions = dataset.versions.order_by("-number")
        return Response(WorkspaceVersionSerializer(versions, many=True).data)

    @extend_schema(
        request=None, responses={201: WorkspaceVersionDetailSerializer, 200: WorkspaceVersionDetailSerializer}
    )
    def post(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        before = workspace_editing.current_draft(dataset)
        version = workspace_lifecycle.start_draft(dataset=dataset)
        code = (
            status.HTTP_200_OK if before is not None and before.pk == version.pk else status.HTTP_201_CREATED
        )
        return Response(WorkspaceVersionDetailSerializer(version).data, status=code)


class VersionDetailView(WorkspaceView):
    """A version with its counts, deliveries, guideline versions and what it still needs; DELETE a draft."""

    @extend_schema(responses=WorkspaceVersionDetailSerializer, operation_id="workspace_versions_retrieve")
    def get(self, request, slug, number):
        return Response(WorkspaceVersionDetailSerializer(_version(request, slug, number)).data)

    @extend_schema(responses={204: None}, operation_id="workspace_versions_destroy")
    def delete(self, request, slug, number):
        """Delete an abandoned draft (409 ``not_draft`` for a released version)."""
        workspace_lifecycle.delete_draft(version=_version(request, slug, number))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasheetView(WorkspaceView):
    """A version's datasheet, section by section; PATCH sets some answers, PUT all of them."""

    def _payload(self, version):
        sheet = Datasheet.objects.filter(version=version).first() or Datasheet(version=version)
        return {
            "version": version.number,
            "editable": version.status == DatasetVersion.Status.DRAFT,
            "completeness": round(sheet.completeness(), 3),
            "required": [
                {"section": DATASHEET_SECTIONS[s][0], "field": f}
                for s, f in workspace_editing.REQUIRED_DATASHEET_FIELDS.items()
            ],
            "missing": workspace_editing.datasheet_gaps(version),
            "sections": sheet.sections(),
            "answers": {f: getattr(sheet, f) for f in workspace_editing.DATASHEET_FIELDS},
        }

    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="workspace_datasheet_retrieve")
    def get(self, request, slug, number):
        return Response(self._payload(_version(request, slug, number)))

    @extend_schema(request=DatasheetWriteSerializer, responses=OpenApiTypes.OBJECT)
    def patch(self, request, slug, number):
        version = _version(request, slug, number)
        workspace_editing.update_datasheet(version=version, answers=_body(request))
        return Response(self._payload(version))

    @extend_schema(request=DatasheetWriteSerializer, responses=OpenApiTypes.OBJECT)
    def put(self, request, slug, number):
        version = _version(request, slug, number)
        answers = dict.fromkeys(workspace_editing.DATASHEET_FIELDS, "") | _body(request)
        workspace_editing.update_datasheet(version=version, answers=answers)
        return Response(self._payload(version))


class SchemaView(WorkspaceView):
    """A version's annotation schema; PUT replaces categories and attributes (matched by name)."""

    @extend_schema(responses=SchemaWriteSerializer, operation_id="workspace_schema_retrieve")
    def get(self, request, slug, number):
        return Response(workspace_schema.schema_as_dict(_version(request, slug, number)))

    @extend_schema(request=SchemaWriteSerializer, responses=SchemaWriteSerializer)
    def put(self, request, slug, number):
        version = _version(request, slug, number)
        body = _body(request)
        workspace_schema.set_schema(
            version=version, categories=body.get("categories", []), attributes=body.get("attributes", [])
        )
        return Response(workspace_schema.schema_as_dict(version))


class PublishView(WorkspaceView):
    """Publish a draft with release notes; refused with the list of what is missing."""

    @extend_schema(
        request=inline_serializer("PublishRequest", fields={"release_notes": serializers.CharField()}),
        responses={200: WorkspaceVersionDetailSerializer, 400: NotPublishableSerializer},
    )
    def post(self, request, slug, number):
        version = _version(request, slug, number)
        notes = _body(request).get("release_notes", "")
        version = workspace_lifecycle.publish_draft(
            version=version, release_notes=str(notes or ""), user=request.user
        )
        return Response(WorkspaceVersionDetailSerializer(version).data)


class DeprecateView(WorkspaceView):
    """Retire a published version with a reason buyers see."""

    @extend_schema(
        request=inline_serializer("DeprecateRequest", fields={"reason": serializers.CharField()}),
        responses=WorkspaceVersionDetailSerializer,
    )
    def post(self, request, slug, number):
        version = _version(request, slug, number)
        reason = _body(request).get("reason", "")
        version = workspace_lifecycle.deprecate_version(
            version=version, reason=str(reason or ""), user=request.user
        )
        return Response(WorkspaceVersionDetailSerializer(version).data)


# --------------------------------------------------------------------------- diff

DIFF_PARAMETERS = [
    OpenApiParameter(
        "from", int, description="The older version number (default: the latest release before `to`)"
    ),
    OpenApiParameter(
        "to", int, description="The newer version number (default: the newest version you may see)"
    ),
]


def _diff_response(request, versions) -> Response:
    """Resolve ?from=&to= among ``versions`` (already scoped to the caller) and diff them."""
    by_number = {v.number: v for v in versions}
    if not by_number:
        raise DomainError("This dataset has no version to compare.", code="no_versions", status_code=404)

    def number(name):
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return None
        if not raw.isdigit() or int(raw) not in by_number:
            raise DomainError(
                f"There is no version {raw} to compare.", code="no_such_version", status_code=404
            )
        return int(raw)

    new_n = number("to") or max(by_number)
    old_n = number("from")
    if old_n is None:
        earlier = [n for n, v in by_number.items() if n < new_n and v.status != DatasetVersion.Status.DRAFT]
        if not earlier:
            raise DomainError(
                f"Version {new_n} has no earlier release to compare with; pass ?from=.",
                code="no_base_version",
            )
        old_n = max(earlier)
    if old_n == new_n:
        raise DomainError("Compare two different versions.", code="same_version")
    return Response(workspace_diff.cached_diff(old=by_number[old_n], new=by_number[new_n]))


class WorkspaceDiffView(WorkspaceView):
    """The diff between two versions of your dataset, drafts included."""

    @extend_schema(
        parameters=DIFF_PARAMETERS, responses=DiffSerializer, operation_id="workspace_diff_retrieve"
    )
    def get(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        return _diff_response(request, dataset.versions.select_related("dataset"))


class DatasetDiffView(APIView):
    """The changelog between two versions that you may see (released ones, or your own drafts)."""

    @extend_schema(
        parameters=DIFF_PARAMETERS, responses=DiffSerializer, operation_id="datasets_diff_retrieve"
    )
    def get(self, request, slug):
        dataset = get_object_or_404(visibility.datasets(request.user), slug=slug)
        return _diff_response(
            request,
            visibility.versions(request.user).filter(dataset=dataset).select_related("dataset"),
        )


# --------------------------------------------------------------------------- guidelines


class GuidelineListView(WorkspaceView):
    """Your dataset's guideline versions; POST adds one from text (JSON) or a PDF (multipart)."""

    parser_classes = [LimitedJSONParser, MultiPartParser, FormParser]

    def _queryset(self, dataset):
        return (
            GuidelineVersion.objects.filter(guideline__dataset=dataset)
            .select_related("guideline")
            .order_by("guideline__title", "effective_date", "tag")
        )

    @extend_schema(responses=GuidelineVersionSerializer(many=True), operation_id="workspace_guidelines_list")
    def get(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        return Response(GuidelineVersionSerializer(self._queryset(dataset), many=True).data)

    @extend_schema(request=GuidelineWriteSerializer, responses={201: GuidelineVersionSerializer})
    def post(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        data = _parse(GuidelineWriteSerializer, request)
        gv = workspace_editing.add_guideline_version(dataset=dataset, **data)
        return Response(GuidelineVersionSerializer(gv).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- offers and licenses


def _license_for(dataset, license_id) -> License:
    try:
        return workspace_editing.licenses_for(dataset.supplier).get(pk=license_id)
    except License.DoesNotExist:
        raise workspace_editing.InvalidInput(
            {"license": ["Choose a standard license or one of your own."]}
        ) from None


class OfferListView(WorkspaceView):
    """Your dataset's offers, inactive ones included; POST adds one."""

    @extend_schema(responses=WorkspaceOfferSerializer(many=True), operation_id="workspace_offers_list")
    def get(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        return Response(
            WorkspaceOfferSerializer(
                dataset.offers.select_related("license").order_by("-active", "price"), many=True
            ).data
        )

    @extend_schema(request=OfferWriteSerializer, responses={201: WorkspaceOfferSerializer})
    def post(self, request, slug):
        dataset = visibility.access_dataset(request.user, slug)
        data = _parse(OfferWriteSerializer, request)
        if "license" not in data or "access_mode" not in data:
            raise workspace_editing.InvalidInput(
                {k: ["This field is required."] for k in ("license", "access_mode") if k not in data}
            )
        data["license"] = _license_for(dataset, data["license"])
        offer = workspace_editing.set_offer(dataset=dataset, **data)
        return Response(WorkspaceOfferSerializer(offer).data, status=status.HTTP_201_CREATED)


class OfferDetailView(WorkspaceView):
    """One offer; PATCH changes its price, terms or whether it is active. Offers are never deleted."""

    def _offer(self, request, slug, pk) -> Offer:
        dataset = visibility.access_dataset(request.user, slug)
        return get_object_or_404(dataset.offers.select_related("license", "dataset__supplier"), pk=pk)

    @extend_schema(responses=WorkspaceOfferSerializer, operation_id="workspace_offers_retrieve")
    def get(self, request, slug, pk):
        return Response(WorkspaceOfferSerializer(self._offer(request, slug, pk)).data)

    @extend_schema(request=OfferWriteSerializer, responses=WorkspaceOfferSerializer)
    def patch(self, request, slug, pk):
        offer = self._offer(request, slug, pk)
        data = _parse(OfferWriteSerializer, request, partial=True)
        current = {
            "license": offer.license,
            "access_mode": offer.access_mode,
            "price": offer.price,
            "currency": offer.currency,
            "description": offer.description,
            "active": offer.active,
        }
        if "license" in data:
            data["license"] = _license_for(offer.dataset, data["license"])
        offer = workspace_editing.set_offer(dataset=offer.dataset, offer=offer, **(current | data))
        return Response(WorkspaceOfferSerializer(offer).data)


class LicenseListView(WorkspaceView):
    """Licenses you may offer: the standard ones and your organisations' own; POST adds custom terms."""

    @extend_schema(responses=LicenseSerializer(many=True), operation_id="workspace_licenses_list")
    def get(self, request):
        orgs = workspace_editing.supplier_orgs(request.user)
        if not orgs:
            return Response([])
        qs = License.objects.none()
        for org in orgs:
            qs = qs | workspace_editing.licenses_for(org)
        return Response(LicenseSerializer(qs.distinct().order_by("name"), many=True).data)

    @extend_schema(request=LicenseWriteSerializer, responses={201: LicenseSerializer})
    def post(self, request):
        data = _parse(LicenseWriteSerializer, request)
        orgs = workspace_editing.supplier_orgs(request.user)
        if not orgs:
            raise DomainError("Only suppliers write license terms.", code="not_a_supplier", status_code=403)
        organization = _supplier_org(request.user, data.pop("supplier", None))
        if organization is None:
            if len(orgs) > 1:
                raise workspace_editing.InvalidInput(
                    {"supplier": ["Say which of your organisations owns the terms."]}
                )
            organization = orgs[0]
        license = workspace_editing.create_license(organization=organization, **data)
        return Response(LicenseSerializer(license).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- notifications


class NotificationListView(WorkspaceView):
    """Your notifications, newest first: new versions, deprecations, decisions on your requests."""

    @extend_schema(
        parameters=[OpenApiParameter("unread", bool, description="Only the unread ones")],
        responses=NotificationSerializer(many=True),
    )
    def get(self, request):
        qs = Notification.objects.for_user(request.user).select_related("dataset")
        if parse_bool(request.query_params, "unread"):
            qs = qs.unread()
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(NotificationSerializer(page, many=True).data)


class NotificationReadView(WorkspaceView):
    """Mark notifications read: the ids given, or all of them."""

    @extend_schema(
        request=inline_serializer(
            "NotificationRead",
            fields={"ids": serializers.ListField(child=serializers.IntegerField(), required=False)},
        ),
        responses=inline_serializer("NotificationReadResult", fields={"marked": serializers.IntegerField()}),
    )
    def post(self, request):
        ids = request.data.get("ids") if isinstance(request.data, dict) else None  # JSON only
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
            raise workspace_editing.InvalidInput({"ids": ["A list of notification ids."]})
        return Response({"marked": notifications.mark_read(user=request.user, ids=ids)})
