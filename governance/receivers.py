"""Governance's reactions to marketplace signals; connected in ``GovernanceConfig.ready()``."""

from governance.tasks import compute_quality_reports


def start_quality_reports(sender, *, version_id: int, **kwargs) -> None:
    """A version was published (and committed): compute its stats, agreement, balance and compliance."""
    compute_quality_reports.delay(version_id)
