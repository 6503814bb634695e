"""The version lifecycle in the supplier's workspace: start a draft, check it, publish it, deprecate it.

Every write a supplier makes outside a delivery goes through a function here; the API
(``marketplace.api.workspace``) and the pages (``marketplace.views.workspace``) only parse,
check access with :func:`marketplace.visibility.access_dataset` and call them.

How versions move: a dataset starts with an empty draft v1 that holds its datasheet and
schema; an ingested delivery fills the newest version when it is such an empty draft, and
otherwise makes the next version (copying the datasheet and schema of the version before it); :func:`publish_draft` freezes the newest draft once
:func:`check_publishable` has nothing to say, and :func:`deprecate_version` retires a release
with a reason buyers see. A published version never changes: a fix is a new version
(:func:`start_draft`).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from governance import ledger
from marketplace.catalogue import publication as catalogue_publication
from marketplace.catalogue import stats as catalogue_stats

from ..errors import DomainError, ErrorCode
from ..models import (
    AnnotationSchema,
    AttributeSpec,
    Category,
    Dataset,
    DatasetVersion,
    Datasheet,
    Delivery,
    Export,
    Item,
    Label,
    Offer,
)
from ..notifications import service as notifications
from .editing import DATASHEET_FIELDS, InvalidInput, NotPublishable, datasheet_gaps, latest_version
from .schema import schema_as_dict

# --------------------------------------------------------------------------- versions


@transaction.atomic
def start_draft(*, dataset: Dataset) -> DatasetVersion:
    """The next version as an empty draft with the latest version's datasheet and schema.

    Idempotent: when the newest version is already a draft, that draft is returned.
    """
    # Lock the dataset like ingest does: two writers must not both take number N + 1.
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    previous = latest_version(dataset)
    if previous is not None and previous.status == DatasetVersion.Status.DRAFT:
        return previous
    version = DatasetVersion.objects.create(dataset=dataset, number=(previous.number + 1) if previous else 1)
    old_sheet = Datasheet.objects.filter(version=previous).first() if previous else None
    Datasheet.objects.create(
        version=version, **{f: getattr(old_sheet, f) for f in DATASHEET_FIELDS} if old_sheet else {}
    )
    old_schema = AnnotationSchema.objects.filter(version=previous).first() if previous else None
    schema = AnnotationSchema.objects.create(
        version=version, description=old_schema.description if old_schema else ""
    )
    if old_schema is not None:
        data = schema_as_dict(previous)
        Category.objects.bulk_create([Category(schema=schema, **c) for c in data["categories"]])
        AttributeSpec.objects.bulk_create([AttributeSpec(schema=schema, **a) for a in data["attributes"]])
    return version


@transaction.atomic
def delete_draft(*, version: DatasetVersion) -> int:
    """Delete an abandoned draft with its items, labels, datasheet, schema and draft exports.

    Only a draft: a published or deprecated version is evidence and never goes away. The ledger
    keeps the draft's label events (it is append-only) and the geometries they bind that no other
    version holds (``ledger.hold_geometries``); its deliveries keep their reports, with
    ``version_deleted`` set. Image files shared with other versions stay; the draft's own become
    unreferenced blobs, removed by ``manage.py sweep_orphan_blobs``. Returns the draft's number.
    Access (the supplier's own datasets only) is the caller's: ``visibility.access_dataset``.
    """
    Dataset.objects.select_for_update().get(pk=version.dataset_id)  # as ingest and start_draft do
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != DatasetVersion.Status.DRAFT:
        raise DomainError(
            f"Version {version.number} is {version.get_status_display().lower()}: only a draft can be deleted.",
            code=ErrorCode.NOT_DRAFT,
            status_code=409,
        )
    if Delivery.objects.filter(
        dataset_id=version.dataset_id, status__in=(Delivery.Status.PENDING, Delivery.Status.VALIDATING)
    ).exists():
        raise DomainError(
            "A delivery of this dataset is being ingested: wait until it is done, then delete the draft.",
            code=ErrorCode.DELIVERY_IN_PROGRESS,
            status_code=409,
        )
    number = version.number
    for delivery in Delivery.objects.filter(version=version):
        report = dict(delivery.report or {})
        report["version_deleted"] = number
        Delivery.objects.filter(pk=delivery.pk).update(report=report)
    # The label events stay and bind each geometry by hash: keep the geometries only these rows hold.
    ledger.hold_geometries(version)
    # Labels first in one statement (nothing refers to a label): a million of them must not be
    # loaded by the cascade of version.delete().
    Label.objects.filter(version=version).delete()
    version.delete()
    return number


def check_publishable(version: DatasetVersion) -> list[str]:
    """What a draft still needs before it can be released, one sentence each; empty when ready."""
    version = DatasetVersion.objects.select_related("dataset").get(pk=version.pk)
    if version.status != DatasetVersion.Status.DRAFT:
        return [f"Version {version.number} is already {version.get_status_display().lower()}."]
    missing = []
    newer = version.dataset.versions.filter(number__gt=version.number).order_by("-number").first()
    if newer is not None:
        missing.append(f"Version {newer.number} is newer: publish that one, or start a new draft.")
    missing.extend(datasheet_gaps(version))
    if not Offer.objects.filter(dataset_id=version.dataset_id, active=True).exists():
        missing.append("Offers: add at least one active license offer, so buyers can get the data.")
    if not Delivery.objects.filter(version=version, status=Delivery.Status.INGESTED).exists():
        missing.append("Deliveries: upload a delivery that ingests into this version.")
    elif not Item.objects.filter(version=version).exists():
        missing.append("Content: the version holds no images.")
    return missing


def ensure_publishable(version: DatasetVersion) -> None:
    """Raise :class:`NotPublishable` with the list of gaps, if there are any."""
    missing = check_publishable(version)
    if missing:
        raise NotPublishable(missing)


def _empty_drafts_before(version: DatasetVersion):
    """Older drafts that never held content: vessels whose datasheet and schema a delivery copied on."""
    return DatasetVersion.objects.filter(
        dataset_id=version.dataset_id, number__lt=version.number, status=DatasetVersion.Status.DRAFT
    ).filter(
        ~Exists(Item.objects.filter(version=OuterRef("pk"))),
        ~Exists(Delivery.objects.filter(version=OuterRef("pk"))),
        ~Exists(Export.objects.filter(version=OuterRef("pk"))),
    )


def publish_draft(*, version: DatasetVersion, release_notes: str, user=None) -> DatasetVersion:
    """Release a draft after :func:`check_publishable`, then tell entitled buyers and requesters."""
    release_notes = (release_notes or "").strip()
    if version.status != DatasetVersion.Status.DRAFT:
        raise DomainError(
            f"Version {version.number} is already {version.status}.", code="not_draft", status_code=409
        )
    with transaction.atomic():
        if not release_notes:
            missing = check_publishable(version)
            raise NotPublishable([*missing, "Release notes: say what changed in this version."])
        try:
            version = catalogue_publication.publish_version(
                version=version, release_notes=release_notes, check=ensure_publishable
            )
        except ValueError as exc:  # published by a concurrent request a moment ago
            raise DomainError(str(exc), code="not_draft", status_code=409) from exc
        for empty in _empty_drafts_before(version):
            empty.delete()
        notifications.notify_new_version(version=version)
    return version


def deprecate_version(*, version: DatasetVersion, reason: str, user=None) -> DatasetVersion:
    """Retire a published version with a reason buyers see; it stays downloadable by those entitled.

    ``user`` is who asked (the caller checked they supply the dataset); the ledger names the
    organisation, not the person.
    """

    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput({"reason": ["Tell buyers why this version is retired."]}, code="reason_required")
    with transaction.atomic():
        version = (
            DatasetVersion.objects.select_for_update().select_related("dataset__supplier").get(pk=version.pk)
        )
        if version.status != DatasetVersion.Status.PUBLISHED:
            raise DomainError(
                f"Only a published version can be deprecated; version {version.number} is {version.status}.",
                code="not_published",
                status_code=409,
            )
        version.status = DatasetVersion.Status.DEPRECATED
        version.deprecated_at = timezone.now()
        version.deprecation_reason = reason
        version.save(update_fields=["status", "deprecated_at", "deprecation_reason"])
        _record_deprecation(version)
        notifications.notify_deprecation(version=version)
    return version


def _record_deprecation(version: DatasetVersion) -> None:
    ledger.record_dataset_event(
        dataset=version.dataset,
        action="version_deprecated",
        # The organisation, like the publication event: usernames may be personal data, and this log
        # can never be edited or erased.
        actor=f"org:{version.dataset.supplier.slug}",
        payload={"reason": version.deprecation_reason},
        version_number=version.number,
        occurred_at=version.deprecated_at,
    )


def version_counts(version: DatasetVersion) -> dict:
    """Counts for the review page: cached statistics when they are there, else computed now."""
    if version.stats and "items" in version.stats:
        return version.stats
    return catalogue_stats.compute_version_stats(version=version)
