"""How money is asked for and confirmed: a pluggable provider (settings.PAYMENT_PROVIDER).

Today the registry sends invoices and the supplier confirms, by hand, that the transfer arrived:
with the bank's reference and the amount received, which must be the invoice's. A card processor
would implement the same two methods: ``issue_invoice`` would create the charge, and
``confirm_payment`` would ask the processor whether the charge with that reference succeeded, for
that amount, and return what the processor says. ``licensing.mark_paid`` records who confirmed,
when, and the receipt, on the order and in the dataset's ledger (``payment_confirmed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from ..errors import DomainError
from ..models import Order

CENT = Decimal("0.01")
AMOUNT_LIMIT = Decimal(10) ** 12  # Order.price holds 12 digits, two of them decimals
REFERENCE_MAX = 100  # a bank's end-to-end id is 35 characters; card processors' charge ids are shorter


@dataclass(frozen=True)
class PaymentReceipt:
    """What the provider confirms: who took the money, under which reference, how much."""

    provider: str
    reference: str
    amount: Decimal
    currency: str


class PaymentProvider(Protocol):
    """How money is asked for and confirmed."""

    name: str

    def issue_invoice(self, *, order: Order) -> str:
        """Return the invoice number (or the processor's charge id) the buyer pays against."""
        ...

    def confirm_payment(
        self, *, order: Order, reference: str, amount: Decimal, currency: str
    ) -> PaymentReceipt:
        """Check that the invoice was paid in full; return the receipt, or raise DomainError."""
        ...


def clean_reference(reference: str) -> str:
    """A payment reference as recorded: stripped, printable, 1 to REFERENCE_MAX characters."""
    text = (reference or "").strip()
    if not text:
        raise DomainError(
            "Give the bank's reference of the transfer you received.", code="payment_reference_required"
        )
    if len(text) > REFERENCE_MAX or not text.isprintable():
        raise DomainError(
            f"A payment reference is 1 to {REFERENCE_MAX} printable characters.",
            code="payment_reference_invalid",
        )
    return text


def clean_amount(amount) -> Decimal:
    """An amount received, as a Decimal with at most two decimals."""
    try:
        value = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        raise DomainError(
            "Give the amount received as a number, e.g. 4900.00.", code="payment_amount_invalid"
        ) from None
    # Finite and below 10^12 first: quantize() raises on a huge exponent such as "1e999999".
    if not value.is_finite() or not 0 <= value < AMOUNT_LIMIT or value != value.quantize(CENT):
        raise DomainError(
            "Give the amount received as a number, e.g. 4900.00.", code="payment_amount_invalid"
        )
    return value.quantize(CENT)


class InvoiceProvider:
    """Bank transfer against an invoice: nothing to call; the supplier confirms receipt by hand, with the
    bank's reference and the amount that arrived, which must be the invoice's amount in its currency."""

    name = "invoice"

    def issue_invoice(self, *, order: Order) -> str:
        return f"INV-{order.created_at:%Y}-{order.pk:06d}"

    def confirm_payment(
        self, *, order: Order, reference: str, amount: Decimal, currency: str
    ) -> PaymentReceipt:
        reference = clean_reference(reference)
        amount = clean_amount(amount)
        currency = (currency or order.currency).strip().upper()
        if currency != order.currency or amount != order.price:
            # A part payment or another currency is not the invoice paid: say what was expected.
            raise DomainError(
                f"Invoice {order.invoice_number} is for {order.price} {order.currency}; "
                "confirm it once that amount has arrived.",
                code="payment_amount_mismatch",
                status_code=409,
            )
        return PaymentReceipt(provider=self.name, reference=reference, amount=amount, currency=currency)


def payment_provider() -> PaymentProvider:
    """The configured provider (settings.PAYMENT_PROVIDER, a dotted path), invoices by default."""
    return import_string(
        getattr(settings, "PAYMENT_PROVIDER", "marketplace.licensing.payments.InvoiceProvider")
    )()
