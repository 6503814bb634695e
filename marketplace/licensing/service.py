"""Licensing: orders (invoices), access requests, license acceptance and seats, entitlements that expire.

Writes are the service functions below, keyword-only and each in one transaction; pages and the API
only call them. Reads that decide what a user may do with a version (`may_use`) live in `visibility`, so
previews, originals and downloads ask one question in one place.

Locking, in one order everywhere so two transactions never wait on each other in a circle:
the buyer organisation's row first (every purchase or approval for one organisation queues there,
so "not entitled yet" cannot be seen by two of them at once), then the entitlement's row (seats),
then the dataset's row (the ledger append takes it).
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from governance import ledger

from .. import visibility
from ..errors import DomainError
from ..models import (
    AccessRequest,
    Dataset,
    Entitlement,
    License,
    LicenseAcceptance,
    Membership,
    Offer,
    Order,
    Organization,
    Role,
    org_ids,
)
from ..notifications import service as notifications
from .payments import payment_provider

# --------------------------------------------------------------------------- reads


def license_text_sha256(license: License) -> str:
    """SHA-256 of the terms as shown to the buyer, so an acceptance names the exact text accepted."""
    return hashlib.sha256(f"{license.name}\n{license.url}\n{license.text}".encode()).hexdigest()


def license_terms(license: License) -> dict:
    """The yes/no and numeric terms a buyer accepts, as the entitlement_granted event records them."""
    return {
        "commercial_use": license.commercial_use,
        "ai_training": license.ai_training,
        "derivatives": license.derivatives,
        "redistribution": license.redistribution,
        "attribution_required": license.attribution_required,
        "duration_days": license.duration_days,
        "seats": license.seats,
    }


def seats_used(entitlement: Entitlement) -> int:
    return entitlement.seats.count()


# --------------------------------------------------------------------------- helpers


def buyer_organization(*, user, organization: Organization | None = None) -> Organization:
    """The buyer organisation the user acts for: the one given (if they are its buyer) or their only one."""
    if user is None or not user.is_authenticated:
        raise DomainError("Log in to license a dataset.", code="not_authenticated", status_code=401)
    orgs = Organization.objects.filter(memberships__user=user, memberships__role=Role.BUYER).distinct()
    if organization is not None:
        orgs = orgs.filter(pk=organization.pk)
    found = list(orgs[:2])
    if not found:
        raise DomainError(
            "Only members of a buyer organisation can license datasets.", code="not_a_buyer", status_code=403
        )
    if len(found) > 1:
        raise DomainError("You buy for several organisations: say which one.", code="organization_required")
    return found[0]


def _available_offer(*, user, offer: Offer) -> Offer:
    """Re-read the offer and refuse one the user may not see (404) or may not take now (409)."""
    offer = Offer.objects.select_related("license", "dataset__supplier").get(pk=offer.pk)
    if not visibility.datasets(user).filter(pk=offer.dataset_id).exists():
        raise DomainError("No such offer.", code="not_found", status_code=404)
    if not offer.active or not Dataset.objects.listed().filter(pk=offer.dataset_id).exists():
        raise DomainError("This offer is not available.", code="offer_unavailable", status_code=409)
    return offer


def _lock_organization(organization: Organization) -> None:
    # Every purchase and approval for one buyer organisation queues on this row lock: without it two
    # concurrent clicks could both find "no order, no entitlement yet" and both grant one.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()


def _accept(*, user, organization: Organization, offer: Offer | None, license: License, entitlement=None):
    return LicenseAcceptance.objects.create(
        user=user,
        organization=organization,
        license=license,
        text_sha256=license_text_sha256(license),
        offer=offer,
        entitlement=entitlement,
    )


def _take_seat(*, user, entitlement: Entitlement, offer: Offer | None = None) -> LicenseAcceptance:
    """Record the user's acceptance as a seat under the entitlement; the caller holds its row lock."""
    existing = entitlement.seats.filter(user=user).first()
    if existing:
        return existing
    seats = entitlement.license.seats
    if seats is not None and entitlement.seats.count() >= seats:
        raise DomainError(
            f"All {seats} seats of this license are taken in your organisation.",
            code="no_seats_left",
            status_code=409,
        )
    return _accept(
        user=user,
        organization=entitlement.organization,
        offer=offer or entitlement.offer,
        license=entitlement.license,
        entitlement=entitlement,
    )


