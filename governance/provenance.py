"""Who may read provenance, and what it says: reads for the governance API and pages.

Provenance of a released version (published or deprecated) is readable by auditors, staff, the
dataset's supplier, and buyers whose organisation holds an active entitlement covering that version;
the supplier also reads its drafts. Everyone else gets a 404, so a dataset's existence does not leak.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet

from marketplace.errors import not_found
from marketplace.formats import model as fmt
from marketplace.models import Dataset, DatasetVersion, Entitlement, Label, Membership, Role, org_ids

from . import ledger
from .ledger import signing
from .ledger.events import geometries_of_events
from .models import Annotator, GuidelineVersion, LabelEvent, TreeHead

RELEASED = [DatasetVersion.Status.PUBLISHED, DatasetVersion.Status.DEPRECATED]
# Demographic groups smaller than this are never shown, even aggregated: a group of two is two people.
MIN_GROUP = 5
REVIEW_ACTIONS = ["reviewed", "accepted", "rejected", "modified", "consensus"]


# --------------------------------------------------------------------------- access


def is_auditor(user) -> bool:
    return (
        bool(user and user.is_authenticated)
        and Membership.objects.filter(user=user, role=Role.AUDITOR).exists()
    )


def readable_versions(user) -> QuerySet[DatasetVersion]:
    """Versions whose provenance (ledger, annotators, guidelines) this user may read."""
    if user is None or not user.is_authenticated:
        return DatasetVersion.objects.none()
    if user.is_staff:
        return DatasetVersion.objects.all()
    released = Q(status__in=RELEASED)
    allowed = Q(dataset__supplier_id__in=org_ids(user, Role.SUPPLIER))
    if is_auditor(user):
        allowed |= released
    entitled = Exists(
        Entitlement.objects.active()
        .filter(dataset=OuterRef("dataset"), organization_id__in=org_ids(user))
        .filter(Q(all_versions=True) | Q(versions=OuterRef("pk")))
    )
    return DatasetVersion.objects.filter(allowed | (released & entitled))


def readable_datasets(user) -> QuerySet[Dataset]:
    """Datasets with at least one version whose provenance this user may read."""
    return Dataset.objects.filter(Exists(readable_versions(user).filter(dataset=OuterRef("pk"))))


def get_readable_version(user, slug: str, number: int) -> DatasetVersion:
    try:
        return (
            readable_versions(user)
            .select_related("dataset", "dataset__supplier")
            .get(dataset__slug=slug, number=number)
        )
    except DatasetVersion.DoesNotExist:
        raise not_found("No such version") from None


def get_readable_dataset(user, slug: str) -> Dataset:
    try:
        return readable_datasets(user).select_related("supplier").get(slug=slug)
    except Dataset.DoesNotExist:
        raise not_found("No such dataset") from None


def may_read_annotators(user, dataset: Dataset) -> bool:
    """The annotator registry is for the supplier, auditors and staff, not for buyers."""
    if user.is_staff or is_auditor(user):
        return True
    return dataset.supplier_id in org_ids(user, Role.SUPPLIER)


def label_history_events(user, uid, *, dataset_slug: str | None = None) -> tuple[Dataset, list[LabelEvent]]:
    """The ledger events of one label that this user may read, oldest first; a not-found DomainError if none."""
    versions = readable_versions(user)
    labels = Label.objects.filter(uid=uid, version__in=versions)
    if dataset_slug:
        labels = labels.filter(version__dataset__slug=dataset_slug)
    newest = labels.select_related("version__dataset").order_by("-version__created_at", "-id").first()
    if newest is None:
        raise not_found("No such label")
    dataset = newest.version.dataset
    numbers = list(versions.filter(dataset=dataset).values_list("number", flat=True))
    events = list(
        LabelEvent.objects.filter(dataset=dataset, label_uid=uid)
        .filter(Q(version_number__in=numbers) | Q(version_number__isnull=True))
        .select_related("dataset")
        .order_by("seq")
    )
    return dataset, events


def readable_event(user, event_id: int) -> LabelEvent:
    """One ledger event, if the user may read the version it belongs to (or its dataset, for dataset events)."""
    event = LabelEvent.objects.select_related("dataset").filter(pk=event_id).first()
    if event is None:
        raise not_found("No such event")
    versions = readable_versions(user).filter(dataset_id=event.dataset_id)
    if event.version_number is not None:
        versions = versions.filter(number=event.version_number)
    if not versions.exists():
        raise not_found("No such event")
    return event


# --------------------------------------------------------------------------- provenance of a version


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def version_provenance(version: DatasetVersion) -> dict:
    """Who made the labels of a version, when, under which guideline versions, and how: counts and shares."""
    labels = Label.objects.filter(version=version)
    attributed = Q(annotator__isnull=False) | Q(source__in=[fmt.MODEL, fmt.CONSENSUS])
    timed = Q(made_at__isnull=False)
    in_ledger = Exists(LabelEvent.objects.filter(dataset_id=version.dataset_id, label_uid=OuterRef("uid")))
    counts = labels.aggregate(
        total=Count("id"),
        final=Count("id", filter=Q(is_final=True)),
        candidates=Count("id", filter=Q(is_final=False)),
        human=Count("id", filter=Q(source=fmt.HUMAN)),
        model=Count("id", filter=Q(source=fmt.MODEL)),
        consensus=Count("id", filter=Q(source=fmt.CONSENSUS)),
        final_human=Count("id", filter=Q(is_final=True, source=fmt.HUMAN)),
        final_model=Count("id", filter=Q(is_final=True, source=fmt.MODEL)),
        final_consensus=Count("id", filter=Q(is_final=True, source=fmt.CONSENSUS)),
        attributed=Count("id", filter=attributed),
        timed=Count("id", filter=timed),
        traced=Count("id", filter=attributed & timed),
        no_guideline=Count("id", filter=Q(guideline_version__isnull=True)),
    )
    total = counts["total"]
    in_ledger_count = labels.filter(in_ledger).count() if total else 0

    guideline_versions = _guideline_versions(labels)
    annotators = _annotators(labels)
    models = _models(labels)
    head = TreeHead.objects.filter(version=version).select_related("dataset").order_by("-tree_size").first()
    latest = (
        TreeHead.objects.filter(dataset_id=version.dataset_id)
        .select_related("dataset")
        .order_by("-tree_size")
        .first()
    )
    return {
        "dataset": version.dataset.slug,
        "version": version.number,
        "status": version.status,
        "labels": {
            "total": total,
            "final": counts["final"],
            "candidates": counts["candidates"],
            "with_annotator": counts["attributed"],
            "with_time": counts["timed"],
            "with_annotator_and_time": counts["traced"],
            "share_with_annotator_and_time": _share(counts["traced"], total),
            "without_guideline_version": counts["no_guideline"],
            "in_ledger": in_ledger_count,
            "share_in_ledger": _share(in_ledger_count, total),
        },
        "sources": {
            source: {
                "labels": counts[source],
                "share": _share(counts[source], total),
                "final": counts[f"final_{source}"],
                "final_share": _share(counts[f"final_{source}"], counts["final"]),
            }
            for source in ("human", "model", "consensus")
        },
        "guideline_versions": guideline_versions,
        "superseded_guideline_labels": sum(g["labels"] for g in guideline_versions if g["superseded"]),
        "annotators": annotators,
        "models": models,
        "ledger_events": LabelEvent.objects.filter(
            dataset_id=version.dataset_id, version_number=version.number
        ).count(),
        "tree_head": ledger.tree_head_document(head) if head else None,
        "latest_tree_head": ledger.tree_head_document(latest) if latest else None,
    }


def _guideline_versions(labels: QuerySet) -> list[dict]:
    """The guideline versions a version's labels were made under, with how many labels each."""
    used = dict(
        labels.exclude(guideline_version=None).values_list("guideline_version").annotate(n=Count("id"))
    )
    superseded_ids = set(
        GuidelineVersion.objects.superseded().filter(pk__in=used).values_list("pk", flat=True)
    )
    guideline_versions = []
    for gv in (
        GuidelineVersion.objects.filter(pk__in=used)
        .select_related("guideline")
        .order_by("guideline__title", "effective_date")
    ):
        later = gv.superseded_by() if gv.pk in superseded_ids else None
        guideline_versions.append(
            {
                "guideline": gv.guideline.title,
                "tag": gv.tag,
                "sha256": gv.sha256,
                "effective_date": gv.effective_date.isoformat(),
                "labels": used[gv.pk],
                "superseded": gv.pk in superseded_ids,
                "superseded_by": later.tag if later else None,
            }
        )
    return guideline_versions


