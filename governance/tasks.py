"""Every Celery task of governance, for Celery's autodiscovery (which imports ``<app>.tasks``).

Each task lives with its capability (``quality/tasks.py``, ``ledger/tasks.py``) and keeps its name.
"""

from .ledger.tasks import verify_ledger_chunk
from .quality.tasks import compute_quality_reports

__all__ = ["compute_quality_reports", "verify_ledger_chunk"]