def _actor(user) -> str:
    # The user's id, not their name: the ledger is append-only, so nothing personal goes into it.
    return f"user:{user.pk}" if user is not None else "registry"


# --------------------------------------------------------------------------- services


def grant_entitlement(*, organization: Organization, offer: Offer, granted_by=None) -> Entitlement:
    """Give an organisation the offer's license on its dataset, for every released version, until
    the license's duration runs out; the grant goes into the dataset's ledger."""
    starts = timezone.now()
    days = offer.license.duration_days
    with transaction.atomic():
        entitlement = Entitlement.objects.create(
            organization=organization,
            dataset=offer.dataset,
            license=offer.license,
            offer=offer,
            all_versions=True,
            starts_at=starts,
            ends_at=starts + timedelta(days=days) if days else None,
            granted_by=granted_by,
        )
        ledger.record_dataset_event(
            dataset=offer.dataset,
            action="entitlement_granted",
            actor=_actor(granted_by),
            payload={
                "organization": organization.slug,
                "license": str(offer.license),
                "offer": offer.pk,
                "access_mode": offer.access_mode,
                "ends_at": entitlement.ends_at.isoformat() if entitlement.ends_at else None,
                # The terms as accepted, bound into the signed ledger (issue #16): the text's hash
                # (as LicenseAcceptance records it) and the flags; the license cannot change after.
                "license_sha256": license_text_sha256(offer.license),
                "license_terms": license_terms(offer.license),
            },
        )
    return entitlement


def purchase(
    *,
    user,
    offer: Offer,
    idempotency_key: str,
    accept_license: bool,
    organization: Organization | None = None,
) -> Order:
    """Buy (or, for an open offer, claim) a license: the order, the entitlement and the buyer's
    acceptance in one transaction. The same idempotency key again returns the same order."""
    key = (idempotency_key or "").strip()
    if not key or len(key) > 100:
        if not accept_license:
            # The first thing a buyer must fix is the license, not the retry key.
            raise DomainError("Read and accept the license terms first.", code="license_not_accepted")
        raise DomainError(
            "An idempotency key of 1 to 100 characters is required.", code="idempotency_key_required"
        )
    org = buyer_organization(user=user, organization=organization)
    with transaction.atomic():
        _lock_organization(org)
        existing = Order.objects.filter(organization=org, idempotency_key=key).first()
        if existing is not None:
            if existing.offer_id != offer.pk:
                raise DomainError(
                    "This idempotency key was already used for another offer.",
                    code="idempotency_key_reused",
                    status_code=409,
                )
            return existing
        offer = _available_offer(user=user, offer=offer)
        if offer.access_mode == Offer.AccessMode.REQUEST:
            raise DomainError(
                "This offer is by request: ask the supplier for access.",
                code="request_required",
                status_code=409,
            )
        if not accept_license:
            raise DomainError("Read and accept the license terms first.", code="license_not_accepted")
        if (
            Entitlement.objects.active()
            .filter(organization=org, dataset=offer.dataset, license=offer.license)
            .exists()
        ):
            raise DomainError(
                "Your organisation already holds this license for this dataset.",
                code="already_entitled",
                status_code=409,
            )
        entitlement = grant_entitlement(organization=org, offer=offer, granted_by=user)
        free = offer.price == Decimal("0")
        now = timezone.now()
        order = Order.objects.create(
            organization=org,
            placed_by=user,
            offer=offer,
            dataset=offer.dataset,
            license=offer.license,
            entitlement=entitlement,
            price=offer.price,
            currency=offer.currency,
            status=Order.Status.PAID if free else Order.Status.INVOICED,
            paid_at=now if free else None,
            idempotency_key=key,
            created_at=now,
        )
        order.invoice_number = "" if free else payment_provider().issue_invoice(order=order)
        order.save(update_fields=["invoice_number"])
        _take_seat(user=user, entitlement=entitlement, offer=offer)
    return order


