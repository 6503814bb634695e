"""Celery tasks: thin wrappers that take ids and call the services. Safe to run twice."""

from celery import shared_task

from . import catalogue
from .deliveries.tasks import ingest_delivery  # noqa: F401  (registered under its old name)
from .exports.tasks import run_export  # noqa: F401


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
