"""Celery task of deliveries: a thin wrapper that takes an id and calls the service. Safe to run twice."""

from celery import shared_task
from django.db.utils import InterfaceError, OperationalError

from . import retention, service


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
