"""The payment step: the supplier confirms that an invoice's transfer arrived, checked by the payment
provider (reference and full amount), recorded with who and when on the order and in the ledger."""

import hashlib
from decimal import Decimal

import pytest

from governance.ledger.verification import verify_dataset
from governance.models import LabelEvent
from marketplace.errors import DomainError
from marketplace.licensing import service as licensing
from marketplace.licensing.payments import InvoiceProvider, PaymentReceipt
from marketplace.models import Order, Role
from tests import factories as f
from tests.browser import chromium_page

from .buyer_support import fast_passwords, org_of, purchase_offer  # noqa: F401

pytestmark = pytest.mark.django_db


def invoiced(dataset, buyer, price=4900) -> Order:
    return licensing.purchase(
        user=buyer, offer=purchase_offer(dataset, price=price), idempotency_key="k", accept_license=True
    )


def payment_events(dataset):
    return LabelEvent.objects.filter(dataset=dataset, action="payment_confirmed")


def test_the_supplier_confirms_receipt_and_the_ledger_records_who_when_and_how_much(
    published_version, dataset, buyer, supplier
):
    order = invoiced(dataset, buyer)

    paid = licensing.mark_paid(user=supplier, order=order, reference=" SEPA-E2E-0117 ", amount="4900")

    assert paid.status == Order.Status.PAID and paid.marked_paid_by == supplier
    assert paid.payment_reference == "SEPA-E2E-0117"
    event = payment_events(dataset).get()
    assert event.actor == f"user:{supplier.pk}" and event.occurred_at == paid.paid_at
    assert event.payload == {
        "order": order.pk,
        "invoice": order.invoice_number,
        "organization": org_of(buyer).slug,
        "amount": "4900.00",
        "currency": "EUR",
        "provider": "invoice",
        "reference_sha256": hashlib.sha256(b"SEPA-E2E-0117").hexdigest(),
    }
    assert verify_dataset(dataset=dataset).ok


@pytest.mark.parametrize(
    ("reference", "amount", "code"),
    [
        ("", "4900.00", "payment_reference_required"),
        ("   ", "4900.00", "payment_reference_required"),
        ("x" * 101, "4900.00", "payment_reference_invalid"),
        ("ref\x00", "4900.00", "payment_reference_invalid"),
        ("SEPA-1", "", "payment_amount_invalid"),
        ("SEPA-1", "lots", "payment_amount_invalid"),
        ("SEPA-1", "NaN", "payment_amount_invalid"),
        ("SEPA-1", "1e999999", "payment_amount_invalid"),
        ("SEPA-1", "-4900", "payment_amount_invalid"),
        ("SEPA-1", "4900.001", "payment_amount_invalid"),
        ("SEPA-1", "4899.99", "payment_amount_mismatch"),
        ("SEPA-1", "49000", "payment_amount_mismatch"),
    ],
)
def test_a_confirmation_without_a_reference_or_the_full_amount_changes_nothing(
    published_version, dataset, buyer, supplier, reference, amount, code
):
    order = invoiced(dataset, buyer)
    with pytest.raises(DomainError) as caught:
        licensing.mark_paid(user=supplier, order=order, reference=reference, amount=amount)
    assert caught.value.code == code
    assert len(caught.value.detail) < 200  # never echoes the input back
    order.refresh_from_db()
    assert order.status == Order.Status.INVOICED and order.paid_at is None and not order.payment_reference
    assert not payment_events(dataset).exists()


def test_another_currency_is_not_the_invoice_paid(published_version, dataset, buyer, supplier):
    order = invoiced(dataset, buyer)
    with pytest.raises(DomainError) as caught:
        licensing.mark_paid(user=supplier, order=order, reference="SEPA-1", amount="4900.00", currency="USD")
    assert caught.value.code == "payment_amount_mismatch"


def test_one_transfer_cannot_pay_two_invoices(published_version, dataset, buyer, supplier):
    first = invoiced(dataset, buyer)
    other_buyer = f.MembershipFactory(role=Role.BUYER).user
    second = licensing.purchase(
        user=other_buyer, offer=first.offer, idempotency_key="k2", accept_license=True
    )
    licensing.mark_paid(user=supplier, order=first, reference="SEPA-1", amount="4900.00")
    with pytest.raises(DomainError) as caught:
        licensing.mark_paid(user=supplier, order=second, reference="SEPA-1", amount="4900.00")
    assert caught.value.code == "payment_reference_reused" and caught.value.status_code == 409
    assert Order.objects.get(pk=second.pk).status == Order.Status.INVOICED


