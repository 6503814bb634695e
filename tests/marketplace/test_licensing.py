"""Licensing: buy, claim or request an offer; seats; expiry; invoices; the supplier's decisions."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from governance.models import LabelEvent
from marketplace import visibility
from marketplace.errors import DomainError
from marketplace.licensing import service as licensing
from marketplace.models import (
    AccessRequest,
    Entitlement,
    LicenseAcceptance,
    Order,
    Role,
)
from tests import factories as f

from .buyer_support import entitle, fast_passwords, open_offer, org_of, purchase_offer, request_offer  # noqa: F401

pytestmark = pytest.mark.django_db


def colleague_of(user, username: str, role=Role.BUYER):
    return f.MembershipFactory(
        user=f.UserFactory(username=username), organization=org_of(user), role=role
    ).user


# --------------------------------------------------------------------------- buying


def test_buying_creates_an_invoice_an_entitlement_and_the_buyers_seat(published_version, dataset, buyer):
    offer = purchase_offer(dataset, price=4900, duration_days=365)

    order = licensing.purchase(user=buyer, offer=offer, idempotency_key="k1", accept_license=True)

    assert order.status == Order.Status.INVOICED and order.invoice_number.startswith("INV-")
    assert order.price == 4900 and order.organization == org_of(buyer)
    entitlement = order.entitlement
    assert entitlement.dataset == dataset and entitlement.license == offer.license
    assert entitlement.ends_at - entitlement.starts_at == timedelta(days=365)
    seat = LicenseAcceptance.objects.get(entitlement=entitlement)
    assert seat.user == buyer and seat.text_sha256 == licensing.license_text_sha256(offer.license)
    assert visibility.may_use(user=buyer, version=published_version)


def test_the_same_idempotency_key_gives_the_same_order(published_version, dataset, buyer):
    offer = purchase_offer(dataset)
    first = licensing.purchase(user=buyer, offer=offer, idempotency_key="click-1", accept_license=True)
    again = licensing.purchase(user=buyer, offer=offer, idempotency_key="click-1", accept_license=True)
    assert again.pk == first.pk
    assert Order.objects.count() == 1 and Entitlement.objects.count() == 1


def test_a_key_used_for_another_offer_is_refused(published_version, dataset, buyer):
    licensing.purchase(user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=True)
    other = purchase_offer(dataset, license_name="Another license")
    with pytest.raises(DomainError) as caught:
        licensing.purchase(user=buyer, offer=other, idempotency_key="k", accept_license=True)
    assert caught.value.code == "idempotency_key_reused"


def test_a_license_already_held_is_not_sold_twice(published_version, dataset, buyer):
    offer = purchase_offer(dataset)
    licensing.purchase(user=buyer, offer=offer, idempotency_key="a", accept_license=True)
    with pytest.raises(DomainError) as caught:
        licensing.purchase(user=buyer, offer=offer, idempotency_key="b", accept_license=True)
    assert caught.value.code == "already_entitled" and caught.value.status_code == 409


def test_it_refuses_a_purchase_whose_terms_were_not_accepted(published_version, dataset, buyer):
    with pytest.raises(DomainError) as caught:
        licensing.purchase(
            user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=False
        )
    assert caught.value.code == "license_not_accepted"
    assert not Order.objects.exists() and not Entitlement.objects.exists()


def test_an_open_offer_is_claimed_for_free_and_needs_no_payment(published_version, dataset, buyer):
    order = licensing.purchase(
        user=buyer, offer=open_offer(dataset), idempotency_key="k", accept_license=True
    )
    assert order.status == Order.Status.PAID and order.price == 0 and order.invoice_number == ""
    assert order.entitlement.ends_at is None


def test_an_offer_by_request_cannot_be_bought(published_version, dataset, buyer):
    with pytest.raises(DomainError) as caught:
        licensing.purchase(user=buyer, offer=request_offer(dataset), idempotency_key="k", accept_license=True)
    assert caught.value.code == "request_required"


def test_an_offer_on_a_hidden_draft_is_not_found_and_an_inactive_one_unavailable(
    draft_dataset, published_version, dataset, buyer
):
    with pytest.raises(DomainError) as caught:
        licensing.purchase(
            user=buyer, offer=purchase_offer(draft_dataset), idempotency_key="k", accept_license=True
        )
    assert caught.value.status_code == 404
    with pytest.raises(DomainError) as caught:
        licensing.purchase(
            user=buyer, offer=purchase_offer(dataset, active=False), idempotency_key="k2", accept_license=True
        )
    assert caught.value.code == "offer_unavailable"


def test_only_members_of_a_buyer_organisation_can_buy(published_version, dataset, supplier, auditor):
    offer = purchase_offer(dataset)
    for user in (supplier, auditor):
        with pytest.raises(DomainError) as caught:
            licensing.purchase(user=user, offer=offer, idempotency_key="k", accept_license=True)
        assert caught.value.code == "not_a_buyer"


def test_the_grant_is_an_event_in_the_datasets_ledger(published_version, dataset, buyer):
    licensing.purchase(user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=True)
    event = LabelEvent.objects.filter(dataset=dataset, action="entitlement_granted").get()
    assert event.payload["organization"] == org_of(buyer).slug
    assert event.actor == f"user:{buyer.pk}"  # pseudonymous: the ledger is append-only


# --------------------------------------------------------------------------- expiry and seats


def test_an_entitlement_expires_with_its_license_and_can_then_be_bought_again(
    published_version, dataset, buyer
):
    offer = purchase_offer(dataset, duration_days=30)
    licensing.purchase(user=buyer, offer=offer, idempotency_key="k1", accept_license=True)
    assert visibility.may_use(user=buyer, version=published_version)

    later = timezone.now() + timedelta(days=31)
    with mock.patch("django.utils.timezone.now", return_value=later):
        assert not visibility.may_use(user=buyer, version=published_version)
        assert not Entitlement.objects.active().exists()
        renewed = licensing.purchase(user=buyer, offer=offer, idempotency_key="k2", accept_license=True)
    assert renewed.entitlement.ends_at == later + timedelta(days=30)


def test_each_colleague_accepts_the_license_and_takes_a_seat_until_none_is_left(
    published_version, dataset, buyer
):
    offer = purchase_offer(dataset, seats=2)
    entitlement = licensing.purchase(
        user=buyer, offer=offer, idempotency_key="k", accept_license=True
    ).entitlement
    second, third = colleague_of(buyer, "second"), colleague_of(buyer, "third")

    assert not visibility.may_use(user=second, version=published_version)  # entitled org, no acceptance yet
    licensing.claim_seat(user=second, entitlement=entitlement)
    assert visibility.may_use(user=second, version=published_version)
    assert licensing.claim_seat(user=second, entitlement=entitlement).entitlement == entitlement  # idempotent

    with pytest.raises(DomainError) as caught:
        licensing.claim_seat(user=third, entitlement=entitlement)
    assert caught.value.code == "no_seats_left"
    assert entitlement.seats.count() == 2


def test_someone_outside_the_organisation_cannot_take_a_seat(published_version, dataset, buyer, outsider):
    entitlement = entitle(buyer, dataset)
    with pytest.raises(DomainError) as caught:
        licensing.claim_seat(user=outsider, entitlement=entitlement)
    assert caught.value.status_code == 404


def test_a_buyer_never_uses_a_draft_and_the_supplier_always_may(draft_dataset, supplier, buyer):
    version = draft_dataset.versions.get()
    entitle(buyer, draft_dataset)
    assert not visibility.may_use(user=buyer, version=version)
    assert visibility.may_use(user=supplier, version=version)


# --------------------------------------------------------------------------- requests


def test_a_request_waits_for_the_supplier_who_approves_it(published_version, dataset, buyer, supplier):
    offer = request_offer(dataset)
    request = licensing.request_access(
        user=buyer, offer=offer, accept_license=True, message="Pedestrian research"
    )
    assert request.status == AccessRequest.Status.PENDING
    assert licensing.request_access(user=buyer, offer=offer, accept_license=True).pk == request.pk
    assert not visibility.may_use(user=buyer, version=published_version)

    decided = licensing.decide_request(user=supplier, request=request, approve=True)

    assert decided.status == AccessRequest.Status.APPROVED and decided.entitlement.organization == org_of(
        buyer
    )
    assert visibility.may_use(user=buyer, version=published_version)  # the request's acceptance is the seat
    assert not Order.objects.exists()  # a free offer: nothing to invoice


def test_approving_a_priced_request_sends_an_invoice(published_version, dataset, buyer, supplier):
    request = licensing.request_access(
        user=buyer, offer=request_offer(dataset, price=900), accept_license=True
    )
    licensing.decide_request(user=supplier, request=request, approve=True)
    order = Order.objects.get()
    assert order.status == Order.Status.INVOICED and order.price == 900 and order.placed_by == buyer


def test_a_rejection_needs_a_reason_that_the_buyer_reads(
    published_version, dataset, buyer, supplier, client_for
):
    request = licensing.request_access(user=buyer, offer=request_offer(dataset), accept_license=True)
    with pytest.raises(DomainError) as caught:
        licensing.decide_request(user=supplier, request=request, approve=False, reason="  ")
    assert caught.value.code == "reason_required"

    licensing.decide_request(user=supplier, request=request, approve=False, reason="Commercial users only.")

    html = client_for(buyer).get("/library/").content.decode()
    assert "Rejected" in html and "Commercial users only." in html
    assert not Entitlement.objects.exists()


def test_only_the_datasets_supplier_decides_and_only_once(
    published_version, dataset, buyer, supplier, other_supplier
):
    request = licensing.request_access(user=buyer, offer=request_offer(dataset), accept_license=True)
    with pytest.raises(DomainError) as caught:
        licensing.decide_request(user=other_supplier, request=request, approve=True)
    assert caught.value.status_code == 403
    licensing.decide_request(user=supplier, request=request, approve=True)
    with pytest.raises(DomainError) as caught:
        licensing.decide_request(user=supplier, request=request, approve=False, reason="Changed my mind")
    assert caught.value.code == "already_decided"


def test_a_buyer_withdraws_a_pending_request(published_version, dataset, buyer):
    request = licensing.request_access(user=buyer, offer=request_offer(dataset), accept_license=True)
    assert licensing.withdraw_request(user=buyer, request=request).status == AccessRequest.Status.WITHDRAWN
    # Withdrawn, it no longer blocks a new request.
    assert licensing.request_access(user=buyer, offer=request.offer, accept_license=True).pk != request.pk


def test_an_open_or_purchase_offer_needs_no_request(published_version, dataset, buyer):
    with pytest.raises(DomainError) as caught:
        licensing.request_access(user=buyer, offer=purchase_offer(dataset), accept_license=True)
    assert caught.value.code == "no_request_needed"


# --------------------------------------------------------------------------- invoices


def test_the_supplier_marks_an_invoice_paid_and_a_buyer_cannot(published_version, dataset, buyer, supplier):
    order = licensing.purchase(
        user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=True
    )
    with pytest.raises(DomainError) as caught:
        licensing.mark_paid(user=buyer, order=order, reference="paid, honest", amount=order.price)
    assert caught.value.status_code == 403

    paid = licensing.mark_paid(user=supplier, order=order, reference="SEPA 2026-117", amount="4900.00")
    assert paid.status == Order.Status.PAID and paid.paid_at and paid.payment_reference == "SEPA 2026-117"
    assert paid.marked_paid_by == supplier
    again = licensing.mark_paid(user=supplier, order=order, reference="SEPA 2026-117", amount="4900.00")
    assert again.paid_at == paid.paid_at  # idempotent
    assert LabelEvent.objects.filter(dataset=dataset, action="payment_confirmed").count() == 1


def test_cancelling_an_unpaid_invoice_revokes_its_entitlement(published_version, dataset, buyer, supplier):
    order = licensing.purchase(
        user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=True
    )
    licensing.cancel_order(user=supplier, order=order)
    assert Order.objects.get().status == Order.Status.CANCELLED
    assert not visibility.may_use(user=buyer, version=published_version)


def test_the_payment_provider_is_pluggable(published_version, dataset, buyer, supplier, settings):
    settings.PAYMENT_PROVIDER = "tests.marketplace.test_licensing.RefusingProvider"
    order = licensing.purchase(
        user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=True
    )
    assert order.invoice_number == "R-1"
    with pytest.raises(DomainError):
        licensing.mark_paid(user=supplier, order=order, reference="x", amount=order.price)
    assert Order.objects.get().status == Order.Status.INVOICED


class RefusingProvider:
    name = "refusing"

    def issue_invoice(self, *, order):
        return "R-1"

    def confirm_payment(self, *, order, reference, amount, currency):
        raise DomainError("The bank has not seen this payment.", code="payment_not_found", status_code=409)


# --------------------------------------------------------------------------- API


def test_the_api_buys_with_an_idempotency_key_header(published_version, dataset, buyer, api_for):
    offer = purchase_offer(dataset)
    api = api_for(buyer)
    url = f"/api/v1/offers/{offer.pk}/purchase/"
    first = api.post(url, {"accept_license": True}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    again = api.post(url, {"accept_license": True}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    assert first.status_code == 201, first.content
    assert again.json()["id"] == first.json()["id"] and Order.objects.count() == 1
    body = first.json()
    assert body["status"] == "invoiced" and body["dataset"] == "street-scenes" and body["price"] == "4900.00"

    refused = api.post(url, {"accept_license": True}, format="json", HTTP_IDEMPOTENCY_KEY="other")
    assert refused.status_code == 409 and refused.json()["code"] == "already_entitled"


def test_the_api_asks_for_login_and_hides_offers_of_invisible_datasets(draft_dataset, api_for, outsider):
    offer = purchase_offer(draft_dataset)
    assert api_for().post(f"/api/v1/offers/{offer.pk}/purchase/", {"accept_license": True}).status_code == 401
    response = api_for(outsider).post(f"/api/v1/offers/{offer.pk}/purchase/", {"accept_license": True})
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_each_side_lists_only_its_own_orders_and_requests(
    published_version, dataset, buyer, supplier, outsider, other_supplier, api_for
):
    licensing.purchase(user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=True)
    licensing.request_access(user=buyer, offer=request_offer(dataset), accept_license=True)
    for path in ("/api/v1/orders/", "/api/v1/access-requests/", "/api/v1/entitlements/"):
        assert api_for(buyer).get(path).json()["count"] == 1, path
        assert api_for(supplier).get(path).json()["count"] == 1, path
        assert api_for(outsider).get(path).json()["count"] == 0, path
        assert api_for(other_supplier).get(path).json()["count"] == 0, path


def test_the_supplier_decides_through_the_api_and_the_buyer_accepts_the_license(
    published_version, dataset, buyer, supplier, api_for
):
    request = licensing.request_access(user=buyer, offer=request_offer(dataset), accept_license=True)
    response = api_for(buyer).post(
        f"/api/v1/access-requests/{request.pk}/decide/", {"approve": True}, format="json"
    )
    assert response.status_code == 403
    response = api_for(supplier).post(
        f"/api/v1/access-requests/{request.pk}/decide/", {"approve": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "approved"

    colleague = colleague_of(buyer, "colleague")
    entitlement_id = response.json()["entitlement"]
    response = api_for(colleague).get(f"/api/v1/entitlements/{entitlement_id}/")
    assert response.json()["has_seat"] is False and response.json()["seats_used"] == 1
    response = api_for(colleague).post(f"/api/v1/entitlements/{entitlement_id}/accept-license/")
    assert response.status_code == 200 and response.json()["has_seat"] is True


# --------------------------------------------------------------------------- pages


def test_the_offer_page_shows_the_terms_and_a_double_submit_buys_once(
    published_version, dataset, buyer, client_for
):
    offer = purchase_offer(dataset, seats=5, duration_days=730)
    client = client_for(buyer)
    html = client.get(f"/datasets/street-scenes/offers/{offer.pk}/").content.decode()
    for text in (
        "Train and ship models inside the licensee",
        "730 days",
        "5 named users",
        "I have read the license terms",
    ):
        assert text in html, text

    form = {"accept_license": "yes", "idempotency_key": "form-123"}
    first = client.post(f"/datasets/street-scenes/offers/{offer.pk}/", form)
    second = client.post(f"/datasets/street-scenes/offers/{offer.pk}/", form)
    assert first.status_code == second.status_code == 302 and first["Location"] == "/library/"
    assert Order.objects.count() == 1

    library = client.get("/library/").content.decode()
    assert (
        "Street Scenes" in library
        and "Commercial AI License" in library
        and "You accepted the license." in library
    )
    assert Order.objects.get().invoice_number in library


def test_the_offer_page_tells_what_went_wrong(published_version, dataset, buyer, client_for):
    offer = purchase_offer(dataset)
    client = client_for(buyer)
    response = client.post(
        f"/datasets/street-scenes/offers/{offer.pk}/", {"idempotency_key": "x"}, follow=True
    )
    assert "Read and accept the license terms first." in response.content.decode()
    assert not Order.objects.exists()


def test_a_supplier_approves_on_the_requests_page(published_version, dataset, buyer, supplier, client_for):
    request = licensing.request_access(
        user=buyer, offer=request_offer(dataset), accept_license=True, message="For a thesis"
    )
    client = client_for(supplier)
    assert "For a thesis" in client.get("/supplier/requests/").content.decode()
    client.post("/supplier/requests/", {"request": request.pk, "decision": "approve"})
    assert AccessRequest.objects.get().status == AccessRequest.Status.APPROVED


def test_the_supplier_pages_are_for_suppliers_and_show_only_their_own(
    published_version, dataset, buyer, other_supplier, client_for
):
    licensing.purchase(user=buyer, offer=purchase_offer(dataset), idempotency_key="k", accept_license=True)
    assert client_for(buyer).get("/supplier/orders/").status_code == 404
    html = client_for(other_supplier).get("/supplier/orders/").content.decode()
    assert "INV-" not in html and "Street Scenes" not in html


def test_the_library_is_for_logged_in_users_and_shows_a_clear_empty_state(client, client_for, outsider):
    assert client.get("/library/").status_code == 302
    html = client_for(outsider).get("/library/").content.decode()
    assert "Nothing licensed yet." in html and "No orders." in html


def test_the_buyer_is_notified_of_the_decision(published_version, dataset, buyer, supplier):
    from marketplace.models import Notification

    request = licensing.request_access(user=buyer, offer=request_offer(dataset), accept_license=True)
    licensing.decide_request(user=supplier, request=request, approve=False, reason="Commercial users only.")
    note = Notification.objects.get(recipient=buyer)
    assert "declined" in note.subject and "Commercial users only." in note.body
