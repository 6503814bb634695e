"""Every Celery task of the marketplace, for Celery's autodiscovery (which imports ``<app>.tasks``).

Each task lives with its capability (``deliveries/tasks.py``, ...) and keeps the name it had when
it was defined here, so messages already queued still resolve.
"""

from .catalogue.tasks import refresh_version_stats
from .deliveries.tasks import (
    expire_failed_deliveries,
    ingest_delivery,
    sweep_orphan_blobs,
    sweep_stuck_deliveries,
)
from .exports.tasks import run_export
from .notifications.tasks import send_notification_emails_task

__all__ = [
    "expire_failed_deliveries",
    "ingest_delivery",
    "refresh_version_stats",
    "run_export",
    "send_notification_emails_task",
    "sweep_orphan_blobs",
    "sweep_stuck_deliveries",
]
