"""Celery tasks: thin wrappers that take ids and call the services. Safe to run twice."""

from celery import shared_task

from . import catalogue
from .deliveries.tasks import ingest_delivery  # noqa: F401  (registered under its old name)
from .exports.tasks import run_export  # noqa: F401
from .notifications.tasks import send_notification_emails_task  # noqa: F401


@shared_task(acks_late=True)
def refresh_version_stats(version_id: int) -> dict:
    """Recompute a version's cached statistics (idempotent: the result depends only on the rows)."""
    return catalogue.refresh_version_stats(version_id=version_id)
