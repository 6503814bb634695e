from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self):
        # Quality reports react to marketplace's publication; marketplace does not import them.
        from governance.quality import receivers
        from marketplace import signals

        signals.version_published.connect(
            receivers.start_quality_reports, dispatch_uid="governance.quality.start_quality_reports"
        )
