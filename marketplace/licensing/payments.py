"""How money is asked for and confirmed: a pluggable provider (settings.PAYMENT_PROVIDER)."""

from __future__ import annotations

from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from ..models import Order


class PaymentProvider(Protocol):
    """How money is asked for and confirmed. Only invoices today; a card provider would fit here."""

    name: str

    def issue_invoice(self, *, order: Order) -> str:
        """Return the invoice number the buyer pays against."""
        ...

    def confirm_payment(self, *, order: Order, reference: str) -> None:
        """Check (or just record) that the invoice was paid; raise DomainError if it was not."""
        ...


class InvoiceProvider:
    """Bank transfer against an invoice: nothing to call; the supplier or staff confirm by hand."""

    name = "invoice"

    def issue_invoice(self, *, order: Order) -> str:
        return f"INV-{order.created_at:%Y}-{order.pk:06d}"

    def confirm_payment(self, *, order: Order, reference: str) -> None:
        return None


def payment_provider() -> PaymentProvider:
    """The configured provider (settings.PAYMENT_PROVIDER, a dotted path), invoices by default."""
    return import_string(
        getattr(settings, "PAYMENT_PROVIDER", "marketplace.licensing.payments.InvoiceProvider")
    )()
