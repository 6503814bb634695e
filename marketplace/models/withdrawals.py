"""A dataset withdrawn by the registry's staff: the record that replaces deleting it (issue #16).

A dataset with released versions cannot be deleted (the models and a trigger refuse): buyers hold
licenses on it and the ledger witnesses it. Staff withdraw it instead, with a reason that the
catalogue shows and a ``dataset_withdrawn`` ledger event records (``marketplace.catalogue.withdrawal``).
The record is written once and never changed or deleted.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .catalogue import Dataset

__all__ = ["DatasetWithdrawal"]


class DatasetWithdrawal(models.Model):
    """Why and when staff withdrew a dataset from the registry."""

    REASON_MAX_LENGTH = 2000

    dataset = models.OneToOneField(Dataset, on_delete=models.PROTECT, related_name="withdrawal")
    reason = models.TextField(
        max_length=REASON_MAX_LENGTH, help_text="Shown to buyers and recorded in the ledger"
    )
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    withdrawn_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-withdrawn_at"]

    def __str__(self) -> str:
        return f"{self.dataset} withdrawn {self.withdrawn_at:%Y-%m-%d}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValidationError(
                "A withdrawal is recorded once and never changed.", code="already_withdrawn"
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("A withdrawal is recorded once and never deleted.", code="already_withdrawn")
