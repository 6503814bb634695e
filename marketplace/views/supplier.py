"""The supplier's pages: deliveries (upload an archive, follow its progress, read its report), and
the access requests and orders of the datasets it supplies.

Scoped like the API: a user who supplies no dataset gets a 404 for the dashboard, and a delivery of
a dataset the user does not supply is a 404 whoever asks.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from .. import visibility
from ..deliveries import service as delivery_service
from ..deliveries import tasks as delivery_tasks
from ..errors import DomainError
from ..licensing import service as licensing
from ..models import (
    AccessRequest,
    Dataset,
    Delivery,
    Entitlement,
    Offer,
    Order,
    Role,
    org_ids,
)


class DeliveryUploadForm(forms.Form):
    """Upload one archive for one of the user's datasets."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), to_field_name="slug")
    archive = forms.FileField(
        help_text="A zip: images plus COCO, Pascal VOC, YOLO, CVAT or Label Studio labels"
    )
    format = forms.ChoiceField(choices=Delivery.Format.choices, initial=Delivery.Format.AUTO)
    defaults = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Provenance defaults as JSON, e.g. {"guideline_version": "v1.2", "source": "human"}',
    )

    no_matching = forms.BooleanField(
        required=False,
        label="No matching (a new generation)",
        help_text="Every label gets a new identity; the previous version's labels are recorded as deleted",
    )
    thresholds = forms.CharField(
        required=False,
        help_text='Matching thresholds as JSON, e.g. {"iou": 0.6, "distance": 8} (defaults: iou 0.5, '
        "oks 0.5, distance 8 px, distance_3d 0.5 m, relabel 0.9)",
    )

    def __init__(self, *args, datasets, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = datasets

    def clean_thresholds(self) -> dict:
        text = self.cleaned_data.get("thresholds") or ""
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError("Not valid JSON.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object.")
        return value

    def matching_options(self) -> dict:
        options: dict = {"enabled": not self.cleaned_data.get("no_matching")}
        if self.cleaned_data.get("thresholds"):
            options["thresholds"] = self.cleaned_data["thresholds"]
        return options

    def clean_defaults(self) -> dict:
        text = self.cleaned_data.get("defaults") or ""
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError("Not valid JSON.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object.")
        return value


def _supplied(user):
    datasets = visibility.supplied_datasets(user).order_by("title")
    if not datasets.exists():
        raise Http404("No datasets supplied by you")
    return datasets


@login_required
def deliveries(request):
    """All deliveries of the user's datasets, newest first, and the upload form."""
    datasets = _supplied(request.user)
    form = DeliveryUploadForm(
        request.POST or None,
        request.FILES or None,
        datasets=datasets,
        initial={"dataset": request.GET.get("dataset")},
    )
    if request.method == "POST" and form.is_valid():
        archive = form.cleaned_data["archive"]
        try:
            delivery = delivery_service.create_delivery(
                dataset=form.cleaned_data["dataset"],
                archive=archive,
                format=form.cleaned_data["format"],
                defaults=form.cleaned_data["defaults"],
                uploaded_by=request.user,
                original_name=archive.name,
                matching=form.matching_options(),
            )
        except DomainError as error:
            form.add_error(None, error.detail)
        else:
            transaction.on_commit(lambda: delivery_tasks.ingest_delivery.delay(delivery.pk))
            return redirect("supplier-delivery", pk=delivery.pk)
    rows = visibility.deliveries(request.user)[:100]
    return render(
        request,
        "marketplace/supplier/deliveries.html",
        {"deliveries": rows, "form": form, "running": any(d.status in _RUNNING for d in rows)},
    )


_RUNNING = (Delivery.Status.PENDING, Delivery.Status.VALIDATING)


@login_required
def delivery_detail(request, pk: int):
    """One delivery: status, progress, counts, provenance coverage and every problem found."""
    delivery = get_object_or_404(visibility.deliveries(request.user), pk=pk)
    report = delivery.report or {}
    return render(
        request,
        "marketplace/supplier/delivery_detail.html",
        {
            "delivery": delivery,
            "report": report,
            "problems": report.get("problems", []),
            "counts": report.get("counts", {}),
            "lineage": report.get("lineage"),
            "provenance": report.get("provenance", {}),
            "shares": {
                k: round(v * 100, 1) for k, v in report.get("provenance", {}).get("shares", {}).items()
            },
            "running": delivery.status in _RUNNING,
        },
    )


# --------------------------------------------------------------------------- access requests and orders


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
                    user=request.user,
                    order=order,
                    reference=request.POST.get("reference", ""),
                    amount=request.POST.get("amount", ""),
                )
                messages.success(request, f"Payment of invoice {order.invoice_number} confirmed.")
        except DomainError as exc:
            messages.error(request, exc.detail)
        return redirect("supplier-orders")
    return render(
        request,
        "marketplace/supplier_orders.html",
        {
            "orders": Order.objects.filter(dataset__in=supplied).select_related(
                "dataset", "organization", "license", "placed_by", "marked_paid_by"
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
