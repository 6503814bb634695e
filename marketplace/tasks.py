"""Celery tasks: thin wrappers that take ids and call the services. Safe to run twice."""

from celery import shared_task
from django.db.utils import InterfaceError, OperationalError

from . import catalogue
from .deliveries.tasks import ingest_delivery  # noqa: F401  (registered under its old name)


@shared_task(acks_late=True)
def refresh_version_stats(version_id: int) -> dict:
    """Recompute a version's cached statistics (idempotent: the result depends only on the rows)."""
    return catalogue.refresh_version_stats(version_id=version_id)


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
