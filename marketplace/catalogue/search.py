"""The catalogue's filters, shared by the API and the pages so both answer the same question.

Search is PostgreSQL full-text search with ranking when the database is PostgreSQL, and a plain
case-insensitive match on SQLite (the embedded default), so both databases give sensible results.
Facet counts (`facet_counts`) tell, for each value of a filter, how many datasets the current
search would show if that value were chosen: each facet is counted with every *other* filter applied.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import django_filters
from django import forms
from django.db import connections
from django.db.models import (
    BigIntegerField,
    Case,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from ..errors import ErrorCode
from ..formats import model as fmt
from ..models import AttributeSpec, Category, Dataset, DatasetVersion, Offer

TASK_TYPES = [
    ("classification", "Image classification"),
    ("detection", "Object detection"),
    ("segmentation", "Segmentation"),
    ("keypoints", "Keypoints / pose"),
    ("3d-detection", "3D detection"),
    ("lane-detection", "Lane detection"),
]
ANNOTATION_KINDS = [(g, g.replace("_", " ")) for g in fmt.GEOMETRY_TYPES]
LICENSE_TERMS = [
    ("commercial_use", "Commercial use"),
    ("ai_training", "AI training"),
    ("derivatives", "Derivatives"),
    ("redistribution", "Redistribution"),
]
SORTS = [
    ("relevance", "Relevance"),
    ("newest", "Newest"),
    ("largest", "Most images"),
    ("smallest", "Fewest images"),
    ("price", "Price, lowest first"),
    ("-price", "Price, highest first"),
]
RELEASED = [DatasetVersion.Status.PUBLISHED, DatasetVersion.Status.DEPRECATED]
# PostgreSQL text-search configuration: English stemming, so "cracks" finds "crack".
SEARCH_CONFIG = "english"


def _released_versions():
    return DatasetVersion.objects.filter(status__in=RELEASED)


class StrictNullBooleanField(forms.NullBooleanField):
    """A yes/no/absent filter that refuses anything else: ``commercial_use=maybe`` is an error, not
    "no filter" (Django's NullBooleanField reads every unknown word as "unknown" and filters nothing)."""

    TRUE = frozenset({"true", "1", "yes", "on"})
    FALSE = frozenset({"false", "0", "no", "off"})
    ABSENT = frozenset({"", "unknown"})  # "unknown": the empty choice of Django's own select widget
    # A text input hands the raw word to to_python (NullBooleanSelect maps unknown words to None).
    widget = forms.TextInput

    def to_python(self, value):
        if value is None or isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        if text in self.ABSENT:
            return None
        raise forms.ValidationError("Enter true or false.", code=ErrorCode.INVALID_BOOLEAN.value)

    def validate(self, value):
        pass


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictNullBooleanField


class DatasetFilter(django_filters.FilterSet):
    """Filters of the catalogue: text, task, annotation kind, class, license and its terms, domain,
    access mode, size, price, demographic statistics; and the sort order."""

    search = django_filters.CharFilter(method="filter_search", label="Search")
    task_type = django_filters.ChoiceFilter(choices=TASK_TYPES, method="filter_task_type", label="Task")
    annotation_kind = django_filters.ChoiceFilter(
        choices=ANNOTATION_KINDS, method="filter_annotation_kind", label="Annotation kind"
    )
    category = django_filters.CharFilter(method="filter_category", label="Class name")
    license = django_filters.CharFilter(method="filter_license", label="License (SPDX id or name)")
    domain = django_filters.CharFilter(field_name="domain", lookup_expr="iexact", label="Domain")
    supplier = django_filters.CharFilter(field_name="supplier__slug", label="Supplier (slug)")
    commercial_use = StrictBooleanFilter(method="filter_term", label="Commercial use allowed")
    ai_training = StrictBooleanFilter(method="filter_term", label="AI training allowed")
    derivatives = StrictBooleanFilter(method="filter_term", label="Derivatives allowed")
    redistribution = StrictBooleanFilter(method="filter_term", label="Redistribution allowed")
    access_mode = django_filters.ChoiceFilter(
        choices=Offer.AccessMode.choices, method="filter_access_mode", label="Access"
    )
    has_demographics = StrictBooleanFilter(
        method="filter_has_demographics", label="Has demographic statistics"
    )
    min_items = django_filters.NumberFilter(
        field_name="size_items", lookup_expr="gte", min_value=0, label="At least this many images"
    )
    max_items = django_filters.NumberFilter(
        field_name="size_items", lookup_expr="lte", min_value=0, label="At most this many images"
    )
    max_price = django_filters.NumberFilter(
        field_name="min_price", lookup_expr="lte", min_value=0, label="Price up to"
    )
    sort = django_filters.ChoiceFilter(choices=SORTS, method="filter_noop", label="Sort by")

    class Meta:
        model = Dataset
        fields: list[str] = []

    # -- the pipeline: annotate what filters and sorts need, filter, then sort (sorting last, so
    # -- relevance can use the rank that the search filter annotated).

    def filter_queryset(self, queryset):
        queryset = annotate_size_and_price(queryset)
        for name, value in self.form.cleaned_data.items():
            if name != "sort":
                queryset = self.filters[name].filter(queryset, value)
        return self.sort_queryset(queryset, self.form.cleaned_data.get("sort"))

    def sort_queryset(self, queryset, sort: str | None):
        searching = bool((self.form.cleaned_data.get("search") or "").strip())
        sort = sort or ("relevance" if searching else "newest")
        if sort == "relevance" and searching:
            return queryset.order_by(F("search_rank").desc(nulls_last=True), "-created_at", "slug")
        if sort == "largest":
            return queryset.order_by(F("size_items").desc(nulls_last=True), "-created_at", "slug")
        if sort == "smallest":
            return queryset.order_by(F("size_items").asc(nulls_last=True), "-created_at", "slug")
        if sort == "price":
            return queryset.order_by(F("min_price").asc(nulls_last=True), "-created_at", "slug")
        if sort == "-price":
            return queryset.order_by(F("min_price").desc(nulls_last=True), "-created_at", "slug")
        return queryset.order_by("-created_at", "slug")

    def filter_noop(self, queryset, name, value):
        return queryset

    # -- text search

    def filter_search(self, queryset, name, value):
        value = (value or "").strip()
        if not value:
            return queryset
        if connections[queryset.db].vendor == "postgresql":
            return self._search_postgresql(queryset, value)
        return self._search_simple(queryset, value)

    def _search_postgresql(self, queryset, value):
        from django.contrib.postgres.aggregates import StringAgg
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        class_names = (
            Category.objects.filter(
                schema__version__dataset=OuterRef("pk"), schema__version__status__in=RELEASED
            )
            .order_by()
            .values("schema__version__dataset")
            .annotate(names=StringAgg("name", " ", distinct=True))
            .values("names")
        )
        queryset = queryset.annotate(
            search_classes=Subquery(class_names, output_field=TextField()),
            search_tags=Cast("tags", TextField()),
        )
        # Computed per query, not stored: the catalogue is thousands of rows, not millions. A stored,
        # GIN-indexed tsvector column is the next step if it grows.
        vector = (
            SearchVector("title", weight="A", config=SEARCH_CONFIG)
            + SearchVector("summary", "search_tags", "search_classes", weight="B", config=SEARCH_CONFIG)
            + SearchVector("description", "domain", "supplier__name", weight="C", config=SEARCH_CONFIG)
        )
        query = SearchQuery(value, search_type="websearch", config=SEARCH_CONFIG)
        return queryset.annotate(search_document=vector, search_rank=SearchRank(vector, query)).filter(
            # A title or slug fragment ("bridg") still finds the dataset, ranked after real matches.
            Q(search_document=query) | Q(title__icontains=value) | Q(slug__icontains=value)
        )

    def _search_simple(self, queryset, value):
        rank = Value(0)
        for term in value.split():
            classes = _released_versions().filter(schema__categories__name__icontains=term)
            queryset = queryset.filter(
                Q(title__icontains=term)
                | Q(summary__icontains=term)
                | Q(description__icontains=term)
                | Q(domain__icontains=term)
                | Q(supplier__name__icontains=term)
                | Q(tags__has_element=term.lower())
                | Q(pk__in=classes.values("dataset_id"))
            )
            rank = rank + Case(
                When(title__icontains=term, then=Value(4)),
                When(summary__icontains=term, then=Value(2)),
                default=Value(1),
                output_field=IntegerField(),
            )
        return queryset.annotate(search_rank=rank)

    # -- facets

    def filter_task_type(self, queryset, name, value):
        return queryset.filter(task_types__has_element=value)

    def filter_annotation_kind(self, queryset, name, value):
        # One filter() call so both conditions hold for the same released version.
        released = _released_versions().filter(schema__categories__geometry_types__has_element=value)
        return queryset.filter(pk__in=released.values("dataset_id"))

    def filter_category(self, queryset, name, value):
        released = _released_versions().filter(schema__categories__name__iexact=value.strip())
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

    def filter_access_mode(self, queryset, name, value):
        return queryset.filter(
            pk__in=Offer.objects.filter(active=True, access_mode=value).values("dataset_id")
        )

    def filter_has_demographics(self, queryset, name, value):
        if value is None:
            return queryset
        with_people = _released_versions().filter(schema__attributes__describes_person=True)
        if value:
            return queryset.filter(pk__in=with_people.values("dataset_id"))
        return queryset.exclude(pk__in=with_people.values("dataset_id"))


def annotate_size_and_price(queryset):
    """Add `size_items` (images in the newest released version) and `min_price` (cheapest active offer)."""
    latest = (
        _released_versions()
        .filter(dataset=OuterRef("pk"))
        .order_by("-number")
        .annotate(n=Cast(KT("stats__items"), BigIntegerField()))
        .values("n")[:1]
    )
    cheapest = Offer.objects.filter(dataset=OuterRef("pk"), active=True).order_by("price").values("price")[:1]
    return queryset.annotate(size_items=Subquery(latest), min_price=Subquery(cheapest))


# --------------------------------------------------------------------------- facet counts

FACETS = ["task_type", "annotation_kind", "domain", "license", "access_mode", "has_demographics"] + [
    term for term, _ in LICENSE_TERMS
]


def _ids_without(filterset: DatasetFilter, facet: str, base_queryset):
    """The datasets the current filters select when `facet` itself is left out."""
    data = filterset.data.copy()
    data.pop(facet, None)
    data.pop("sort", None)
    other = type(filterset)(data, queryset=base_queryset, request=getattr(filterset, "request", None))
    qs = other.qs if other.is_valid() else base_queryset
    return qs.order_by().values("pk")


def facet_counts(filterset: DatasetFilter, base_queryset) -> dict[str, list[dict]]:
    """For each facet, its values with how many datasets each would give, and which is selected.

    A dataset counts once per value whatever the number of its offers or versions.
    """
    data = filterset.data
    out: dict[str, list[dict]] = {}

    def entries(counts: Counter, choices: list[tuple[str, str]] | None, facet: str) -> list[dict]:
        selected = (data.get(facet) or "").lower()
        labels = dict(choices) if choices else {}
        keys = [k for k, _ in choices] if choices else sorted(counts, key=lambda k: (-counts[k], k))
        return [
            {
                "value": k,
                "label": labels.get(k, k),
                "count": counts.get(k, 0),
                "selected": selected == str(k).lower(),
            }
            for k in keys
            if counts.get(k, 0) or selected == str(k).lower() or choices
        ]

    ids = _ids_without(filterset, "task_type", base_queryset)
    tasks = Counter(
        t
        for types in Dataset.objects.filter(pk__in=ids).values_list("task_types", flat=True)
        for t in set(types or [])
    )
    out["task_type"] = entries(tasks, TASK_TYPES, "task_type")

    ids = _ids_without(filterset, "annotation_kind", base_queryset)
    kinds_of: dict[int, set] = defaultdict(set)
    for dataset_id, kinds in Category.objects.filter(
        schema__version__dataset__in=ids, schema__version__status__in=RELEASED
    ).values_list("schema__version__dataset_id", "geometry_types"):
        kinds_of[dataset_id].update(kinds or [])
    out["annotation_kind"] = entries(
        Counter(k for kinds in kinds_of.values() for k in kinds), ANNOTATION_KINDS, "annotation_kind"
    )

    ids = _ids_without(filterset, "domain", base_queryset)
    out["domain"] = entries(
        Counter(d.lower() for d in Dataset.objects.filter(pk__in=ids).values_list("domain", flat=True)),
        None,
        "domain",
    )

    ids = _ids_without(filterset, "license", base_queryset)
    licenses: dict[str, set] = defaultdict(set)
    for dataset_id, spdx, name in Offer.objects.filter(active=True, dataset__in=ids).values_list(
        "dataset_id", "license__spdx_id", "license__name"
    ):
        licenses[spdx or name].add(dataset_id)
    out["license"] = entries(Counter({k: len(v) for k, v in licenses.items()}), None, "license")

    ids = _ids_without(filterset, "access_mode", base_queryset)
    modes: dict[str, set] = defaultdict(set)
    for dataset_id, mode in Offer.objects.filter(active=True, dataset__in=ids).values_list(
        "dataset_id", "access_mode"
    ):
        modes[mode].add(dataset_id)
    out["access_mode"] = entries(
        Counter({k: len(v) for k, v in modes.items()}), list(Offer.AccessMode.choices), "access_mode"
    )

    for term, label in LICENSE_TERMS:
        ids = _ids_without(filterset, term, base_queryset)
        n = (
            Offer.objects.filter(active=True, dataset__in=ids, **{f"license__{term}": True})
            .values("dataset_id")
            .distinct()
            .count()
        )
        out[term] = entries(Counter({"true": n}), [("true", label)], term)

    ids = _ids_without(filterset, "has_demographics", base_queryset)
    n = (
        AttributeSpec.objects.filter(
            describes_person=True,
            schema__version__dataset__in=ids,
            schema__version__status__in=RELEASED,
        )
        .values("schema__version__dataset_id")
        .distinct()
        .count()
    )
    out["has_demographics"] = entries(
        Counter({"true": n}), [("true", "Has demographic statistics")], "has_demographics"
    )
    return out
