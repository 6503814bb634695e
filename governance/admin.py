from django.contrib import admin

from . import models


class GuidelineVersionInline(admin.TabularInline):
    """New versions can be added; existing ones are immutable (new text is a new tag)."""

    model = models.GuidelineVersion
    extra = 0
    fields = ["tag", "effective_date", "text", "sha256", "change_notes"]
    readonly_fields = ["sha256"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Guideline)
class GuidelineAdmin(admin.ModelAdmin):
    list_display = ["title", "dataset", "created_at"]
    search_fields = ["title", "dataset__slug"]
    inlines = [GuidelineVersionInline]


@admin.register(models.GuidelineVersion)
class GuidelineVersionAdmin(admin.ModelAdmin):
    list_display = ["guideline", "tag", "effective_date", "sha256"]
    search_fields = ["guideline__title", "tag", "sha256"]
    readonly_fields = ["sha256"]

    def has_change_permission(self, request, obj=None):
        # Immutable once created (the sha256 pins the text annotators read): view, never edit.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not (obj is not None and obj.is_referenced()) and super().has_delete_permission(request, obj)


@admin.register(models.Annotator)
class AnnotatorAdmin(admin.ModelAdmin):
    list_display = ["pseudonym", "organization", "role", "active"]
    list_filter = ["role", "active", "organization"]
    search_fields = ["pseudonym"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is append-only: the admin shows it and never edits it."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.LabelEvent)
class LabelEventAdmin(ReadOnlyAdmin):
    list_display = ["dataset", "seq", "action", "label_uid", "actor", "occurred_at", "hash"]
    list_filter = ["action", "source"]
    search_fields = ["label_uid", "actor", "hash"]


@admin.register(models.TreeHead)
class TreeHeadAdmin(ReadOnlyAdmin):
    list_display = ["dataset", "version", "tree_size", "root_hash", "timestamp"]
    search_fields = ["root_hash", "dataset__slug"]


# --------------------------------------------------------------------------- quality (governance.quality.reports, governance.quality.consensus)


@admin.register(models.QualityReport)
class QualityReportAdmin(admin.ModelAdmin):
    """Derived data: recomputed by governance.quality.reports, never edited by hand."""

    list_display = ["version", "kind", "computed_at"]
    list_filter = ["kind"]
    search_fields = ["version__dataset__slug"]
    readonly_fields = ["version", "kind", "result", "parameters", "computed_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(models.ReviewTask)
class ReviewTaskAdmin(admin.ModelAdmin):
    """Decisions are made through governance.quality.consensus (they write ledger events): read-only here."""

    list_display = ["version", "item", "score", "status", "reviewer", "decided_at"]
    list_filter = ["status"]
    search_fields = ["version__dataset__slug", "item__key"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
