"""Pages of the quality reports: the charts a buyer reads, the supplier's review queue, the auditor's report.

Server-rendered, no JavaScript: the charts are CSS bars whose widths are computed here. Scoped
like the API (``governance.quality.access``): whoever cannot see a version gets a 404, and the review
queue is the supplier's alone.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from governance.models import Annotator, ReviewTask
from governance.quality import consensus, reports
from governance.quality.access import is_supplier
from marketplace import visibility
from marketplace.catalogue import previews
from marketplace.errors import DomainError
from marketplace.models import DatasetVersion, Label


def _version(request, slug: str, number: int) -> DatasetVersion:
    version = (
        visibility.versions(request.user)
        .select_related("dataset", "dataset__supplier")
        .filter(dataset__slug=slug, number=number)
        .first()
    )
    if version is None:
        raise Http404("No such dataset version")
    return version


# --------------------------------------------------------------------------- chart data


def bars(counts: dict, *, targets: dict | None = None, shares: dict | None = None) -> list[dict]:
    """Rows for a horizontal bar chart: width relative to the largest count, target share as a marker."""
    total = sum(counts.values()) or 1
    top = max(counts.values(), default=0) or 1
    rows = []
    for label, count in counts.items():
        share = shares.get(label) if shares else count / total
        row = {
            "label": label,
            "count": count,
            "share": round(100 * (share or 0), 1),
            "width": round(100 * count / top, 1),
        }
        if targets and label in targets and targets[label] is not None:
            # The marker sits on the same scale as the bars: the count the target share would give.
            row["target"] = round(100 * targets[label])
            row["target_at"] = min(100.0, round(100 * targets[label] * total / top, 1))
        rows.append(row)
    return rows


def heat(table: dict) -> list[dict]:
    """Rows of a cross-table with each cell's shade (0..1 of the largest cell)."""
    top = max((c for row in table["counts"] for c in row), default=0) or 1
    return [
        {
            "label": label,
            "cells": [{"count": c, "shade": round(0.08 + 0.92 * c / top, 2), "empty": c == 0} for c in row],
        }
        for label, row in zip(table["rows"], table["counts"], strict=True)
    ]


def chart_context(stats: dict | None, agreement: dict | None, balance: dict | None) -> dict:
    """Everything the chart templates draw, from the stored results."""
    context: dict = {}
    if balance:
        classes = balance["classes"]
        context["class_bars"] = bars(classes["counts"])
        context["same_object_views"] = classes.get("same_object_views", {})
        context["split_tables"] = classes.get("per_split", {})
        context["people"] = [
            {
                "name": e["name"],
                "entry": e,
                "bars": bars(
                    e["distribution"]["counts"],
                    targets=(e.get("target") or {}).get("target"),
                ),
            }
            for e in balance.get("person_attributes", [])
        ]
        context["crosses"] = [{"table": t, "rows": heat(t)} for t in balance.get("cross_tables", [])]
        context["context_attributes"] = [
            {"name": e["name"], "bars": bars(e["distribution"]["counts"])}
            for e in balance.get("context_attributes", [])
            if e["scope"] == "item"
        ]
        context["size_bars"] = bars(balance["object_sizes"]["coco"])
        context["per_item_bars"] = bars(balance["labels_per_item"]["histogram"])
        context["balance_gaps"] = [
            {**g, "label": g["kind"].replace("_", " ")} for g in balance.get("gaps", [])
        ]
        context["pool"] = balance.get("annotator_pool")
    if agreement:
        context["agreement"] = agreement
        if agreement.get("measurable"):
            context["geometry_bars"] = [
                {
                    "kind": kind,
                    "similarity": s["similarity"],
                    "f1": s["overall"]["f1"],
                    "mean": s["overall"]["mean_similarity"],
                    "f1_width": round(100 * (s["overall"]["f1"] or 0), 1),
                    "mean_width": round(100 * (s["overall"]["mean_similarity"] or 0), 1),
                }
                for kind, s in agreement.get("geometry", {}).items()
            ]
            nominal = dict(agreement.get("categorical", {}).get("attributes", {}))
            if "classification" in agreement.get("categorical", {}):
                nominal = {"image class": agreement["categorical"]["classification"], **nominal}
            context["nominal_bars"] = [
                {
                    "name": name,
                    "alpha": s["krippendorff_alpha"],
                    "fleiss": s["fleiss_kappa"],
                    "raw": s["percent_agreement"],
                    "units": s["units"],
                    "width": round(100 * max(0.0, s["krippendorff_alpha"] or 0), 1),
                }
                for name, s in nominal.items()
            ]
    if stats:
        context["counts"] = stats.get("counts", {})
    return context


# --------------------------------------------------------------------------- pages


def quality_overview(request, slug: str, number: int):
    """Charts of the class and demographic distributions and of the annotators' agreement."""
    version = _version(request, slug, number)
    stored = reports.reports_for(version)
    results = {kind: row.result for kind, row in stored.items()}
    return render(
        request,
        "governance/quality/overview.html",
        {
            "dataset": version.dataset,
            "version": version,
            "is_supplier": is_supplier(request.user, version),
            "compliance_counts": results["compliance"]["counts"],
            "computed_at": stored["balance"].computed_at,
            **chart_context(results["stats"], results["agreement"], results["balance"]),
        },
    )