def _annotators(labels: QuerySet) -> list[dict]:
    """Each annotator's pseudonym, role, label count and first and last labelling time."""
    return [
        {
            "pseudonym": row["annotator__pseudonym"],
            "role": row["annotator__role"],
            "labels": row["n"],
            "first_made_at": row["first"].isoformat() if row["first"] else None,
            "last_made_at": row["last"].isoformat() if row["last"] else None,
        }
        for row in labels.exclude(annotator=None)
        .values("annotator__pseudonym", "annotator__role")
        .annotate(n=Count("id"), first=Min("made_at"), last=Max("made_at"))
        .order_by("annotator__pseudonym")
    ]


def _models(labels: QuerySet) -> list[dict]:
    """Each model that made labels, by name and version, with its label count."""
    return [
        {"model_name": row["model_name"], "model_version": row["model_version"], "labels": row["n"]}
        for row in labels.filter(source=fmt.MODEL)
        .values("model_name", "model_version")
        .annotate(n=Count("id"))
        .order_by("model_name", "model_version")
    ]


def superseded_labels(version: DatasetVersion) -> QuerySet[Label]:
    """Labels of a version made under a guideline version that a later one has since replaced."""
    return (
        Label.objects.filter(version=version, guideline_version__in=GuidelineVersion.objects.superseded())
        .select_related("item", "category", "annotator", "guideline_version__guideline")
        .order_by("item__key", "id")
    )


