"""Celery task of the catalogue: a thin wrapper that takes an id and calls the service."""

from celery import shared_task

from . import stats


@shared_task(name="marketplace.tasks.refresh_version_stats", acks_late=True)  # the name queued messages carry
def refresh_version_stats(version_id: int) -> dict:
    """Recompute a version's cached statistics (idempotent: the result depends only on the rows)."""
    return stats.refresh_version_stats(version_id=version_id)
