"""Celery task of deliveries: a thin wrapper that takes an id and calls the service. Safe to run twice."""

from celery import shared_task
from django.db.utils import InterfaceError, OperationalError

from . import retention, service, sweeping


@shared_task(
    name="marketplace.tasks.ingest_delivery",  # the name queued messages carry: never change it
    acks_late=True,  # re-running is safe: an ingested delivery is a no-op, a half-done one finishes
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def ingest_delivery(delivery_id: int) -> dict:
    """Validate a delivery and write it as a new draft version (deliveries.service.ingest_delivery)."""
    result = service.ingest_delivery(delivery_id=delivery_id)
    return {"delivery": result.delivery_id, "status": result.status, "version": result.version_number}


@shared_task(
    name="marketplace.tasks.expire_failed_deliveries",  # the beat schedule names it so
    acks_late=True,  # re-running is safe: an expired archive is skipped
)
def expire_failed_deliveries() -> int:
    """Delete the archives of long-failed deliveries (deliveries.retention); run daily by beat."""
    return retention.expire_failed_archives()


@shared_task(name="marketplace.tasks.sweep_orphan_blobs", acks_late=True)  # idempotent
def sweep_orphan_blobs() -> dict:
    """Delete blobs no row refers to, past the grace period (deliveries.sweeping); run by beat."""
    return sweeping.sweep_orphan_blobs()


def enqueue_ingest(delivery_id: int) -> None:
    ingest_delivery.delay(delivery_id)


@shared_task(name="marketplace.tasks.sweep_stuck_deliveries", acks_late=True)  # idempotent
def sweep_stuck_deliveries() -> dict:
    """Re-queue (once) or fail deliveries stuck in pending/validating (deliveries.sweeping)."""
    return sweeping.sweep_stuck_deliveries(enqueue=enqueue_ingest)