def labels_with_provenance(version: DatasetVersion) -> QuerySet[Label]:
    """Every label of a version with who made it, when and under which guideline, for listing."""
    return (
        Label.objects.filter(version=version)
        .select_related("item", "category", "annotator", "guideline_version")
        .order_by("item__key", "id")
    )


# --------------------------------------------------------------------------- annotator registry


def dataset_annotators(dataset: Dataset) -> QuerySet[Annotator]:
    """The supplier's annotators who labelled, reviewed or decided anything in this dataset."""
    labelled = Exists(Label.objects.filter(version__dataset=dataset, annotator=OuterRef("pk")))
    actors = LabelEvent.objects.filter(dataset=dataset, action__in=REVIEW_ACTIONS).values("actor").distinct()
    return (
        Annotator.objects.filter(organization_id=dataset.supplier_id)
        .filter(labelled | Q(pseudonym__in=actors))
        .annotate(labels_in_dataset=Count("labels", filter=Q(labels__version__dataset=dataset)))
        .order_by("pseudonym")
    )


def aggregate_demographics(annotators: Iterable[Annotator], *, min_group: int = MIN_GROUP) -> dict:
    """Self-declared demographics, counted per attribute; groups under ``min_group`` people are never shown."""
    annotators = list(annotators)
    declared = [a.demographics for a in annotators if isinstance(a.demographics, dict) and a.demographics]
    result = {
        "annotators": len(annotators),
        "declared": len(declared),
        "min_group": min_group,
        "attributes": {},
    }
    if len(declared) < min_group:
        result["note"] = f"Fewer than {min_group} annotators declared demographics: nothing is shown."
        return result
    keys = sorted({key for d in declared for key in d})
    for key in keys:
        counts = Counter(str(d[key]) for d in declared if key in d)
        shown = {value: n for value, n in sorted(counts.items()) if n >= min_group}
        small = sum(n for n in counts.values() if n < min_group)
        if small:
            shown["(groups under the minimum size)"] = small if small >= min_group else f"<{min_group}"
        result["attributes"][key] = shown
    return result


VERIFY_HINT = (
    "Save public_key as key.pem and this answer as history.json, then run "
    "python verify_offline.py --key key.pem --history history.json (every event, its proof and the "
    "geometries it binds); or one event's {tree_head, event, proof} as bundle.json and "
    "python verify_offline.py --key key.pem --bundle bundle.json"
)


def history_payload(dataset, events) -> dict:
    """A label's events, each with its inclusion proof against the latest signed tree head."""
    head = ledger.latest_tree_head(dataset)
    if head is not None:
        proofs = ledger.proofs_for(events, head=head)
    else:
        proofs = [(None, "no tree head has been signed for this dataset yet")] * len(events)
    return {
        "dataset": dataset.slug,
        "public_key": signing.public_key_pem(),
        "key_id": signing.key_id(),
        "tree_head": ledger.tree_head_document(head) if head else None,
        "events": [
            {"id": event.pk, "event": ledger.event_document(event), "proof": proof, "proof_error": error}
            for event, (proof, error) in zip(events, proofs, strict=True)
        ],
        # The geometries the events bind by hash (ledger.events' rule), from the label's rows.
        "geometries": geometries_of_events(events),
        "how_to_verify": VERIFY_HINT,
    }
