"""Commerce: licenses, offers, entitlements, orders (invoices), access requests, acceptances."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .catalogue import Dataset, DatasetVersion
from .organisations import Organization

# --------------------------------------------------------------------------- licenses


__all__ = [
    "AccessRequest",
    "AccessRequestQuerySet",
    "Entitlement",
    "EntitlementQuerySet",
    "License",
    "LicenseAcceptance",
    "Offer",
    "Order",
    "OrderQuerySet",
]


class License(models.Model):
    """License terms a dataset can be offered under; SPDX id where one exists."""

    spdx_id = models.CharField(max_length=64, blank=True, help_text="e.g. CC-BY-4.0; blank for custom terms")
    name = models.CharField(max_length=200)
    url = models.URLField(blank=True)
    text = models.TextField(blank=True)
    commercial_use = models.BooleanField(default=False)
    ai_training = models.BooleanField(default=False, help_text="May be used to train AI models")
    derivatives = models.BooleanField(default=False)
    redistribution = models.BooleanField(default=False)
    attribution_required = models.BooleanField(default=True)
    duration_days = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: perpetual")
    seats = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: unlimited users")
    owner = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="licenses",
        help_text="The supplier who wrote custom terms; blank for standard licenses",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["spdx_id"], condition=~Q(spdx_id=""), name="license_unique_spdx"),
        ]

    def __str__(self) -> str:
        return self.spdx_id or self.name

    @property
    def is_open(self) -> bool:
        return bool(self.spdx_id)

    # What a buyer accepts: fixed once anyone has (new terms are a new license). A trigger holds it too
    # (marketplace migration 0006); offers (price, access mode) stay editable.
    TERMS = (
        "spdx_id",
        "name",
        "url",
        "text",
        "commercial_use",
        "ai_training",
        "derivatives",
        "redistribution",
        "attribution_required",
        "duration_days",
        "seats",
    )

    def is_accepted(self) -> bool:
        return bool(self.pk) and (
            LicenseAcceptance.objects.filter(license_id=self.pk).exists()
            or Entitlement.objects.filter(license_id=self.pk).exists()
        )

    def save(self, *args, **kwargs):
        if self.pk and self.is_accepted():
            stored = License.objects.filter(pk=self.pk).values(*self.TERMS).first() or {}
            if any(stored.get(name) != getattr(self, name) for name in stored):
                raise ValidationError(
                    f"The terms of {self} were accepted and cannot change; write a new license instead.",
                    code="license_accepted",
                )
        super().save(*args, **kwargs)

    def terms(self) -> list[tuple[str, bool]]:
        """The yes/no terms, in the order buyers read them."""
        return [
            ("Commercial use", self.commercial_use),
            ("AI training", self.ai_training),
            ("Derivatives", self.derivatives),
            ("Redistribution", self.redistribution),
            ("Attribution required", self.attribution_required),
        ]


# --------------------------------------------------------------------------- commerce


class Offer(models.Model):
    """A way to get a dataset: free and open, bought, or requested from the supplier."""

    class AccessMode(models.TextChoices):
        OPEN = "open", "Open"
        PURCHASE = "purchase", "Purchase"
        REQUEST = "request", "Request access"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="offers")
    license = models.ForeignKey(License, on_delete=models.PROTECT, related_name="offers")
    access_mode = models.CharField(max_length=16, choices=AccessMode.choices)
    price = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="EUR")
    description = models.CharField(max_length=300, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["dataset", "price"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "license", "access_mode"], name="offer_unique"),
            models.CheckConstraint(condition=Q(price__gte=0), name="offer_price_non_negative"),
            models.CheckConstraint(condition=~Q(access_mode="open") | Q(price=0), name="offer_open_is_free"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.slug}: {self.license} ({self.access_mode})"


class EntitlementQuerySet(models.QuerySet):
    def active(self, at=None):
        at = at or timezone.now()
        return self.filter(
            Q(starts_at__lte=at), Q(ends_at__isnull=True) | Q(ends_at__gt=at), revoked_at__isnull=True
        )


class Entitlement(models.Model):
    """A buyer organisation's right to use a dataset under a license, for some versions and time."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="entitlements")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="entitlements")
    license = models.ForeignKey(License, on_delete=models.PROTECT, related_name="entitlements")
    offer = models.ForeignKey(
        Offer, null=True, blank=True, on_delete=models.SET_NULL, related_name="entitlements"
    )
    all_versions = models.BooleanField(
        default=True, help_text="Covers every released version, present and future"
    )
    versions = models.ManyToManyField(DatasetVersion, blank=True, related_name="entitlements")
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = EntitlementQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="entitlement_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization} → {self.dataset.slug} ({self.license})"

    def covers(self, version: DatasetVersion) -> bool:
        return version.dataset_id == self.dataset_id and (
            self.all_versions or self.versions.filter(pk=version.pk).exists()
        )


