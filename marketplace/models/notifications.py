"""Notifications to users: new versions, deprecations, decisions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .catalogue import Dataset

# --------------------------------------------------------------------------- notifications


__all__ = [
    "Notification",
    "NotificationQuerySet",
]


class NotificationQuerySet(models.QuerySet):
    def for_user(self, user):
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(recipient=user)

    def unread(self):
        return self.filter(read_at__isnull=True)


class Notification(models.Model):
    """Something a buyer should hear about a dataset: a new version, a deprecation, a decision."""

    class Kind(models.TextChoices):
        NEW_VERSION = "new_version", "New version"
        DEPRECATION = "deprecation", "Version deprecated"
        REQUEST_DECISION = "request_decision", "Decision on an access request"

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="notifications")
    version_number = models.PositiveIntegerField(null=True, blank=True)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True, help_text="Where to read more, a path on this site")
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"])]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.subject}"
