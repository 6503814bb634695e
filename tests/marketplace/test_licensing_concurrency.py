"""Licensing under concurrency, on PostgreSQL: real threads, real connections, real row locks.

SQLite serialises every writer, so these tests say nothing there and are skipped.
"""

import threading

import pytest
from django.db import connection

from marketplace.errors import DomainError
from marketplace.licensing import service as licensing
from marketplace.models import AccessRequest, Entitlement, LicenseAcceptance, Order, Role
from tests import factories as f

from .buyer_support import fast_passwords, org_of, purchase_offer, request_offer  # noqa: F401

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's"),
]


def run_together(calls) -> list:
    """Start every call at the same moment, each in its own thread and connection; results or errors."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        from django.db import connection as thread_connection

        try:
            barrier.wait(timeout=10)
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever happened
            results[i] = exc
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def codes(results) -> list[str]:
    return sorted(r.code if isinstance(r, DomainError) else type(r).__name__ for r in results)


def test_two_concurrent_clicks_with_one_key_make_one_order(published_version, dataset, buyer):
    offer = purchase_offer(dataset)
    results = run_together(
        [lambda: licensing.purchase(user=buyer, offer=offer, idempotency_key="click", accept_license=True)]
        * 2
    )
    assert all(isinstance(r, Order) for r in results), results
    assert results[0].pk == results[1].pk
    assert Order.objects.count() == 1 and Entitlement.objects.count() == 1


def test_concurrent_purchases_by_one_organisation_grant_one_entitlement(published_version, dataset, buyer):
    offer = purchase_offer(dataset)
    colleagues = [buyer] + [
        f.MembershipFactory(organization=org_of(buyer), role=Role.BUYER).user for _ in range(4)
    ]
    results = run_together(
        [
            (
                lambda u=u, i=i: licensing.purchase(
                    user=u, offer=offer, idempotency_key=f"key-{i}", accept_license=True
                )
            )
            for i, u in enumerate(colleagues)
        ]
    )
    assert codes(results) == ["Order"] + ["already_entitled"] * 4, results
    assert Entitlement.objects.count() == 1 and Order.objects.count() == 1


def test_seat_limits_hold_when_colleagues_accept_at_the_same_moment(published_version, dataset, buyer):
    offer = purchase_offer(dataset, seats=3)
    entitlement = licensing.purchase(
        user=buyer, offer=offer, idempotency_key="k", accept_license=True
    ).entitlement
    colleagues = [f.MembershipFactory(organization=org_of(buyer), role=Role.BUYER).user for _ in range(6)]
    results = run_together(
        [(lambda u=u: licensing.claim_seat(user=u, entitlement=entitlement)) for u in colleagues]
    )
    assert codes(results) == ["LicenseAcceptance"] * 2 + ["no_seats_left"] * 4, results
    assert LicenseAcceptance.objects.filter(entitlement=entitlement).count() == 3


def test_two_concurrent_approvals_grant_once(published_version, dataset, buyer, supplier):
    request = licensing.request_access(
        user=buyer, offer=request_offer(dataset, price=500), accept_license=True
    )
    results = run_together(
        [lambda: licensing.decide_request(user=supplier, request=request, approve=True)] * 2
    )
    assert codes(results) == ["AccessRequest", "already_decided"], results
    assert AccessRequest.objects.get().status == AccessRequest.Status.APPROVED
    assert Entitlement.objects.count() == 1 and Order.objects.count() == 1
