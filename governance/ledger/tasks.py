"""Celery tasks of the ledger: verification chunks. Thin wrappers that take ids; safe to run twice.

``start_verification`` is the entry point that enqueues (the API calls it): the service
(``verify_chain.create_verification``) only writes the job row and plans the chunks.
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import shared_task
from django.db import transaction
from django.db.utils import InterfaceError, OperationalError

from marketplace.models import Dataset

from . import verify_chain


@shared_task(
    name="governance.tasks.verify_ledger_chunk",
    acks_late=True,  # a chunk re-run records the same result; a recorded one is skipped
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def verify_ledger_chunk(job_id: int, index: int, lo: int, hi: int) -> dict:
    """Verify events lo..hi-1 of a verification job and record the result on the job row."""
    try:
        verify_chain.run_chunk(job_id=job_id, index=index, lo=lo, hi=hi)
    except (OperationalError, InterfaceError):
        raise  # retried
    except Exception as error:
        verify_chain.fail_verification(job_id=job_id, reason=f"chunk {index}: {type(error).__name__}")
        raise
    return {"job": job_id, "chunk": index}


def start_verification(
    *, dataset: Dataset, user=None, trusted_heads: Iterable[dict] = (), parts: int | None = None
):
    """Create a verification job and enqueue its chunk tasks after the commit; return the job.

    With a broker, each chunk is a Celery task on any worker; without one, tasks run eagerly in-process.
    """
    job, plan = verify_chain.create_verification(
        dataset=dataset, user=user, trusted_heads=trusted_heads, parts=parts
    )
    if not plan:
        transaction.on_commit(lambda: verify_chain.finish_verification(job_id=job.pk))
        return job
    for index, (lo, hi) in enumerate(plan):
        transaction.on_commit(lambda i=index, lo=lo, hi=hi: verify_ledger_chunk.delay(job.pk, i, lo, hi))
    return job
