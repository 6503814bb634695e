from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse

from . import models
from .catalogue import withdrawal as catalogue_withdrawal
from .errors import DomainError


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

    def get_readonly_fields(self, request, obj=None):
        # Terms someone accepted are fixed (the entitlement_granted event holds their hash).
        return list(models.License.TERMS) if obj is not None and obj.is_accepted() else []


class OfferInline(admin.TabularInline):
    model = models.Offer
    extra = 0


class ReleasedContentAdmin(admin.ModelAdmin):
    """Rows of a released version are shown, never edited or deleted here (issue #16): the models and
    the database refuse such changes, so the admin offers none instead of answering with a 500."""

    def _frozen(self, obj) -> bool:
        return obj is not None and obj.owning_version().is_frozen

    def has_change_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        # "Delete selected" over rows of a released version: refused by the QuerySet; a 403, not a 500.
        try:
            super().delete_queryset(request, queryset)
        except ValidationError as error:
            raise PermissionDenied(" ".join(error.messages)) from None


class VersionInline(admin.TabularInline):
    """Versions, read-only: publishing goes through the one publish service (the workspace)."""

    model = models.DatasetVersion
    extra = 0
    fields = ["number", "status", "published_at", "content_hash"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "supplier", "domain", "status", "created_at"]
    list_filter = ["status", "domain", "supplier"]
    search_fields = ["title", "slug", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [VersionInline, OfferInline]
    actions = ["delist", "relist", "withdraw"]

    def get_readonly_fields(self, request, obj=None):
        # The slug is inside every ledger event's hash: renaming would break verification.
        if obj is not None and obj.ledger.exists():
            return ["slug"]
        return []

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None and obj.ledger.exists() else self.prepopulated_fields

    def has_delete_permission(self, request, obj=None):
        # A dataset with released versions is evidence: it can be delisted, not deleted.
        if obj is not None and obj.versions.released().exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        try:
            super().delete_queryset(request, queryset)
        except ValidationError as error:
            raise PermissionDenied(" ".join(error.messages)) from None

    @admin.action(description="Delist from the catalogue (moderation)")
    def delist(self, request, queryset):
        queryset.update(status=models.Dataset.Status.DELISTED)

    @admin.action(description="List in the catalogue")
    def relist(self, request, queryset):
        # A withdrawn dataset stays out of the catalogue: its withdrawal is in the ledger.
        queryset.filter(withdrawal__isnull=True).update(status=models.Dataset.Status.LISTED)

    @admin.action(description="Withdraw (with a reason buyers read; recorded in the ledger)")
    def withdraw(self, request, queryset):
        # Deleting a dataset with released versions is refused: staff withdraw it, one at a time,
        # on the withdrawal form (which asks for the reason and goes through the one service).
        if queryset.count() != 1:
            self.message_user(request, "Withdraw one dataset at a time.", level="error")
            return None
        url = reverse("admin:marketplace_datasetwithdrawal_add")
        return HttpResponseRedirect(f"{url}?dataset={queryset.get().pk}")


class DatasetWithdrawalForm(forms.ModelForm):
    class Meta:
        model = models.DatasetWithdrawal
        fields = ["dataset", "reason"]


@admin.register(models.DatasetWithdrawal)
class DatasetWithdrawalAdmin(admin.ModelAdmin):
    """Withdrawals are written once, through ``marketplace.catalogue.withdrawal``; never edited or deleted."""

    form = DatasetWithdrawalForm
    list_display = ["dataset", "withdrawn_at", "withdrawn_by"]
    search_fields = ["dataset__slug", "dataset__title", "reason"]
    readonly_fields = ["withdrawn_at", "withdrawn_by"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        try:
            saved = catalogue_withdrawal.withdraw_dataset(
                dataset=obj.dataset, reason=obj.reason, user=request.user
            )
        except DomainError as error:
            raise PermissionDenied(error.detail) from None
        obj.pk, obj.withdrawn_at, obj.withdrawn_by = saved.pk, saved.withdrawn_at, saved.withdrawn_by
        obj._state.adding = False


@admin.register(models.DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "published_at", "deprecated_at", "item_count", "label_count"]
    list_filter = ["status"]
    search_fields = ["dataset__slug", "dataset__title"]
    # status is read-only: publishing and deprecating go through their services (the workspace).
    readonly_fields = ["status", "content_hash", "stats", "published_at"]
    filter_horizontal = ["guideline_versions"]

    def has_change_permission(self, request, obj=None):
        return not (obj is not None and obj.is_frozen) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not (obj is not None and obj.is_frozen) and super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        try:
            super().delete_queryset(request, queryset)
        except ValidationError as error:
            raise PermissionDenied(" ".join(error.messages)) from None

    @admin.display(description="images")
    def item_count(self, obj):
        return (obj.stats or {}).get("items")

    @admin.display(description="labels")
    def label_count(self, obj):
        return (obj.stats or {}).get("labels")


@admin.register(models.Datasheet)
class DatasheetAdmin(ReleasedContentAdmin):
    list_display = ["__str__", "updated_at"]
    search_fields = ["version__dataset__slug"]


class ReleasedContentInline(admin.TabularInline):
    """Rows of a released schema, read-only (the parent is the schema)."""

    extra = 0

    def _frozen(self, obj) -> bool:
        return obj is not None and obj.owning_version().is_frozen

    def has_add_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_delete_permission(request, obj)


class CategoryInline(ReleasedContentInline):
    model = models.Category
    fields = ["name", "source_id", "supercategory", "geometry_types", "color"]


class AttributeInline(ReleasedContentInline):
    model = models.AttributeSpec
    fields = ["name", "type", "scope", "allowed_values", "describes_person"]


@admin.register(models.AnnotationSchema)
class AnnotationSchemaAdmin(ReleasedContentAdmin):
    list_display = ["__str__"]
    search_fields = ["version__dataset__slug"]
    inlines = [CategoryInline, AttributeInline]


@admin.register(models.Category)
class CategoryAdmin(ReleasedContentAdmin):
    list_display = ["name", "source_id", "schema", "supercategory"]
    search_fields = ["name", "schema__version__dataset__slug"]


@admin.register(models.AttributeSpec)
class AttributeSpecAdmin(ReleasedContentAdmin):
    list_display = ["name", "schema", "type", "scope", "describes_person"]
    list_filter = ["type", "scope", "describes_person"]
    search_fields = ["name"]


@admin.register(models.Item)
class ItemAdmin(ReleasedContentAdmin):
    list_display = ["key", "version", "split", "width", "height", "synthetic"]
    list_filter = ["split", "synthetic"]
    search_fields = ["key", "sha256"]
    list_select_related = ["version__dataset"]
    raw_id_fields = ["version"]


@admin.register(models.Label)
class LabelAdmin(ReleasedContentAdmin):
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