def request_access(
    *,
    user,
    offer: Offer,
    accept_license: bool,
    message: str = "",
    organization: Organization | None = None,
) -> AccessRequest:
    """Ask the supplier for an offer in "request" mode; one pending request per organisation and offer."""
    org = buyer_organization(user=user, organization=organization)
    with transaction.atomic():
        _lock_organization(org)
        offer = _available_offer(user=user, offer=offer)
        if offer.access_mode != Offer.AccessMode.REQUEST:
            raise DomainError(
                "This offer needs no request: license it directly.", code="no_request_needed", status_code=409
            )
        pending = AccessRequest.objects.filter(
            organization=org, offer=offer, status=AccessRequest.Status.PENDING
        ).first()
        if pending is not None:
            return pending
        if not accept_license:
            raise DomainError("Read and accept the license terms first.", code="license_not_accepted")
        if (
            Entitlement.objects.active()
            .filter(organization=org, dataset=offer.dataset, license=offer.license)
            .exists()
        ):
            raise DomainError(
                "Your organisation already holds this license for this dataset.",
                code="already_entitled",
                status_code=409,
            )
        request = AccessRequest.objects.create(
            organization=org, requested_by=user, offer=offer, dataset=offer.dataset, message=message.strip()
        )
        _accept(user=user, organization=org, offer=offer, license=offer.license)
    return request


def decide_request(*, user, request: AccessRequest, approve: bool, reason: str = "") -> AccessRequest:
    """The supplier approves (granting the entitlement, and an invoice if the offer has a price) or
    rejects with a reason the buyer reads on their library page."""
    reason = (reason or "").strip()
    if not approve and not reason:
        raise DomainError("Say why the request is rejected: the buyer reads it.", code="reason_required")
    with transaction.atomic():
        request = (
            AccessRequest.objects.select_for_update()
            .select_related("offer__license", "dataset", "organization")
            .get(pk=request.pk)
        )
        if not (user.is_staff or visibility.is_supplier_of(user, request.dataset)):
            raise DomainError(
                "Only the dataset's supplier can decide this request.",
                code="permission_denied",
                status_code=403,
            )
        if request.status != AccessRequest.Status.PENDING:
            raise DomainError(
                f"This request is already {request.status}.", code="already_decided", status_code=409
            )
        request.decided_by = user
        request.decided_at = timezone.now()
        request.reason = reason
        if not approve:
            request.status = AccessRequest.Status.REJECTED
            request.save()
            notifications.notify_access_request_decided(access_request=request)
            return request
        _lock_organization(request.organization)
        offer = request.offer
        entitlement = (
            Entitlement.objects.active()
            .filter(organization=request.organization, dataset=request.dataset, license=offer.license)
            .first()
        )
        if entitlement is None:
            entitlement = grant_entitlement(organization=request.organization, offer=offer, granted_by=user)
            if offer.price > 0:
                order = Order.objects.create(
                    organization=request.organization,
                    placed_by=request.requested_by,
                    offer=offer,
                    dataset=request.dataset,
                    license=offer.license,
                    entitlement=entitlement,
                    price=offer.price,
                    currency=offer.currency,
                    idempotency_key=f"access-request-{request.pk}",
                )
                order.invoice_number = payment_provider().issue_invoice(order=order)
                order.save(update_fields=["invoice_number"])
        if (
            request.requested_by is not None
            and request.requested_by.memberships.filter(organization=request.organization).exists()
        ):
            # The requester accepted the terms when asking; that acceptance becomes their seat.
            Entitlement.objects.select_for_update().filter(pk=entitlement.pk).first()
            # Seats full: the organisation is still entitled; the requester waits for a seat to free up.
            with contextlib.suppress(DomainError):
                _take_seat(user=request.requested_by, entitlement=entitlement, offer=offer)
        request.status = AccessRequest.Status.APPROVED
        request.entitlement = entitlement
        request.save()
        # Same transaction: a rolled-back decision tells nobody; the email leaves after the commit.
        notifications.notify_access_request_decided(access_request=request)
    return request


def withdraw_request(*, user, request: AccessRequest) -> AccessRequest:
    """The buyer takes back a pending request."""
    with transaction.atomic():
        request = AccessRequest.objects.select_for_update().get(pk=request.pk)
        if request.organization_id not in org_ids(user):
            raise DomainError("No such request.", code="not_found", status_code=404)
        if request.status != AccessRequest.Status.PENDING:
            raise DomainError(
                f"This request is already {request.status}.", code="already_decided", status_code=409
            )
        request.status = AccessRequest.Status.WITHDRAWN
        request.save(update_fields=["status"])
    return request


