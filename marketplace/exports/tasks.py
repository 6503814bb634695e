"""Celery task of exports, and the entry point interfaces use to ask for an export."""

from celery import shared_task
from django.db import transaction
from django.db.utils import InterfaceError, OperationalError

from ..models import DatasetVersion, Export
from . import service


@shared_task(
    name="marketplace.tasks.run_export",  # the name queued messages carry: never change it
    acks_late=True,  # re-running is safe: a ready export returns at once, anything else is rebuilt
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def run_export(export_id: int) -> dict:
    """Build and store one export (exports.service.run_export)."""
    export = service.run_export(export_id=export_id)
    return {"export": export.pk, "status": export.status}


def build_after_commit(export_id: int) -> None:
    """Queue the build once the export row is committed (the worker must see it)."""
    transaction.on_commit(lambda: run_export.delay(export_id))


def request_export(*, version: DatasetVersion, user, format: str, options: dict | None = None) -> Export:
    """Ask for an export (exports.service.request_export); a build, if needed, runs on a worker."""
    return service.request_export(
        version=version, user=user, format=format, options=options, enqueue=build_after_commit
    )
