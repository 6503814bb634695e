"""What governance does when marketplace publishes a version: start its quality reports.

Connected in ``GovernanceConfig.ready()`` to ``marketplace.signals.version_published``, so marketplace
never imports ``governance.quality``.
"""

from django.db import transaction

from governance.quality.tasks import compute_quality_reports


def start_quality_reports(sender, *, version, **kwargs) -> None:
    """Enqueue the stats, agreement, balance and compliance reports of a version just published.

    Started after the commit, so the worker sees the published rows; robust, so a failing report
    never fails a release that is already committed (the reports can be recomputed at any time).
    """
    version_id = version.pk
    transaction.on_commit(lambda: compute_quality_reports.delay(version_id), robust=True)