def claim_seat(*, user, entitlement: Entitlement) -> LicenseAcceptance:
    """A member of an entitled organisation accepts the license and takes one of its seats."""
    with transaction.atomic():
        # Lock the entitlement: seats are counted and then taken, so concurrent claims must queue.
        entitlement = (
            Entitlement.objects.select_for_update()
            .select_related("license", "organization")
            .get(pk=entitlement.pk)
        )
        if not Membership.objects.filter(user=user, organization=entitlement.organization).exists():
            raise DomainError("No such entitlement.", code="not_found", status_code=404)
        if not Entitlement.objects.active().filter(pk=entitlement.pk).exists():
            raise DomainError(
                "This entitlement has expired or was revoked.", code="entitlement_inactive", status_code=409
            )
        return _take_seat(user=user, entitlement=entitlement)


def _check_seller(user, order: Order) -> None:
    if not (user.is_staff or visibility.is_supplier_of(user, order.dataset)):
        raise DomainError(
            "Only the dataset's supplier or staff can do this.", code="permission_denied", status_code=403
        )


def mark_paid(*, user, order: Order, reference: str, amount, currency: str = "") -> Order:
    """The supplier or staff confirm that an invoice's payment arrived: the provider checks the reference
    and the amount, and who confirmed it, when and the receipt go on the order and into the dataset's
    ledger (``payment_confirmed``). Nobody of the buying organisation confirms its own payment."""
    with transaction.atomic():
        order = Order.objects.select_for_update().select_related("dataset").get(pk=order.pk)
        _check_seller(user, order)
        if order.organization_id in org_ids(user):
            raise DomainError(
                "A payment is confirmed by the seller, not by the organisation that paid.",
                code="own_payment",
                status_code=403,
            )
        if order.status == Order.Status.PAID:
            return order
        if order.status != Order.Status.INVOICED:
            raise DomainError(f"This order is {order.status}.", code="order_not_payable", status_code=409)
        provider = payment_provider()
        receipt = provider.confirm_payment(order=order, reference=reference, amount=amount, currency=currency)
        if (
            Order.objects.filter(
                dataset__supplier_id=order.dataset.supplier_id,
                status=Order.Status.PAID,
                payment_reference=receipt.reference,
            )
            .exclude(pk=order.pk)
            .exists()
        ):
            # One transfer cannot pay two invoices: a reference seen before is a mistake or a replay.
            raise DomainError(
                "This payment reference already confirmed another invoice.",
                code="payment_reference_reused",
                status_code=409,
            )
        order.status = Order.Status.PAID
        order.paid_at = timezone.now()
        order.marked_paid_by = user
        order.payment_reference = receipt.reference
        order.save(update_fields=["status", "paid_at", "marked_paid_by", "payment_reference"])
        ledger.record_dataset_event(
            dataset=order.dataset,
            action="payment_confirmed",
            actor=_actor(user),
            occurred_at=order.paid_at,
            payload={
                "order": order.pk,
                "invoice": order.invoice_number,
                "organization": order.organization.slug,
                "amount": str(receipt.amount),
                "currency": receipt.currency,
                "provider": receipt.provider,
                # The reference itself stays on the order: the ledger is append-only and public to
                # auditors, so it carries only a digest that proves which reference was confirmed.
                "reference_sha256": hashlib.sha256(receipt.reference.encode()).hexdigest(),
            },
        )
    return order


def cancel_order(*, user, order: Order) -> Order:
    """The supplier or staff cancel an unpaid invoice; the entitlement it granted is revoked."""
    with transaction.atomic():
        order = Order.objects.select_for_update().select_related("dataset").get(pk=order.pk)
        _check_seller(user, order)
        if order.status == Order.Status.CANCELLED:
            return order
        if order.status != Order.Status.INVOICED:
            raise DomainError(
                "A paid order cannot be cancelled here.", code="order_not_cancellable", status_code=409
            )
        order.status = Order.Status.CANCELLED
        order.save(update_fields=["status"])
        if order.entitlement_id:
            Entitlement.objects.filter(pk=order.entitlement_id, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
    return order
