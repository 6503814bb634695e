"""Celery tasks of governance: thin wrappers that take ids and call the services. Safe to run twice."""

from celery import shared_task
from django.db.utils import InterfaceError, OperationalError

from governance.quality import reports
from marketplace.models import DatasetVersion


@shared_task(
    name="governance.tasks.compute_quality_reports",  # its name before the move: queued messages resolve
    acks_late=True,  # re-running only recomputes the same reports
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def compute_quality_reports(version_id: int, force: bool = False) -> dict:
    """Compute and store the stats, agreement, balance and compliance reports of a version."""
    version = DatasetVersion.objects.filter(pk=version_id).first()
    if version is None:
        return {"version": version_id, "skipped": "no such version"}
    if not force and reports.reports_are_current(version):
        return {"version": version_id, "skipped": "reports are current"}
    stored = reports.compute_quality_reports(version_id=version_id)
    return {"version": version_id, "computed": sorted(stored)}
