"""Server-rendered pages: the catalogue, a dataset, its samples, licensing, the buyer's library and the
supplier's requests and orders. Scoped like the API; writes call the services in marketplace.licensing.service.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import visibility
from .catalogue.search import SORTS, DatasetFilter, facet_counts
from .catalogue.selectors import attach_versions, catalogue_queryset, samples_payload
from .errors import DomainError
from .exports import downloads as export_downloads
from .exports import tasks as export_tasks
from .licensing import service as licensing
from .models import (
    AccessRequest,
    Dataset,
    DatasetVersion,
    Entitlement,
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
    from .formats.model import bbox_of

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


def _library_exports(request, entitlements):
    """Exports of the versions the user's organisations hold, with a download link when ready."""
    from .models import Export

    dataset_ids = {e.dataset_id for e in entitlements if e.is_active}
    rows = []
    for export in (
        Export.objects.filter(version__dataset_id__in=dataset_ids)
        .select_related("version__dataset")
        .order_by("-created_at")[:50]
    ):
        allowed = visibility.can_export(request.user, export.version)
        rows.append(
            {
                "export": export,
                "api_url": reverse("api-export-detail", kwargs={"pk": export.pk}),
                "download_url": export_downloads.download_url_for(
                    export=export, user=request.user, request=request
                )
                if allowed and export.status == Export.Status.READY
                else None,
            }
        )
    return rows


@login_required
def library(request):
    """The buyer's library: entitlements with their terms, expiry and seats; orders; requests; exports."""
    from .models import Download, Export

    user = request.user
    orgs = org_ids(user)
    active = set(Entitlement.objects.active().filter(organization_id__in=orgs).values_list("pk", flat=True))
    entitlements = list(
        Entitlement.objects.filter(organization_id__in=orgs)
        .select_related("dataset", "license", "organization")
        .prefetch_related(
            "seats",
            Prefetch(
                "dataset__versions",
                queryset=DatasetVersion.objects.released().order_by("-number"),
                to_attr="released_versions",
            ),
        )
        .order_by("-created_at")
    )
    for e in entitlements:
        e.is_active = e.pk in active
        e.user_has_seat = any(s.user_id == user.pk for s in e.seats.all())
        e.seats_used = len(e.seats.all())
        e.versions_covered = [v for v in e.dataset.released_versions if e.all_versions or e.covers(v)]
    return render(
        request,
        "marketplace/library.html",
        {
            "entitlements": entitlements,
            "orders": Order.objects.filter(organization_id__in=orgs).select_related("dataset", "license")[
                :100
            ],
            "requests": AccessRequest.objects.filter(organization_id__in=orgs).select_related(
                "dataset", "offer__license", "requested_by"
            )[:100],
            "exports": _library_exports(request, entitlements),
            "export_formats": [c for c in Export.Format.choices if c[0] != Export.Format.CROISSANT],
            "downloads": Download.objects.filter(organization_id__in=orgs)
            .select_related("export__version__dataset", "user")
            .order_by("-at")[:50],
        },
    )


@login_required
@require_POST
def library_action(request):
    """Buttons of the library: accept a license (take a seat), withdraw a request, export a version."""
    action = request.POST.get("action")
    try:
        if action == "accept_license":
            entitlement = get_object_or_404(
                Entitlement.objects.filter(organization_id__in=org_ids(request.user)),
                pk=request.POST.get("entitlement"),
            )
            licensing.claim_seat(user=request.user, entitlement=entitlement)
            messages.success(request, f"You accepted the license of {entitlement.dataset.title}.")
        elif action == "withdraw":
            access_request = get_object_or_404(
                AccessRequest.objects.filter(organization_id__in=org_ids(request.user)),
                pk=request.POST.get("request"),
            )
            licensing.withdraw_request(user=request.user, request=access_request)
            messages.success(request, "Request withdrawn.")
        elif action == "export":
            number = request.POST.get("version", "")
            if not number.isdigit():
                raise Http404("No such version")
            try:
                version = visibility.visible_version(
                    request.user, request.POST.get("dataset", ""), int(number)
                )
            except DomainError:
                raise Http404("No such version") from None  # a 404 page, not a message
            export = export_tasks.request_export(
                version=version, user=request.user, format=request.POST.get("format", "")
            )
            messages.success(request, f"Export of {version} as {export.get_format_display()} requested.")
        else:
            raise Http404("Unknown action")
    except DomainError as exc:
        messages.error(request, exc.detail)
    return redirect("library")


def _supplied_or_404(user):
    if not (user.is_staff or org_ids(user, Role.SUPPLIER)):
        raise Http404("You supply no datasets")


@login_required
def supplier_requests(request):
    """Access requests for the supplier's datasets: approve, or reject with a reason."""
    _supplied_or_404(request.user)
    if request.method == "POST":
        access_request = get_object_or_404(
            AccessRequest.objects.filter(dataset__in=visibility.supplied_datasets(request.user)),
            pk=request.POST.get("request"),
        )
        approve = request.POST.get("decision") == "approve"
        try:
            licensing.decide_request(
                user=request.user,
                request=access_request,
                approve=approve,
                reason=request.POST.get("reason", ""),
            )
            messages.success(
                request,
                f"Request of {access_request.organization} {'approved' if approve else 'rejected'}.",
            )
        except DomainError as exc:
            messages.error(request, exc.detail)
        return redirect("supplier-requests")
    qs = AccessRequest.objects.filter(dataset__in=visibility.supplied_datasets(request.user)).select_related(
        "dataset", "organization", "offer__license", "requested_by", "decided_by"
    )
    return render(
        request,
        "marketplace/supplier_requests.html",
        {
            "pending": [r for r in qs if r.status == AccessRequest.Status.PENDING],
            "decided": [r for r in qs if r.status != AccessRequest.Status.PENDING][:100],
        },
    )


@login_required
def supplier_orders(request):
    """Orders for the supplier's datasets (mark paid, cancel), their offers and who holds them."""
    _supplied_or_404(request.user)
    supplied = visibility.supplied_datasets(request.user)
    if request.method == "POST":
        order = get_object_or_404(Order.objects.filter(dataset__in=supplied), pk=request.POST.get("order"))
        try:
            if request.POST.get("action") == "cancel":
                licensing.cancel_order(user=request.user, order=order)
                messages.success(
                    request, f"Order {order.invoice_number} cancelled; its entitlement is revoked."
                )
            else:
                licensing.mark_paid(
                    user=request.user, order=order, reference=request.POST.get("reference", "")
                )
                messages.success(request, f"Order {order.invoice_number} marked paid.")
        except DomainError as exc:
            messages.error(request, exc.detail)
        return redirect("supplier-orders")
    return render(
        request,
        "marketplace/supplier_orders.html",
        {
            "orders": Order.objects.filter(dataset__in=supplied).select_related(
                "dataset", "organization", "license", "placed_by"
            )[:200],
            "offers": Offer.objects.filter(dataset__in=supplied)
            .select_related("dataset", "license")
            .order_by("dataset__title", "price"),
            "entitlements": Entitlement.objects.active()
            .filter(dataset__in=supplied)
            .select_related("dataset", "license", "organization")
            .prefetch_related("seats")
            .order_by("dataset__title", "-created_at"),
        },
    )
