"""What governance does when marketplace publishes a version: start its quality reports.

Connected in ``GovernanceConfig.ready()`` to ``marketplace.signals.version_published``, so marketplace
never imports ``governance.quality``. The signal is sent once the publication has committed, so the
worker sees the published rows.
"""

from governance.quality.tasks import compute_quality_reports


def start_quality_reports(sender, *, version_id: int, **kwargs) -> None:
    """Enqueue the stats, agreement, balance and compliance reports of a version just published."""
    compute_quality_reports.delay(version_id)
