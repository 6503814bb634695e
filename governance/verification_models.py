"""The job row of a ledger verification started through the API (``governance.ledger.verify_chain``)."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class LedgerVerification(models.Model):
    """One run of ``verify_chain`` over a dataset's ledger: its chunks' results, then the report.

    Chunk tasks record their results here under a row lock; the one that completes the set combines
    them into ``report`` (the same shape as ``ledger.VerificationReport.as_dict()``).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey("marketplace.Dataset", on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    tree_size = models.PositiveBigIntegerField(help_text="Events in the chain when the job started")
    head_sizes = models.JSONField(default=list, blank=True, help_text="Tree sizes whose roots are checked")
    trusted_heads = models.JSONField(default=list, blank=True, help_text="Signed heads the caller holds")
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    chunk_results = models.JSONField(default=dict, blank=True)
    report = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"verification {self.pk} of {self.dataset_id} ({self.status})"
