"""Files before rows, by fault injection: a run killed anywhere leaves no half-stored version.

"Killed" is a BaseException raised at the chosen point: like SIGKILL, no ``except Exception`` of
the service sees it, so the delivery is left exactly as a dead worker would leave it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from marketplace.blobs import blob_key
from marketplace.deliveries import service, sweeping, write
from marketplace.models import DatasetVersion, Delivery, Item

from . import ingest_support as support
from .ingest_support import coco_files, make_delivery, row_counts, storage_files

media, run = support.media, support.run  # fixtures

pytestmark = pytest.mark.django_db


class Killed(BaseException):
    """The process died here."""


def _blobs(media) -> set[str]:
    return {p for p in storage_files(media) if p.startswith("blobs/")}


def _referenced() -> set[str]:
    return set(Item.objects.values_list("storage_key", flat=True))


def _kill_before_commit(monkeypatch):
    """Die inside the write transaction, after every row is written but before the commit."""
    real = write.catalogue_stats.compute_version_stats

    def die(**kwargs):
        real(**kwargs)
        raise Killed

    monkeypatch.setattr(write.catalogue_stats, "compute_version_stats", die)


def test_killed_between_the_files_and_the_commit_leaves_orphan_blobs_only(dataset, media, monkeypatch):
    delivery = make_delivery(dataset, coco_files(n_images=3))
    rows = row_counts()
    _kill_before_commit(monkeypatch)

    with pytest.raises(Killed):
        service.ingest_delivery(delivery_id=delivery.pk)

    # No version, no item, no label, no ledger event: the transaction never committed.
    assert row_counts() == rows
    assert not DatasetVersion.objects.filter(dataset=dataset).exists()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.VALIDATING and delivery.version_id is None
    # The images did reach storage first: three blobs that nothing refers to.
    orphans = _blobs(media)
    assert len(orphans) == 3 and not orphans & _referenced()

    # The next run (the broker's re-delivery, or the stuck sweeper's re-queue) completes it.
    monkeypatch.undo()
    result = service.ingest_delivery(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert result.ok and delivery.status == Delivery.Status.INGESTED and result.version_number == 1
    assert _referenced() == orphans == _blobs(media)  # the same bytes, reused: nothing is missing


def test_killed_right_after_the_commit_leaves_a_complete_version(dataset, media, monkeypatch):
    delivery = make_delivery(dataset, coco_files(n_images=3))
    real = service.write_version

    def commit_then_die(**kwargs):
        real(**kwargs)
        raise Killed

    monkeypatch.setattr(service, "write_version", commit_then_die)
    with pytest.raises(Killed):
        service.ingest_delivery(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.INGESTED and delivery.progress == 100
    version = delivery.version
    keys = set(version.items.values_list("storage_key", flat=True))
    assert len(keys) == 3 and all(default_storage.exists(k) for k in keys)
    assert _blobs(media) == keys

    monkeypatch.undo()
    rows = row_counts()
    again = service.ingest_delivery(delivery_id=delivery.pk)  # a re-delivered task: nothing to do
    assert again.ok and not again.created and row_counts() == rows


def test_a_rolled_back_write_fails_the_delivery_and_the_sweep_removes_its_blobs(dataset, media, monkeypatch):
    delivery = make_delivery(dataset, coco_files(n_images=2))

    def broken(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(write.catalogue_stats, "compute_version_stats", broken)
    result = service.ingest_delivery(delivery_id=delivery.pk)

    assert result.status == Delivery.Status.FAILED and result.problems[0]["code"] == "internal_error"
    assert not DatasetVersion.objects.filter(dataset=dataset).exists()
    orphans = _blobs(media)
    assert len(orphans) == 2

    # Young blobs are kept (they may belong to a run that has not committed yet)...
    assert sweeping.sweep_orphan_blobs()["deleted"] == 0 and _blobs(media) == orphans
    # ...and swept once older than the grace period.
    later = timezone.now() + timedelta(seconds=sweeping.settings.BLOB_ORPHAN_GRACE_SECONDS + 60)
    assert sweeping.sweep_orphan_blobs(now=later)["deleted"] == 2
    assert _blobs(media) == set()


def test_the_sweep_keeps_every_referenced_blob_and_waits_for_deliveries_in_flight(dataset, media, run):
    done = run(make_delivery(dataset, coco_files(n_images=2)))
    assert done.ok
    referenced = _referenced()
    orphan = blob_key("ab" * 32, ".jpg")
    default_storage.save(orphan, ContentFile(b"not referenced"))
    pending = make_delivery(dataset, coco_files(n_images=1))

    skipped = sweeping.sweep_orphan_blobs(grace_seconds=0)
    assert skipped["skipped"] and default_storage.exists(orphan)

    Delivery.objects.filter(pk=pending.pk).update(status=Delivery.Status.FAILED)
    out = support_call("sweep_orphan_blobs", "--grace-seconds", "0")
    assert "1 orphan blob(s) deleted, 2 kept" in out
    assert _blobs(media) == referenced
    assert all(default_storage.exists(k) for k in referenced)


def support_call(*args) -> str:
    import io

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --------------------------------------------------------------------------- stuck deliveries


def test_a_delivery_that_lost_its_task_is_requeued_once_then_failed_with_a_reason(
    dataset, media, settings, django_capture_on_commit_callbacks
):
    stuck = make_delivery(dataset, coco_files(n_images=1))
    fresh = make_delivery(dataset, coco_files(n_images=1))
    long_ago = timezone.now() - timedelta(seconds=settings.DELIVERY_STUCK_AFTER + 60)
    Delivery.objects.filter(pk=stuck.pk).update(
        status=Delivery.Status.VALIDATING, progress=95, created_at=long_ago, touched_at=long_ago
    )
    queued: list[int] = []

    with django_capture_on_commit_callbacks(execute=True):
        first = sweeping.sweep_stuck_deliveries(enqueue=queued.append)

    assert first == {"requeued": [stuck.pk], "failed": []} and queued == [stuck.pk]
    stuck.refresh_from_db()
    assert stuck.status == Delivery.Status.PENDING and stuck.report["requeued_at"]
    fresh.refresh_from_db()
    assert fresh.status == Delivery.Status.PENDING and "requeued_at" not in (fresh.report or {})

    # The re-queued task never ran either: the next sweep past the timeout gives it up.
    later = timezone.now() + timedelta(seconds=settings.DELIVERY_STUCK_AFTER + 60)
    with django_capture_on_commit_callbacks(execute=True):
        second = sweeping.sweep_stuck_deliveries(enqueue=queued.append, now=later)
    # (by then the other one, never started either, is stuck too: its first re-queue)
    assert second == {"requeued": [fresh.pk], "failed": [stuck.pk]} and queued == [stuck.pk, fresh.pk]
    stuck.refresh_from_db()
    assert stuck.status == Delivery.Status.FAILED and stuck.finished_at is not None
    assert [p["code"] for p in stuck.report["problems"]] == ["stuck"]


def test_a_requeued_delivery_ingests_when_its_task_runs(dataset, media, run, settings):
    stuck = make_delivery(dataset, coco_files(n_images=2))
    long_ago = timezone.now() - timedelta(seconds=settings.DELIVERY_STUCK_AFTER + 60)
    Delivery.objects.filter(pk=stuck.pk).update(status=Delivery.Status.VALIDATING, touched_at=long_ago)
    queued: list[int] = []
    sweeping.sweep_stuck_deliveries(enqueue=queued.append)  # on_commit: the test's transaction
    stuck.refresh_from_db()
    result = run(stuck)
    assert result.ok and result.version_number == 1
    assert _referenced() == _blobs(media)


def test_a_storing_error_while_the_rows_are_written_rolls_them_back(dataset, media, monkeypatch):
    """Images are stored in a thread alongside the write; its error reaches the transaction before the commit."""
    delivery = make_delivery(dataset, coco_files(n_images=3))
    rows = row_counts()

    def full_disk(delivery, pairs, source=None):
        next(iter(pairs))  # reads the item spool through its own file position, as the real one
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(write, "_copy_files", full_disk)
    result = service.ingest_delivery(delivery_id=delivery.pk)

    assert result.status == Delivery.Status.FAILED and result.problems[0]["code"] == "internal_error"
    assert row_counts() == rows and not DatasetVersion.objects.filter(dataset=dataset).exists()


def test_the_commit_waits_for_the_last_file(dataset, media, monkeypatch):
    """Files before rows with the overlap: the rows are written first, the commit only after every file."""
    import threading

    delivery = make_delivery(dataset, coco_files(n_images=3))
    rows_written, release = threading.Event(), threading.Event()
    stored_at_commit: list[set[str]] = []
    real_stats, real_copy = write.catalogue_stats.compute_version_stats, write._copy_files

    def stats_then_release(**kwargs):
        rows_written.set()  # every row is written; the store thread may go on now
        release.set()
        return real_stats(**kwargs)

    def copy_after_the_rows(delivery, pairs, source=None):
        assert rows_written.wait(30)  # the store can only finish once the rows are in
        release.wait(30)
        return real_copy(delivery, pairs, source)

    real_save = Delivery.save

    def save(self, *args, **kwargs):
        if kwargs.get("update_fields") and "version" in kwargs["update_fields"]:
            stored_at_commit.append(_blobs(media))
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(write.catalogue_stats, "compute_version_stats", stats_then_release)
    monkeypatch.setattr(write, "_copy_files", copy_after_the_rows)
    monkeypatch.setattr(Delivery, "save", save)
    result = service.ingest_delivery(delivery_id=delivery.pk)

    assert result.ok
    keys = set(Item.objects.filter(version__dataset=dataset).values_list("storage_key", flat=True))
    assert len(keys) == 3 and stored_at_commit == [keys]  # all three stored before the delivery committed


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY in a helper thread: PostgreSQL")
def test_a_copy_refused_by_the_database_in_the_helper_thread_fails_the_delivery_and_writes_nothing(
    dataset, media, monkeypatch
):
    """Labels and events are COPYed by a helper thread (ledger.copying): its failure is the ingest's.

    Small batches so that the caller goes on building while the refused statement runs; the refusal
    is the server's own (a duplicated label row breaks the unique uid per version).
    """
    from governance.ledger import chain, copying
    from marketplace.deliveries import plan as delivery_plan

    monkeypatch.setattr(delivery_plan, "SPOOL_BATCH", 3)
    monkeypatch.setattr(chain, "BATCH_SIZE", 4)
    delivery = make_delivery(dataset, coco_files(n_images=30))
    rows = row_counts()
    real_copy, label_copies = copying._copy, []

    def duplicate_a_row_of_the_third_label_batch(raw, sql, text):
        if "marketplace_label" in sql:
            label_copies.append(sql)
            if len(label_copies) == 3:
                text += text.splitlines(keepends=True)[0]
        return real_copy(raw, sql, text)

    monkeypatch.setattr(copying, "_copy", duplicate_a_row_of_the_third_label_batch)
    result = service.ingest_delivery(delivery_id=delivery.pk)

    assert len(label_copies) >= 3
    assert result.status == Delivery.Status.FAILED and result.problems[0]["code"] == "internal_error"
    assert row_counts() == rows and not DatasetVersion.objects.filter(dataset=dataset).exists()
