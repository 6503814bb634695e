from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self):
        # Quality reports react to marketplace's publication; marketplace does not import them.
        from governance.quality import receivers, reports
        from marketplace import hooks, signals

        signals.version_published.connect(
            receivers.start_quality_reports, dispatch_uid="governance.quality.start_quality_reports"
        )
        # The Croissant carries the measured figures of the stored quality reports.
        hooks.register_croissant_rai("governance.quality", reports.croissant_rai_fields)