# --------------------------------------------------------------------------- licensing


class OrderQuerySet(models.QuerySet):
    """Who sees which: marketplace.visibility.orders."""


class Order(models.Model):
    """An invoice for one offer, placed by a buyer organisation. No card processing: orders are
    invoices that the supplier or staff mark paid; the entitlement is granted when the order is placed.
    """

    class Status(models.TextChoices):
        INVOICED = "invoiced", "Invoiced"
        PAID = "paid", "Paid"
        CANCELLED = "cancelled", "Cancelled"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="orders")
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="orders")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="orders")
    license = models.ForeignKey(License, on_delete=models.PROTECT, related_name="orders")
    entitlement = models.OneToOneField(
        Entitlement, null=True, blank=True, on_delete=models.SET_NULL, related_name="order"
    )
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INVOICED)
    idempotency_key = models.CharField(
        max_length=100, help_text="Chosen by the client; the same key twice gives the same order"
    )
    invoice_number = models.CharField(max_length=40, blank=True)
    payment_reference = models.CharField(max_length=200, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    marked_paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The database, not only the service, guarantees that a retried or doubled click is one order.
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"], name="order_unique_idempotency_key"
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="order_price_non_negative"),
            models.CheckConstraint(
                condition=Q(status__in=["invoiced", "paid", "cancelled"]), name="order_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | Q(paid_at__isnull=False), name="order_paid_has_date"
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.invoice_number or self.pk} · {self.organization} · {self.dataset.slug}"


class AccessRequestQuerySet(models.QuerySet):
    """Who sees which: marketplace.visibility.access_requests."""


class AccessRequest(models.Model):
    """A buyer's request for an offer in "request" mode, and the supplier's decision."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="access_requests")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # RESTRICT, not PROTECT: an offer with requests cannot be deleted on its own, but deleting the
    # dataset takes its offers and their requests together.
    offer = models.ForeignKey(Offer, on_delete=models.RESTRICT, related_name="access_requests")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="access_requests")
    message = models.TextField(blank=True, help_text="What the buyer intends to do with the data")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True, help_text="The supplier's reason, shown to the buyer")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    entitlement = models.ForeignKey(
        Entitlement, null=True, blank=True, on_delete=models.SET_NULL, related_name="access_requests"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "offer"],
                condition=Q(status="pending"),
                name="access_request_one_pending",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "approved", "rejected", "withdrawn"]),
                name="access_request_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="rejected") | ~Q(reason=""), name="access_request_rejection_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} → {self.dataset.slug} ({self.status})"


class LicenseAcceptance(models.Model):
    """A user's acceptance of a license text, as shown to them. Tied to an entitlement it is also
    that user's seat under the license (License.seats caps how many there are).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    license = models.ForeignKey(License, on_delete=models.PROTECT, related_name="acceptances")
    text_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the terms as shown")
    offer = models.ForeignKey(Offer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    entitlement = models.ForeignKey(
        Entitlement, null=True, blank=True, on_delete=models.CASCADE, related_name="seats"
    )
    accepted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-accepted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entitlement", "user"],
                condition=Q(entitlement__isnull=False),
                name="license_acceptance_one_seat_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} accepted {self.license} at {self.accepted_at:%Y-%m-%d %H:%M}"
