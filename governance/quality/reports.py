"""Quality reports of a version, computed together and stored: stats, agreement, balance, compliance.

A published version never changes, so its reports are computed once (by the Celery task that
``receivers`` starts after ``publish_version`` commits) and read from ``QualityReport`` afterwards; they can be
recomputed at any time (``compute_quality_reports``), e.g. after the thresholds change. A draft
still changes, so its reports are computed fresh on every read and stored as the latest.

The computing happens outside any transaction: it only reads, and a long report must not hold
locks. Only the final writes of the four rows are one transaction, so readers see one coherent set.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.models import QualityReport
from governance.quality import agreement, balance, compliance
from marketplace.catalogue import stats as catalogue_stats
from marketplace.models import DatasetVersion, Datasheet

KINDS = [k for k, _ in QualityReport.Kind.choices]
PARAMETERS = {
    "match_threshold": agreement.DEFAULT_THRESHOLD,
    "item_threshold": 0.8,
    "min_count": balance.MIN_COUNT,
    "tolerance": balance.TOLERANCE,
}


def stats_report(version: DatasetVersion, balance_result: dict) -> dict:
    """The counts a buyer reads first, with class counts per split, labels per image and object sizes."""
    return {
        "counts": catalogue_stats.compute_version_stats(version=version),
        "classes": balance_result["classes"],
        "labels_per_item": balance_result["labels_per_item"],
        "object_sizes": balance_result["object_sizes"],
    }


def compute_all(version: DatasetVersion) -> dict[str, dict]:
    """Compute the four reports of a version (nothing is stored)."""
    agreed = agreement.compute_agreement_report(
        version, threshold=PARAMETERS["match_threshold"], item_threshold=PARAMETERS["item_threshold"]
    )
    balanced = balance.compute_balance_report(
        version, agreement=agreed, min_count=PARAMETERS["min_count"], tolerance=PARAMETERS["tolerance"]
    )
    return {
        "stats": stats_report(version, balanced),
        "agreement": agreed,
        "balance": balanced,
        "compliance": compliance.build_evidence_pack(version, agreement=agreed, balance=balanced),
    }


def compute_quality_reports(*, version_id: int) -> dict[str, QualityReport]:
    """Compute and store every report of a version; safe to run again (it replaces them)."""
    version = DatasetVersion.objects.select_related("dataset").get(pk=version_id)
    results = compute_all(version)
    return _store(version, results)


def _store(version: DatasetVersion, results: dict[str, dict]) -> dict[str, QualityReport]:
    now = timezone.now()
    for attempt in range(2):
        try:
            with transaction.atomic():
                return {
                    kind: QualityReport.objects.update_or_create(
                        version=version,
                        kind=kind,
                        defaults={"result": result, "parameters": PARAMETERS, "computed_at": now},
                    )[0]
                    for kind, result in results.items()
                }
        except IntegrityError:
            # Two computations of the same version raced to create the rows; the second one updates.
            if attempt:
                raise
    raise AssertionError("unreachable")


def reports_are_current(version: DatasetVersion) -> bool:
    """A released version's reports exist, all four, computed after its publication."""
    if version.status == DatasetVersion.Status.DRAFT:
        return False
    stored = QualityReport.objects.filter(version=version)
    if stored.count() < len(KINDS):
        return False
    return not version.published_at or not stored.filter(computed_at__lt=version.published_at).exists()


def reports_for(version: DatasetVersion) -> dict[str, QualityReport]:
    """All four stored reports of a version: as stored for a released version (computed on first use),
    computed afresh for a draft, whose content may have changed since the last read."""
    if version.status != DatasetVersion.Status.DRAFT:
        stored = {r.kind: r for r in QualityReport.objects.filter(version=version)}
        if len(stored) == len(KINDS):
            return stored
    return compute_quality_reports(version_id=version.pk)


def report_for(version: DatasetVersion, kind: str) -> dict:
    """One report's result (see ``reports_for``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    return reports_for(version)[kind].result


def stored_report(version: DatasetVersion, kind: str) -> QualityReport:
    """One report's row, with when it was computed and with which parameters."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    return reports_for(version)[kind]


def croissant_rai_fields(version: DatasetVersion) -> dict:
    """The Croissant RAI properties this registry measures, for the Croissant export.

    ``rai:annotationsPerItem`` is one sentence; the others are lists of sentences (the vocabulary's
    range is Text, repeated values allowed). Computed reports are read from storage (computed now
    if missing). The sentences are written by ``compliance``. Annotator demographics are not here:
    the Croissant aggregates them from the live annotator records (``exports.documents``).
    """
    stored = reports_for(version)
    agreement, balance = stored["agreement"].result, stored["balance"].result
    pool = balance.get("annotator_pool", {})
    sheet = Datasheet.objects.filter(version=version).first()
    shares = compliance.source_share_text(pool)
    fields = {
        "rai:annotationsPerItem": compliance.annotations_per_item_text(agreement, balance),
        "rai:dataAnnotationAnalysis": [
            *compliance.annotation_analysis_texts(agreement),
            *([shares] if shares else []),
        ],
        "rai:dataBiases": compliance.bias_texts(balance, sheet.biases.strip() if sheet else ""),
    }
    tools = compliance.machine_annotation_tools_texts(pool)
    if tools:
        fields["rai:machineAnnotationTools"] = tools
    return fields
