"""Celery tasks: thin wrappers that take ids and call the services. Safe to run twice."""

from celery import shared_task

from . import catalogue


@shared_task(acks_late=True)
def refresh_version_stats(version_id: int) -> dict:
    """Recompute a version's cached statistics (idempotent: the result depends only on the rows)."""
    return catalogue.refresh_version_stats(version_id=version_id)
