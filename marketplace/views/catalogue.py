"""Pages everyone sees: the catalogue, a dataset, its samples, an offer (buy or request)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from .. import visibility
from ..catalogue.search import SORTS, DatasetFilter, facet_counts
from ..catalogue.selectors import attach_versions, catalogue_queryset, samples_payload
from ..errors import DomainError
from ..formats.model import bbox_of
from ..licensing import service as licensing
from ..models import (
    AccessRequest,
    Dataset,
    Item,
    Offer,
    Order,
    Role,
    org_ids,
)


def catalogue(request):
    """The catalogue with the API's filters, facet counts and sort orders."""
    base = catalogue_queryset(request.user)
    filterset = DatasetFilter(request.GET, queryset=base, request=request)
    valid = filterset.is_valid()
    datasets = filterset.qs if valid else base
    page = Paginator(datasets, 12).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "marketplace/catalogue.html",
        {
            "filter": filterset,
            "facets": facet_counts(filterset, base) if valid else {},
            "sorts": SORTS,
            "page": page,
            "query": query.urlencode(),
            "filtered": any(v for k, v in request.GET.items() if k not in ("page", "sort")),
        },
    )


def dataset_detail(request, slug):
    """One dataset: versions, datasheet, schema, offers, and what the user holds. Drafts are the supplier's alone."""
    try:
        dataset = catalogue_queryset(request.user).get(slug=slug)
    except Dataset.DoesNotExist:
        raise Http404("No such dataset") from None
    attach_versions(dataset, request.user)
    version = dataset.current_version
    wanted = request.GET.get("version")
    if wanted and wanted.isdigit():
        match = [v for v in dataset.visible_versions if v.number == int(wanted)]
        if not match:
            raise Http404("No such version")
        version = match[0]
    schema = getattr(version, "schema", None) if version else None
    user = request.user
    entitlements = list(visibility.active_entitlements(user=user, dataset=dataset).prefetch_related("seats"))
    for e in entitlements:
        e.user_has_seat = any(s.user_id == user.pk for s in e.seats.all())
    return render(
        request,
        "marketplace/dataset_detail.html",
        {
            "dataset": dataset,
            "withdrawal": getattr(dataset, "withdrawal", None),
            "version": version,
            "datasheet": getattr(version, "datasheet", None) if version else None,
            "categories": schema.categories.all() if schema else [],
            "attributes": schema.attributes.all() if schema else [],
            "guideline_versions": version.guideline_versions.select_related("guideline") if version else [],
            "is_supplier": dataset.supplier_id in org_ids(user, Role.SUPPLIER),
            "entitlements": entitlements,
            "held_licenses": {e.license_id for e in entitlements},
            "pending_offers": set(
                AccessRequest.objects.filter(
                    organization_id__in=org_ids(user), dataset=dataset, status=AccessRequest.Status.PENDING
                ).values_list("offer_id", flat=True)
            ),
            "teaser": samples_payload(user=user, version=version, limit=4)["results"] if version else [],
        },
    )


def samples(request, slug, number):
    """The sample viewer: previews with labels drawn, a legend, and a tooltip per label."""
    version = visibility.visible_version(request.user, slug, number)  # a 404 page otherwise
    category = request.GET.get("category") or None
    split = request.GET.get("split") or None
    payload = samples_payload(user=request.user, version=version, category=category, split=split, limit=12)
    for sample in payload["results"]:
        for label in sample["labels"]:
            label["hotspot"] = _hotspot(label, sample["width"], sample["height"])
        # Largest first, so a small box drawn inside a big mask is on top and can be hovered.
        sample["hotspots"] = sorted(
            (lab for lab in sample["labels"] if lab["hotspot"]),
            key=lambda lab: -lab["hotspot"]["width"] * lab["hotspot"]["height"],
        )
    return render(
        request,
        "marketplace/samples.html",
        {
            "dataset": version.dataset,
            "version": version,
            "payload": payload,
            "categories": version.schema.categories.all() if hasattr(version, "schema") else [],
            "category": category or "",
            "split": split or "",
            "splits": [s for s in Item.Split.values if s],
        },
    )


def _hotspot(label: dict, width: int, height: int) -> dict | None:
    """The label's extent as percentages of the image, for the hover area of its tooltip."""
    box = bbox_of(label["geometry"]) if label["geometry_type"] != "mask" else label["geometry"].get("bbox")
    if not box:
        return None
    x, y, w, h = box
    pad = 0.6  # a polyline or a point has no area: give it a little, in percent, so it can be hovered
    return {
        "left": round(max(0.0, x / width * 100 - pad), 2),
        "top": round(max(0.0, y / height * 100 - pad), 2),
        "width": round(min(100.0, w / width * 100 + 2 * pad), 2),
        "height": round(min(100.0, h / height * 100 + 2 * pad), 2),
    }


def offer(request, slug, offer_id):
    """An offer's license, in full, and the form that buys, claims or requests it."""
    dataset = get_object_or_404(visibility.datasets(request.user), slug=slug)
    the_offer = get_object_or_404(Offer.objects.select_related("license"), pk=offer_id, dataset=dataset)
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('login')}?next={request.path}")
        accepted = request.POST.get("accept_license") == "yes"
        try:
            if the_offer.access_mode == Offer.AccessMode.REQUEST:
                licensing.request_access(
                    user=request.user,
                    offer=the_offer,
                    accept_license=accepted,
                    message=request.POST.get("message", ""),
                )
                messages.success(request, f"Access to {dataset.title} requested: the supplier will decide.")
            else:
                order = licensing.purchase(
                    user=request.user,
                    offer=the_offer,
                    idempotency_key=request.POST.get("idempotency_key", ""),
                    accept_license=accepted,
                )
                if order.status == Order.Status.INVOICED:
                    messages.success(
                        request,
                        f"{dataset.title} is licensed. Invoice {order.invoice_number} is in your library.",
                    )
                else:
                    messages.success(request, f"{dataset.title} is in your library.")
        except DomainError as exc:
            messages.error(request, exc.detail)
            return redirect("offer", slug=slug, offer_id=offer_id)
        return redirect("library")
    user = request.user
    held = (
        visibility.active_entitlements(user=user, dataset=dataset).filter(license=the_offer.license).first()
    )
    pending = AccessRequest.objects.filter(
        organization_id__in=org_ids(user), offer=the_offer, status=AccessRequest.Status.PENDING
    ).first()
    return render(
        request,
        "marketplace/offer.html",
        {
            "dataset": dataset,
            "offer": the_offer,
            "license": the_offer.license,
            "text_sha256": licensing.license_text_sha256(the_offer.license),
            "held": held,
            "pending": pending,
            "is_buyer": bool(org_ids(user, Role.BUYER)),
            # A fresh key per rendering of the form: a double-submitted form is one order.
            "idempotency_key": uuid.uuid4().hex,
        },
    )
