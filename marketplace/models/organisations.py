"""Organisations and their members' roles (supplier, buyer, auditor)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# --------------------------------------------------------------------------- organisations


__all__ = [
    "Membership",
    "Organization",
    "Role",
    "org_ids",
]


class Organization(models.Model):
    """A company or team: supplies datasets, buys licenses, or audits."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    website = models.URLField(blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    SUPPLIER = "supplier", "Supplier"
    BUYER = "buyer", "Buyer"
    AUDITOR = "auditor", "Auditor"


class Membership(models.Model):
    """A user's role in an organisation. A user may hold several roles in several orgs."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization", "role"], name="membership_unique_role"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.role} · {self.organization}"


def org_ids(user, role: str | None = None) -> list[int]:
    """Ids of the organisations the user belongs to (with that role, if given)."""
    if user is None or not user.is_authenticated:
        return []
    qs = Membership.objects.filter(user=user)
    if role:
        qs = qs.filter(role=role)
    return list(qs.values_list("organization_id", flat=True).distinct())
