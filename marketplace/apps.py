from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self):
        from django.db.backends.signals import connection_created

        from .models.fields import json_as_text
        from .notifications import tasks as notification_tasks
        from .signals import notifications_created

        notifications_created.connect(
            notification_tasks.email_after_commit, dispatch_uid="notification-emails"
        )
        connection_created.connect(json_as_text, dispatch_uid="json-as-text")
