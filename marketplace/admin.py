from django.contrib import admin

from . import models


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(models.Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "country", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]


@admin.register(models.License)
class LicenseAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "spdx_id",
        "commercial_use",
        "ai_training",
        "derivatives",
        "redistribution",
        "owner",
    ]
    list_filter = ["commercial_use", "ai_training", "derivatives", "redistribution"]
    search_fields = ["name", "spdx_id"]


class OfferInline(admin.TabularInline):
    model = models.Offer
    extra = 0


class VersionInline(admin.TabularInline):
    model = models.DatasetVersion
    extra = 0
    fields = ["number", "status", "published_at", "content_hash"]
    readonly_fields = ["content_hash"]
    show_change_link = True


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "supplier", "domain", "status", "created_at"]
    list_filter = ["status", "domain", "supplier"]
    search_fields = ["title", "slug", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [VersionInline, OfferInline]
    actions = ["delist", "relist"]

    def get_readonly_fields(self, request, obj=None):
        # The slug is inside every ledger event's hash: renaming would break verification.
        if obj is not None and obj.ledger.exists():
            return ["slug"]
        return []

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None and obj.ledger.exists() else self.prepopulated_fields

    @admin.action(description="Delist from the catalogue (moderation)")
    def delist(self, request, queryset):
        queryset.update(status=models.Dataset.Status.DELISTED)

    @admin.action(description="List in the catalogue")
    def relist(self, request, queryset):
        queryset.update(status=models.Dataset.Status.LISTED)


@admin.register(models.DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "published_at", "deprecated_at", "item_count", "label_count"]
    list_filter = ["status"]
    search_fields = ["dataset__slug", "dataset__title"]
    readonly_fields = ["content_hash", "stats", "published_at"]
    filter_horizontal = ["guideline_versions"]

    @admin.display(description="images")
    def item_count(self, obj):
        return (obj.stats or {}).get("items")

    @admin.display(description="labels")
    def label_count(self, obj):
        return (obj.stats or {}).get("labels")


@admin.register(models.Datasheet)
class DatasheetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "updated_at"]
    search_fields = ["version__dataset__slug"]


class CategoryInline(admin.TabularInline):
    model = models.Category
    extra = 0
    fields = ["name", "source_id", "supercategory", "geometry_types", "color"]


class AttributeInline(admin.TabularInline):
    model = models.AttributeSpec
    extra = 0
    fields = ["name", "type", "scope", "allowed_values", "describes_person"]


@admin.register(models.AnnotationSchema)
class AnnotationSchemaAdmin(admin.ModelAdmin):
    list_display = ["__str__"]
    search_fields = ["version__dataset__slug"]
    inlines = [CategoryInline, AttributeInline]


@admin.register(models.Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "source_id", "schema", "supercategory"]
    search_fields = ["name", "schema__version__dataset__slug"]


@admin.register(models.AttributeSpec)
class AttributeSpecAdmin(admin.ModelAdmin):
    list_display = ["name", "schema", "type", "scope", "describes_person"]
    list_filter = ["type", "scope", "describes_person"]
    search_fields = ["name"]


@admin.register(models.Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["key", "version", "split", "width", "height", "synthetic"]
    list_filter = ["split", "synthetic"]
    search_fields = ["key", "sha256"]
    list_select_related = ["version__dataset"]
    raw_id_fields = ["version"]


@admin.register(models.Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["uid", "category", "geometry_type", "is_final", "source", "annotator", "made_at"]
    list_filter = ["geometry_type", "source", "is_final"]
    search_fields = ["uid", "category__name", "annotator__pseudonym"]
    list_select_related = ["category", "annotator"]
    raw_id_fields = ["item", "version", "category", "annotator", "guideline_version", "delivery"]


@admin.register(models.Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = ["dataset", "license", "access_mode", "price", "currency", "active"]
    list_filter = ["access_mode", "active"]
    search_fields = ["dataset__slug", "license__name"]


@admin.register(models.Entitlement)
class EntitlementAdmin(admin.ModelAdmin):
    list_display = ["organization", "dataset", "license", "starts_at", "ends_at", "revoked_at"]
    list_filter = ["license"]
    search_fields = ["organization__name", "dataset__slug"]
    filter_horizontal = ["versions"]


@admin.register(models.Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "format", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "format"]
    search_fields = ["dataset__slug", "original_name"]
    readonly_fields = ["report"]


@admin.register(models.Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "version", "format", "status", "size_bytes", "created_at"]
    list_filter = ["status", "format"]
    search_fields = ["version__dataset__slug", "sha256"]


@admin.register(models.Download)
class DownloadAdmin(admin.ModelAdmin):
    list_display = ["export", "user", "organization", "at", "ip_address"]
    search_fields = ["user__username", "export__version__dataset__slug"]
    date_hierarchy = "at"


# Notifications (marketplace.notifications)
@admin.register(models.Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["subject", "recipient", "kind", "created_at", "read_at", "emailed_at"]
    list_filter = ["kind"]
    search_fields = ["subject", "recipient__username", "dataset__slug"]
    raw_id_fields = ["recipient", "dataset"]
    date_hierarchy = "created_at"


# Licensing (marketplace.licensing): staff read orders, requests and acceptances; decisions and
# payments go through the services (the supplier pages, or the API), so their rules hold here too.
@admin.register(models.Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "invoice_number",
        "organization",
        "dataset",
        "license",
        "price",
        "currency",
        "status",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["invoice_number", "organization__name", "dataset__slug", "idempotency_key"]
    raw_id_fields = [
        "organization",
        "placed_by",
        "offer",
        "dataset",
        "license",
        "entitlement",
        "marked_paid_by",
    ]
    readonly_fields = ["idempotency_key", "created_at"]
    date_hierarchy = "created_at"


@admin.register(models.AccessRequest)
class AccessRequestAdmin(admin.ModelAdmin):
    list_display = ["organization", "dataset", "offer", "status", "created_at", "decided_at"]
    list_filter = ["status"]
    search_fields = ["organization__name", "dataset__slug", "message", "reason"]
    raw_id_fields = ["organization", "requested_by", "offer", "dataset", "decided_by", "entitlement"]


@admin.register(models.LicenseAcceptance)
class LicenseAcceptanceAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "license", "entitlement", "accepted_at"]
    search_fields = ["user__username", "organization__name", "license__name"]
    raw_id_fields = ["user", "organization", "license", "offer", "entitlement"]
    readonly_fields = ["text_sha256", "accepted_at"]