def compliance_report(request, slug: str, number: int):
    """The auditor's AI Act evidence pack: gaps first, then every point with its evidence."""
    version = _version(request, slug, number)
    stored = reports.stored_report(version, "compliance")
    if request.GET.get("format") == "json":
        response = HttpResponse(
            json.dumps(stored.result, indent=2, ensure_ascii=False), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="{slug}-v{number}-ai-act-evidence.json"'
        return response
    return render(
        request,
        "governance/quality/compliance.html",
        {
            "dataset": version.dataset,
            "version": version,
            "pack": stored.result,
            "computed_at": stored.computed_at,
        },
    )


@require_http_methods(["GET", "POST"])
def review_queue(request, slug: str, number: int):
    """The supplier's queue of images to review; accept, fix or reject from here."""
    version = _version(request, slug, number)
    if not is_supplier(request.user, version):
        raise Http404("No such dataset version")
    here = reverse("quality-review", kwargs={"slug": slug, "number": number})
    if request.method == "POST":
        try:
            _act(request, version)
        except DomainError as error:
            messages.error(request, error.detail)
        return redirect(here)
    tasks = list(ReviewTask.objects.filter(version=version).select_related("item", "reviewer", "decided_by"))
    labels: dict[int, list[Label]] = {}
    for label in Label.objects.filter(
        version=version, item__in=[t.item_id for t in tasks], is_final=True
    ).select_related("category"):
        labels.setdefault(label.item_id, []).append(label)
    # What each annotator said on each queued image: their candidate labels, grouped by annotator.
    said: dict[int, dict[str, list[Label]]] = {}
    for label in (
        Label.objects.filter(version=version, item__in=[t.item_id for t in tasks], is_final=False)
        .select_related("category", "annotator")
        .order_by("item_id", "annotator__pseudonym", "id")
    ):
        who = label.annotator.pseudonym if label.annotator_id else label.model_name or label.source
        said.setdefault(label.item_id, {}).setdefault(who, []).append(label)
    for task in tasks:
        task.final_labels = labels.get(task.item_id, [])
        task.components_list = sorted(task.components.items())
        task.annotators_said = [
            {"who": who, "labels": said_labels, "annotator_id": said_labels[0].annotator_id}
            for who, said_labels in said.get(task.item_id, {}).items()
        ]
    return render(
        request,
        "governance/quality/review.html",
        {
            "dataset": version.dataset,
            "version": version,
            "tasks": tasks,
            "open_count": sum(1 for t in tasks if t.status == ReviewTask.Status.OPEN),
            "reviewers": consensus.eligible_reviewers(version),
            "default_threshold": consensus.DEFAULT_REVIEW_THRESHOLD,
            "can_fix": not version.is_frozen,
        },
    )


def _act(request, version: DatasetVersion) -> None:
    action = request.POST.get("action")
    if action == "build":
        try:
            threshold = float(request.POST.get("threshold", consensus.DEFAULT_REVIEW_THRESHOLD))
        except ValueError:
            raise DomainError("The threshold must be a number.", code="invalid_threshold") from None
        opened = consensus.build_review_queue(version=version, threshold=threshold)
        messages.success(request, f"{opened} images added to the review queue.")
        return
    task = ReviewTask.objects.filter(version=version, pk=request.POST.get("task") or 0).first()
    if task is None:
        raise DomainError("No such review task.", code="not_found")
    reviewer = consensus.reviewer_named(version, request.POST.get("reviewer", ""))
    common = {"task": task, "user": request.user, "reviewer": reviewer, "note": request.POST.get("note", "")}
    if action == "accept":
        consensus.accept_review(**common)
    elif action == "reject":
        consensus.reject_review(**common)
    elif action == "fix":
        try:
            attributes = json.loads(request.POST.get("attributes") or "{}")
        except json.JSONDecodeError:
            raise DomainError("Attributes must be a JSON object.", code="invalid_attributes") from None
        consensus.fix_review(**common, label_uid=request.POST.get("label", ""), attributes=attributes)
    else:
        raise DomainError("Unknown action.", code="invalid_action")
    done = {"accept": "accepted", "reject": "rejected", "fix": "fixed"}[action]
    messages.success(request, f"{task.item.key}: {done}; the decision is in the ledger.")


@require_http_methods(["GET"])
def review_thumbnail(request, slug: str, number: int, task_id: int, annotator_id: int | None = None):
    """A queued image as a JPEG (at most 512 px): with its final labels drawn, or with the candidate
    labels of one annotator of the supplier; the supplier's alone, like the queue."""
    version = _version(request, slug, number)
    if not is_supplier(request.user, version):
        raise Http404("No such dataset version")
    task = ReviewTask.objects.filter(version=version, pk=task_id).select_related("item").first()
    if task is None:
        raise Http404("No such review task")
    item = task.item
    if (
        annotator_id is not None
        and not Annotator.objects.filter(
            organization_id=version.dataset.supplier_id, pk=annotator_id
        ).exists()
    ):
        raise Http404("No such annotator")
    labels = previews.label_views([item], version, candidates_of=annotator_id)[item.pk]
    data = previews.render_preview(
        image=previews.open_original(item),
        width=item.width,
        height=item.height,
        labels=labels,
        watermark=None,
    )
    response = HttpResponse(data, content_type="image/jpeg")
    # A draft's labels can change under review; the supplier's own image is never shared by a proxy.
    response["Cache-Control"] = "private, max-age=60"
    return response
