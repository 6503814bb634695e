"""Celery tasks: thin wrappers that take ids and call the services. Safe to run twice."""

from celery import shared_task
from django.db.utils import InterfaceError, OperationalError

from . import catalogue, ingest


@shared_task(acks_late=True)
def refresh_version_stats(version_id: int) -> dict:
    """Recompute a version's cached statistics (idempotent: the result depends only on the rows)."""
    return catalogue.refresh_version_stats(version_id=version_id)


@shared_task(
    acks_late=True,  # re-running is safe: an ingested delivery is a no-op, a half-done one finishes
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def ingest_delivery(delivery_id: int) -> dict:
    """Validate a delivery and write it as a new draft version (marketplace.ingest.ingest_delivery)."""
    result = ingest.ingest_delivery(delivery_id=delivery_id)
    return {"delivery": result.delivery_id, "status": result.status, "version": result.version_number}


@shared_task(
    acks_late=True,  # re-running is safe: a notification is emailed once, then marked
    autoretry_for=(OSError,),  # SMTP errors are OSErrors; the unsent ones are retried
    retry_backoff=True,
    max_retries=5,
)
def send_notification_emails_task(notification_ids: list[int]) -> int:
    """Email notifications after the commit that created them (marketplace.notifications)."""
    from . import notifications

    return notifications.send_notification_emails(notification_ids=notification_ids)


@shared_task(
    acks_late=True,  # re-running is safe: a ready export returns at once, anything else is rebuilt
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def run_export(export_id: int) -> dict:
    """Build and store one export (marketplace.exports.run_export)."""
    from . import exports

    export = exports.run_export(export_id=export_id)
    return {"export": export.pk, "status": export.status}


@shared_task(acks_late=True)  # re-running is safe: an expired archive is skipped
def expire_failed_deliveries() -> int:
    """Delete the archives of long-failed deliveries (marketplace.retention); run daily by beat."""
    from . import retention

    return retention.expire_failed_archives()
