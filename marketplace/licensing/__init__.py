"""Licensing: offers, orders (invoices), access requests, entitlements and seats (``service``), and
the pluggable payment provider (``payments``)."""

# settings.PAYMENT_PROVIDER named "marketplace.licensing.InvoiceProvider" before the move: keep it valid.
from .payments import InvoiceProvider

__all__ = ["InvoiceProvider"]
