"""Who hears of a new version, a deprecation or a decision: entitled buyers and requesters, once, after commit."""

from __future__ import annotations

import pytest
from django.core import mail
from django.utils import timezone

from marketplace.errors import DomainError
from marketplace.models import AccessRequest, Notification, Role
from marketplace.notifications import service as notifications
from marketplace.workspace import lifecycle as workspace_lifecycle
from tests import factories as f
from tests.conftest import build_version

from .workspace_support import fast_passwords  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def offer(dataset):
    return f.OfferFactory(dataset=dataset, access_mode="request", price=0)


def member(org, username, role=Role.BUYER):
    return f.MembershipFactory(user=f.UserFactory(username=username), organization=org, role=role).user


def test_entitled_buyers_and_requesters_hear_of_a_new_version_and_nobody_else(
    dataset, supplier, buyer, outsider, offer, django_capture_on_commit_callbacks
):
    entitled_org = buyer.memberships.get().organization
    colleague = member(entitled_org, "colleague")
    f.EntitlementFactory(organization=entitled_org, dataset=dataset, license=offer.license)
    expired_org = f.OrganizationFactory()
    member(expired_org, "expired")
    f.EntitlementFactory(
        organization=expired_org, dataset=dataset, license=offer.license, revoked_at=timezone.now()
    )
    asking_org = f.OrganizationFactory()
    asker = member(asking_org, "asker")
    AccessRequest.objects.create(organization=asking_org, requested_by=asker, offer=offer, dataset=dataset)
    version = build_version(dataset)

    with django_capture_on_commit_callbacks(execute=True):
        told = notifications.notify_new_version(version=version)

    assert told == 3
    assert set(Notification.objects.values_list("recipient__username", flat=True)) == {
        "buyer",
        "colleague",
        "asker",
    }
    assert sorted(m.to[0] for m in mail.outbox) == sorted([buyer.email, colleague.email, asker.email])
    assert all(m.subject == "Street Scenes: version 1 is published" for m in mail.outbox)
    # Sending again sends nothing: every row is marked once emailed.
    assert (
        notifications.send_notification_emails(
            notification_ids=list(Notification.objects.values_list("pk", flat=True))
        )
        == 0
    )
    assert not Notification.objects.filter(recipient__in=[supplier, outsider]).exists()


def test_a_decision_on_a_request_reaches_the_organisation_that_asked(
    dataset, offer, django_capture_on_commit_callbacks
):
    org = f.OrganizationFactory(name="Helio")
    asker = member(org, "asker")
    request = AccessRequest.objects.create(
        organization=org,
        requested_by=asker,
        offer=offer,
        dataset=dataset,
        status="rejected",
        reason="Not for surveillance.",
    )
    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify_access_request_decided(access_request=request)
    note = Notification.objects.get(recipient=asker)
    assert (
        note.kind == "request_decision" and note.subject == "Street Scenes: your access request was declined"
    )
    assert "Reason: Not for surveillance." in note.body and mail.outbox[0].to == [asker.email]


def test_a_refused_publication_tells_nobody(dataset, buyer, offer, django_capture_on_commit_callbacks):
    f.EntitlementFactory(
        organization=buyer.memberships.get().organization, dataset=dataset, license=offer.license
    )
    draft = build_version(dataset, publish=False)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(DomainError) as refused:
        workspace_lifecycle.publish_draft(version=draft, release_notes="Now.")
    assert (
        refused.value.extra["missing"][-1] == "Deliveries: upload a delivery that ingests into this version."
    )
    assert not Notification.objects.exists() and mail.outbox == []


def test_the_notifications_page_lists_mine_and_marks_them_read(buyer, outsider, client_for, dataset):
    Notification.objects.create(
        recipient=buyer, kind="new_version", dataset=dataset, subject="For the buyer", url="/x/"
    )
    Notification.objects.create(
        recipient=outsider, kind="new_version", dataset=dataset, subject="For someone else"
    )
    client = client_for(buyer)
    html = client.get("/notifications/").content.decode()
    assert "For the buyer" in html and "For someone else" not in html and "unread" in html
    client.post("/notifications/")
    assert not Notification.objects.filter(recipient=buyer, read_at__isnull=True).exists()
    assert Notification.objects.filter(recipient=outsider, read_at__isnull=True).exists()
