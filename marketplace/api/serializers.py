"""Read serializers of the catalogue."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import (
    AttributeSpec,
    Category,
    Dataset,
    DatasetVersion,
    Datasheet,
    License,
    Offer,
    Organization,
)


class OrganizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["slug", "name", "website", "country"]


class LicenseSerializer(serializers.ModelSerializer):
    class Meta:
        model = License
        fields = [
            "id",
            "spdx_id",
            "name",
            "url",
            "commercial_use",
            "ai_training",
            "derivatives",
            "redistribution",
            "attribution_required",
            "duration_days",
            "seats",
        ]


class OfferSerializer(serializers.ModelSerializer):
    license = LicenseSerializer()

    class Meta:
        model = Offer
        fields = ["id", "access_mode", "price", "currency", "description", "license"]


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = [
            "id",
            "name",
            "source_id",
            "supercategory",
            "geometry_types",
            "keypoint_names",
            "skeleton",
            "flip_idx",
            "color",
        ]


class AttributeSpecSerializer(serializers.ModelSerializer):
    class Meta:
        model = AttributeSpec
        fields = ["name", "type", "scope", "allowed_values", "categories", "describes_person", "description"]


class SchemaSerializer(serializers.Serializer):
    categories = CategorySerializer(many=True)
    attributes = AttributeSpecSerializer(many=True)


class DatasheetSerializer(serializers.ModelSerializer):
    sections = serializers.SerializerMethodField()
    completeness = serializers.FloatField()

    class Meta:
        model = Datasheet
        fields = ["sections", "completeness", "updated_at"]

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_sections(self, obj):
        return obj.sections()


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "status",
            "published_at",
            "deprecated_at",
            "deprecation_reason",
            "release_notes",
            "content_hash",
            "stats",
        ]


class VersionDetailSerializer(VersionSummarySerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    datasheet = serializers.SerializerMethodField()
    schema = serializers.SerializerMethodField()
    guideline_versions = serializers.SerializerMethodField()

    class Meta(VersionSummarySerializer.Meta):
        fields = [
            "dataset",
            *VersionSummarySerializer.Meta.fields,
            "datasheet",
            "schema",
            "guideline_versions",
        ]

    @extend_schema_field(DatasheetSerializer(allow_null=True))
    def get_datasheet(self, obj):
        sheet = getattr(obj, "datasheet", None)
        return DatasheetSerializer(sheet).data if sheet else None

    @extend_schema_field(SchemaSerializer(allow_null=True))
    def get_schema(self, obj):
        schema = getattr(obj, "schema", None)
        if schema is None:
            return None
        return {
            "categories": CategorySerializer(schema.categories.all(), many=True).data,
            "attributes": AttributeSpecSerializer(schema.attributes.all(), many=True).data,
        }

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_guideline_versions(self, obj):
        return [
            {
                "guideline": g.guideline.title,
                "tag": g.tag,
                "sha256": g.sha256,
                "effective_date": g.effective_date,
            }
            for g in obj.guideline_versions.select_related("guideline")
        ]


class DatasetListSerializer(serializers.ModelSerializer):
    supplier = OrganizationSerializer()
    latest_version = serializers.SerializerMethodField()
    annotation_kinds = serializers.SerializerMethodField()
    offers = OfferSerializer(many=True, source="active_offers")
    images = serializers.SerializerMethodField()
    price_from = serializers.SerializerMethodField()
    url = serializers.HyperlinkedIdentityField(view_name="api-dataset-detail", lookup_field="slug")

    class Meta:
        model = Dataset
        fields = [
            "slug",
            "url",
            "title",
            "summary",
            "supplier",
            "domain",
            "task_types",
            "tags",
            "status",
            "annotation_kinds",
            "latest_version",
            "images",
            "offers",
            "price_from",
            "created_at",
        ]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_images(self, obj):
        """Images in the newest released version (the catalogue's "size")."""
        latest = self._latest(obj)
        return (latest.stats or {}).get("items") if latest else None

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True))
    def get_price_from(self, obj):
        """The cheapest active offer's price (0 for an open or free offer); null without offers."""
        prices = [o.price for o in getattr(obj, "active_offers", None) or obj.offers.filter(active=True)]
        return str(min(prices)) if prices else None

    def _latest(self, obj):
        versions = getattr(obj, "released_versions", None)
        if versions is None:
            return obj.latest_published()
        return versions[0] if versions else None

    @extend_schema_field(VersionSummarySerializer(allow_null=True))
    def get_latest_version(self, obj):
        latest = self._latest(obj)
        return VersionSummarySerializer(latest).data if latest else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_annotation_kinds(self, obj):
        latest = self._latest(obj)
        return sorted((latest.stats or {}).get("annotation_kinds", {})) if latest else []


class DatasetWithdrawalSerializer(serializers.Serializer):
    reason = serializers.CharField()
    withdrawn_at = serializers.DateTimeField()


class DatasetDetailSerializer(DatasetListSerializer):
    versions = serializers.SerializerMethodField()
    current = serializers.SerializerMethodField()
    withdrawal = serializers.SerializerMethodField()

    class Meta(DatasetListSerializer.Meta):
        fields = [*DatasetListSerializer.Meta.fields, "description", "versions", "current", "withdrawal"]

    @extend_schema_field(DatasetWithdrawalSerializer(allow_null=True))
    def get_withdrawal(self, obj):
        """Withdrawn by the registry's staff (with the reason), or null."""
        withdrawal = getattr(obj, "withdrawal", None)
        return DatasetWithdrawalSerializer(withdrawal).data if withdrawal else None

    @extend_schema_field(VersionSummarySerializer(many=True))
    def get_versions(self, obj):
        return VersionSummarySerializer(obj.visible_versions, many=True).data

    @extend_schema_field(VersionDetailSerializer(allow_null=True))
    def get_current(self, obj):
        """The newest released version (or the supplier's newest draft) in full: datasheet and schema."""
        current = obj.current_version
        return VersionDetailSerializer(current).data if current else None
