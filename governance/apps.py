from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self):
        from marketplace.signals import version_published

        from . import receivers

        version_published.connect(receivers.start_quality_reports, dispatch_uid="governance-quality-reports")
