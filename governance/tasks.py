"""Celery tasks of governance: thin wrappers that take ids and call the services. Safe to run twice."""

from celery import shared_task
from django.db.utils import InterfaceError, OperationalError

from governance import reports
from marketplace.models import DatasetVersion


@shared_task(
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


@shared_task(
    acks_late=True,  # a chunk re-run records the same result; a recorded one is skipped
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def verify_ledger_chunk(job_id: int, index: int, lo: int, hi: int) -> dict:
    """Verify events lo..hi-1 of a verification job and record the result on the job row."""
    from governance import verify_chain

    try:
        verify_chain.run_chunk(job_id=job_id, index=index, lo=lo, hi=hi)
    except (OperationalError, InterfaceError):
        raise  # retried
    except Exception as error:
        verify_chain.fail_verification(job_id=job_id, reason=f"chunk {index}: {type(error).__name__}")
        raise
    return {"job": job_id, "chunk": index}
