"""The catalogue's filters, shared by the API and the pages so both answer the same question."""

import django_filters
from django.db.models import Q

from .formats import model as fmt
from .models import Dataset, DatasetVersion, Offer

TASK_TYPES = [
    ("classification", "Image classification"),
    ("detection", "Object detection"),
    ("segmentation", "Segmentation"),
    ("keypoints", "Keypoints / pose"),
    ("3d-detection", "3D detection"),
    ("lane-detection", "Lane detection"),
]
ANNOTATION_KINDS = [(g, g.replace("_", " ")) for g in fmt.GEOMETRY_TYPES]


class DatasetFilter(django_filters.FilterSet):
    """Filters of the catalogue: task type, annotation kind, license, domain, license terms, text."""

    search = django_filters.CharFilter(method="filter_search", label="Search")
    task_type = django_filters.ChoiceFilter(choices=TASK_TYPES, method="filter_task_type", label="Task")
    annotation_kind = django_filters.ChoiceFilter(
        choices=ANNOTATION_KINDS, method="filter_annotation_kind", label="Annotation kind"
    )
    license = django_filters.CharFilter(method="filter_license", label="License (SPDX id or name)")
    domain = django_filters.CharFilter(field_name="domain", lookup_expr="iexact")
    supplier = django_filters.CharFilter(field_name="supplier__slug")
    category = django_filters.CharFilter(method="filter_category", label="Class name")
    commercial_use = django_filters.BooleanFilter(method="filter_term", label="Commercial use allowed")
    ai_training = django_filters.BooleanFilter(method="filter_term", label="AI training allowed")

    class Meta:
        model = Dataset
        fields = ["search", "task_type", "annotation_kind", "license", "domain", "supplier"]

    def filter_search(self, queryset, name, value):
        terms = value.split()
        for term in terms:
            queryset = queryset.filter(
                Q(title__icontains=term)
                | Q(summary__icontains=term)
                | Q(description__icontains=term)
                | Q(domain__icontains=term)
                | Q(tags__has_element=term.lower())
            )
        return queryset

    def filter_task_type(self, queryset, name, value):
        return queryset.filter(task_types__has_element=value)

    def filter_annotation_kind(self, queryset, name, value):
        # One filter() call so both conditions hold for the same released version.
        released = DatasetVersion.objects.released().filter(
            schema__categories__geometry_types__has_element=value
        )
        return queryset.filter(pk__in=released.values("dataset_id"))

    def filter_category(self, queryset, name, value):
        released = DatasetVersion.objects.released().filter(schema__categories__name__iexact=value)
        return queryset.filter(pk__in=released.values("dataset_id"))

    def filter_license(self, queryset, name, value):
        offers = Offer.objects.filter(active=True).filter(
            Q(license__spdx_id__iexact=value) | Q(license__name__iexact=value)
        )
        return queryset.filter(pk__in=offers.values("dataset_id"))

    def filter_term(self, queryset, name, value):
        if value is None:
            return queryset
        offers = Offer.objects.filter(active=True, **{f"license__{name}": True})
        if value:
            return queryset.filter(pk__in=offers.values("dataset_id"))
        return queryset.exclude(pk__in=offers.values("dataset_id"))