def test_the_buyer_cannot_confirm_its_own_payment_even_as_a_supplier_member(
    published_version, dataset, buyer, supplier
):
    # A supplier's colleague who also belongs to the buying organisation, and the buyer itself.
    both = f.MembershipFactory(organization=org_of(buyer), role=Role.BUYER).user
    f.MembershipFactory(user=both, organization=dataset.supplier, role=Role.SUPPLIER)
    order = licensing.purchase(
        user=both, offer=purchase_offer(dataset), idempotency_key="own", accept_license=True
    )
    for user, code in ((buyer, "permission_denied"), (both, "own_payment")):
        with pytest.raises(DomainError) as caught:
            licensing.mark_paid(user=user, order=order, reference="SEPA-1", amount=order.price)
        assert caught.value.code == code and caught.value.status_code == 403
    assert Order.objects.get(pk=order.pk).status == Order.Status.INVOICED
    assert not payment_events(dataset).exists()


def test_a_cancelled_invoice_cannot_be_confirmed(published_version, dataset, buyer, supplier):
    order = licensing.cancel_order(user=supplier, order=invoiced(dataset, buyer))
    with pytest.raises(DomainError) as caught:
        licensing.mark_paid(user=supplier, order=order, reference="SEPA-1", amount=order.price)
    assert caught.value.code == "order_not_payable"


class CardProvider:
    """What a card processor would look like: it answers from its own records, not from the form."""

    name = "card"
    charges = {"ch_1": (Decimal("4900.00"), "EUR")}

    def issue_invoice(self, *, order):
        return f"CH-{order.pk}"

    def confirm_payment(self, *, order, reference, amount, currency):
        if reference not in self.charges:
            raise DomainError("No such charge.", code="payment_not_found", status_code=409)
        charged, cur = self.charges[reference]
        return PaymentReceipt(provider=self.name, reference=reference, amount=charged, currency=cur)


def test_a_card_processor_fits_the_same_interface(published_version, dataset, buyer, supplier, settings):
    settings.PAYMENT_PROVIDER = "tests.marketplace.test_payments.CardProvider"
    order = invoiced(dataset, buyer)
    assert order.invoice_number == f"CH-{order.pk}"
    with pytest.raises(DomainError):
        licensing.mark_paid(user=supplier, order=order, reference="ch_404", amount="")
    licensing.mark_paid(user=supplier, order=order, reference="ch_1", amount="")
    assert payment_events(dataset).get().payload["provider"] == "card"
    assert isinstance(
        InvoiceProvider().confirm_payment(order=order, reference="r", amount="4900", currency=""),
        PaymentReceipt,
    )


# --------------------------------------------------------------------------- API


def test_the_api_confirms_a_payment_and_refuses_outsiders_and_the_buyer(
    published_version, dataset, buyer, supplier, outsider, api_for
):
    order = invoiced(dataset, buyer)
    url = f"/api/v1/orders/{order.pk}/mark-paid/"
    body = {"reference": "SEPA-77", "amount": "4900.00"}

    assert api_for().post(url, body, format="json").status_code == 401
    hidden = api_for(outsider).post(url, body, format="json")
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    own = api_for(buyer).post(url, body, format="json")
    assert own.status_code == 403 and own.json()["code"] == "permission_denied"
    short = api_for(supplier).post(url, {"reference": "SEPA-77", "amount": "100"}, format="json")
    assert short.status_code == 409 and short.json()["code"] == "payment_amount_mismatch"
    missing = api_for(supplier).post(url, {"amount": "4900.00"}, format="json")
    assert missing.status_code == 400 and missing.json()["code"] == "payment_reference_required"
    assert not payment_events(dataset).exists()

    done = api_for(supplier).post(url, {"reference": "SEPA-77", "amount": 4900}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "paid" and done.json()["confirmed_by"] == supplier.username
    seen_by_buyer = api_for(buyer).get(f"/api/v1/orders/{order.pk}/").json()
    assert seen_by_buyer["status"] == "paid" and seen_by_buyer["paid_at"]
    assert payment_events(dataset).count() == 1


# --------------------------------------------------------------------------- the supplier's page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_supplier_confirms_a_payment_on_the_orders_page(
    live_server, published_version, dataset, buyer, supplier
):
    order = invoiced(dataset, buyer)

    with chromium_page() as page:
        page.goto(live_server.url + "/accounts/login/?next=/supplier/orders/")
        page.fill("#id_username", "supplier")
        page.fill("#id_password", "pass-word-123")
        page.click("button:has-text('Log in')")
        page.wait_for_url("**/supplier/orders/")
        row = page.locator(f"#order-{order.pk}")
        row.locator("input[name=reference]").fill("SEPA-88")
        row.locator("input[name=amount]").fill("4000")
        row.locator("text=Confirm payment received").click()
        page.wait_for_selector("text=confirm it once that amount has arrived")
        assert Order.objects.get(pk=order.pk).status == Order.Status.INVOICED

        row = page.locator(f"#order-{order.pk}")
        row.locator("input[name=reference]").fill("SEPA-88")
        row.locator("input[name=amount]").fill("4900.00")
        row.locator("text=Confirm payment received").click()
        page.wait_for_selector(f"#order-{order.pk} .confirmed")
        assert "confirmed by supplier on" in page.locator(f"#order-{order.pk}").inner_text()
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert payment_events(dataset).count() == 1
