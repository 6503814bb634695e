"""Publishing a version: freeze it, hash it, list the dataset, record and sign it in the ledger."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from governance import ledger

from ..models import Dataset, DatasetVersion
from ..signals import version_published
from .content_files import compute_and_store_content
from .stats import compute_version_stats


@transaction.atomic
def publish_version(
    *,
    version: DatasetVersion,
    release_notes: str = "",
    at=None,
    check: Callable[[DatasetVersion], None] | None = None,
) -> DatasetVersion:
    """Freeze a draft: hash its content, cache its statistics, list the dataset.

    ``check`` runs under the row lock before anything changes and may refuse by raising (the
    workspace passes its publishability check, so the answer holds when the release happens).
    """
    # Lock the row: two concurrent publishes of one draft must not both pass the status check.
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != DatasetVersion.Status.DRAFT:
        raise ValueError(f"{version} is already {version.status}")
    # A supplier's release needs its datasheet, an offer and an ingested delivery (the workspace's
    # check). None by default: the demo and test fixtures seed versions without deliveries.
    if check is not None:
        check(version)
    # Content rule 2 (governance.ledger.content): every part a buyer and an auditor rely on, with a row
    # reference so that `ledger verify` can name a changed row. stats.compute_content_hash is rule 1.
    # Each part's content/<part>.jsonl is stored too, deflated, as exports copy it (content_files): its
    # blobs are written before this transaction commits, the rows recording them inside it.
    content = compute_and_store_content(version=version, record=True)
    version.content_hash = content["content_hash"]
    version.stats = compute_version_stats(version=version)
    version.release_notes = release_notes or version.release_notes
    version.status = DatasetVersion.Status.PUBLISHED
    version.published_at = at or timezone.now()
    version.save()
    Dataset.objects.filter(pk=version.dataset_id, status=Dataset.Status.DRAFT).update(
        status=Dataset.Status.LISTED
    )
    # --- governance ledger: the publication is an event, and the tree head signed over it (and every
    # event before it) is what auditors verify labels against. Same transaction: no release without it.
    ledger.record_dataset_event(
        dataset=version.dataset,
        action="version_published",
        actor=f"org:{version.dataset.supplier.slug}",
        payload={
            "content_hash": version.content_hash,
            "content_rule": content["content_rule"],
            "parts": content["parts"],
            "release_notes": version.release_notes,
        },
        version_number=version.number,
        occurred_at=version.published_at,
    )
    # A release dated in the past (the demo's history) is signed at its own date.
    ledger.sign_tree_head(dataset=version.dataset, version=version, at=at)
    # --- end governance ledger
    # Governance's quality reports (stats, agreement, balance, compliance) react to the signal.
    # Sent after the commit, so a worker sees the published rows; robust, so a failing receiver
    # never fails a release that is already committed (the reports can be recomputed any time).
    version_id = version.pk
    transaction.on_commit(
        lambda: version_published.send(sender=DatasetVersion, version_id=version_id), robust=True
    )
    return version
