"""Failed deliveries keep their archive as evidence for a while, then the archive expires.

A refused archive stays so that the supplier (and support) can see exactly what was sent;
after ``DELIVERY_FAILED_RETENTION_DAYS`` its file is deleted from storage and the delivery
row keeps its report, with the date the archive expired. Run daily by Celery beat
(``expire-failed-deliveries``) or ``manage.py expire_failed_deliveries``; re-running is harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import Delivery

logger = logging.getLogger(__name__)


def expire_failed_archives(*, now=None, days: int | None = None) -> int:
    """Delete the archives of deliveries that failed more than ``days`` ago; return how many."""
    now = now or timezone.now()
    days = settings.DELIVERY_FAILED_RETENTION_DAYS if days is None else days
    cutoff = now - timedelta(days=days)
    stale = (
        Delivery.objects.filter(status=Delivery.Status.FAILED)
        .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
        .exclude(archive="")
    )
    expired = 0
    for delivery in stale.iterator():
        name = delivery.archive.name
        # The file first: if the process dies here, the row still names a missing file and the
        # next run clears it (storage.delete of a missing name is a no-op).
        delivery.archive.storage.delete(name)
        report = dict(delivery.report or {})
        report["archive_expired_at"] = now.isoformat()
        Delivery.objects.filter(pk=delivery.pk).update(archive="", report=report)
        expired += 1
        logger.info("delivery %s: failed archive %s expired", delivery.pk, name)
    return expired
