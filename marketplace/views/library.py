"""The buyer's library: entitlements, orders, requests, exports and downloads, and its buttons."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from .. import visibility
from ..errors import DomainError
from ..exports import downloads as export_downloads
from ..exports import tasks as export_tasks
from ..licensing import service as licensing
from ..models import (
    AccessRequest,
    DatasetVersion,
    Download,
    Entitlement,
    Export,
    Order,
    org_ids,
)


def _library_exports(request, entitlements):
    """Exports of the versions the user's organisations hold, with a download link when ready."""
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
                # What the format dropped, converted or clipped (the archive's NOTES.md says the same).
                "lossy": [n for n in export.notes or [] if n.get("code") != "info"],
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
    user = request.user
    orgs = org_ids(user)
    active = set(Entitlement.objects.active().filter(organization_id__in=orgs).values_list("pk", flat=True))
    entitlements = list(
        Entitlement.objects.filter(organization_id__in=orgs)
        .select_related("dataset", "dataset__withdrawal", "license", "organization")
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
