"""Reads of the catalogue that the API and the pages share: the list, a dataset's versions, samples."""

from __future__ import annotations

from django.db.models import Prefetch
from django.urls import reverse

from .. import visibility
from ..models import Dataset, DatasetVersion, Item, Offer
from . import previews


def catalogue_queryset(user):
    """Datasets this user may see, with what the list needs prefetched."""
    return (
        visibility.datasets(user)
        .select_related("supplier", "withdrawal")
        .prefetch_related(
            Prefetch(
                "versions",
                queryset=DatasetVersion.objects.released().order_by("-number"),
                to_attr="released_versions",
            ),
            Prefetch(
                "offers",
                queryset=Offer.objects.filter(active=True).select_related("license"),
                to_attr="active_offers",
            ),
        )
        .order_by("-created_at", "slug")
    )


def attach_versions(dataset: Dataset, user) -> Dataset:
    """Set the versions this user may see, and the one to show in full."""
    dataset.visible_versions = list(visibility.versions(user).filter(dataset=dataset).order_by("-number"))
    released = [v for v in dataset.visible_versions if v.status != DatasetVersion.Status.DRAFT]
    current = released[0] if released else (dataset.visible_versions[0] if dataset.visible_versions else None)
    if current is not None:
        current = (
            DatasetVersion.objects.select_related("datasheet", "schema")
            .prefetch_related("schema__categories", "schema__attributes")
            .get(pk=current.pk)
        )
    dataset.current_version = current
    return dataset


def preview_url(version: DatasetVersion, item: Item) -> str:
    return reverse(
        "api-sample-preview",
        kwargs={"dataset_slug": version.dataset.slug, "number": version.number, "item_id": item.pk},
    )


def original_url(version: DatasetVersion, item: Item) -> str:
    return reverse(
        "api-sample-original",
        kwargs={"dataset_slug": version.dataset.slug, "number": version.number, "item_id": item.pk},
    )


def samples_payload(
    *, user, version: DatasetVersion, category=None, split=None, limit=None, page: int = 1
) -> dict:
    """What the samples endpoint and the sample viewer page show: items, their labels, a legend;
    page ``page`` of ``limit`` items (previews.sample_page) and ``count``, how many there are."""
    items, count = previews.sample_page(
        version=version,
        category=category,
        split=split,
        page=page,
        page_size=limit or previews.SAMPLE_LIMIT_DEFAULT,
    )
    views = previews.label_views(items, version)
    entitled = visibility.may_use(user=user, version=version)
    results = []
    for item in items:
        results.append(
            {
                "id": item.pk,
                "key": item.key,
                "split": item.split,
                "width": item.width,
                "height": item.height,
                "attributes": previews.item_attributes(item, version),
                "preview_url": preview_url(version, item),
                "original_url": original_url(version, item) if entitled else None,
                "labels": [v.as_json() for v in views[item.pk]],
            }
        )
    return {
        "dataset": version.dataset.slug,
        "version": version.number,
        "entitled": entitled,
        "count": count,
        "legend": previews.legend([v for vs in views.values() for v in vs]),
        "results": results,
    }
