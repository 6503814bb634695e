"""Telling buyers what happened to datasets they hold or asked for: a list on their page, and an email.

Who hears of a new version or a deprecation: the members of every organisation with an active
entitlement to the dataset, and whoever asked for access to it (pending or decided) -- they want
to know the dataset moved. A decision on an access request goes to the organisation that asked.
Never the supplier's own people: they made the change.

The rows are written in the caller's transaction, so a rolled-back publication tells nobody; the
emails leave after the commit, through Django's email backend (the console in the demo).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import get_connection
from django.core.mail.message import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from ..models import (
    AccessRequest,
    Dataset,
    DatasetVersion,
    Entitlement,
    Membership,
    Notification,
    Organization,
)
from ..signals import notifications_created

logger = logging.getLogger(__name__)


def audience(dataset: Dataset) -> list[int]:
    """Ids of the users to tell about a dataset's versions: entitled organisations and requesters."""
    entitled_orgs = Entitlement.objects.active().filter(dataset=dataset).values("organization_id")
    requesting_orgs = AccessRequest.objects.filter(dataset=dataset).values("organization_id")
    members = Membership.objects.filter(
        Q(organization_id__in=entitled_orgs) | Q(organization_id__in=requesting_orgs)
    ).exclude(organization_id=dataset.supplier_id)
    requesters = AccessRequest.objects.filter(dataset=dataset, requested_by__isnull=False).values(
        "requested_by_id"
    )
    users = get_user_model().objects.filter(
        Q(pk__in=members.values("user_id")) | Q(pk__in=requesters), is_active=True
    )
    return list(users.order_by("pk").values_list("pk", flat=True).distinct())


def _create(*, user_ids: list[int], **fields) -> list[Notification]:
    rows = Notification.objects.bulk_create([Notification(recipient_id=uid, **fields) for uid in user_ids])
    ids = [n.pk for n in rows]  # PostgreSQL and SQLite >= 3.35 return the new ids
    if ids:
        # The emails leave after the commit: notifications/tasks.py reacts to the signal.
        transaction.on_commit(lambda: notifications_created.send(sender=Notification, notification_ids=ids))
    return rows


def _dataset_url(dataset: Dataset, anchor: str = "changelog") -> str:
    return f"{reverse('dataset-detail', kwargs={'slug': dataset.slug})}#{anchor}"


def notify_new_version(*, version: DatasetVersion) -> int:
    """Tell the dataset's audience that a version was published; returns how many were told."""
    dataset = version.dataset
    notes = version.release_notes.strip()
    rows = _create(
        user_ids=audience(dataset),
        kind=Notification.Kind.NEW_VERSION,
        dataset=dataset,
        version_number=version.number,
        subject=f"{dataset.title}: version {version.number} is published",
        body=(
            f"{dataset.supplier.name} published version {version.number} of {dataset.title}."
            + (f"\n\nRelease notes: {notes}" if notes else "")
        ),
        url=_dataset_url(dataset),
        created_at=timezone.now(),
    )
    return len(rows)


def notify_deprecation(*, version: DatasetVersion) -> int:
    """Tell the dataset's audience that a version is retired, and why."""
    dataset = version.dataset
    rows = _create(
        user_ids=audience(dataset),
        kind=Notification.Kind.DEPRECATION,
        dataset=dataset,
        version_number=version.number,
        subject=f"{dataset.title}: version {version.number} is deprecated",
        body=(
            f"{dataset.supplier.name} deprecated version {version.number} of {dataset.title}.\n\n"
            f"Reason: {version.deprecation_reason}"
        ),
        url=_dataset_url(dataset),
        created_at=timezone.now(),
    )
    return len(rows)


def notify_request_decision(
    *, dataset: Dataset, organization: Organization, approved: bool, reason: str = "", requested_by=None
) -> int:
    """Tell the organisation that asked for access (and the user who asked) what the supplier decided.

    For the licensing service to call when a supplier approves or rejects an access request.
    """
    members = Membership.objects.filter(organization=organization).values("user_id")
    users = get_user_model().objects.filter(
        Q(pk__in=members) | Q(pk=getattr(requested_by, "pk", None)), is_active=True
    )
    verdict = "approved" if approved else "declined"
    rows = _create(
        user_ids=list(users.order_by("pk").values_list("pk", flat=True).distinct()),
        kind=Notification.Kind.REQUEST_DECISION,
        dataset=dataset,
        subject=f"{dataset.title}: your access request was {verdict}",
        body=(
            f"{dataset.supplier.name} {verdict} {organization.name}'s request for {dataset.title}."
            + (f"\n\nReason: {reason.strip()}" if reason and reason.strip() else "")
        ),
        url=_dataset_url(dataset, "offers"),
        created_at=timezone.now(),
    )
    return len(rows)


def notify_access_request_decided(*, access_request) -> int:
    """:func:`notify_request_decision` for a decided ``AccessRequest`` (call it inside the decision's transaction)."""
    return notify_request_decision(
        dataset=access_request.dataset,
        organization=access_request.organization,
        approved=access_request.status == AccessRequest.Status.APPROVED,
        reason=access_request.reason,
        requested_by=access_request.requested_by,
    )


def send_notification_emails(*, notification_ids: list[int]) -> int:
    """Email the notifications not yet emailed; safe to run twice (each row is marked once sent)."""
    pending = (
        Notification.objects.filter(pk__in=notification_ids, emailed_at__isnull=True)
        .exclude(recipient__email="")
        .select_related("recipient")
    )
    base = getattr(settings, "SITE_URL", "").rstrip("/")
    messages, sent_ids = [], []
    for n in pending:
        link = f"\n\n{base}{n.url}" if n.url else ""
        messages.append(
            EmailMessage(
                subject=n.subject,
                body=f"{n.body}{link}\n\nYour notifications: {base}{reverse('notifications')}",
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[n.recipient.email],
            )
        )
        sent_ids.append(n.pk)
    if not messages:
        return 0
    # One connection for the batch; a failure raises so the task retries the ones still unmarked.
    get_connection().send_messages(messages)
    Notification.objects.filter(pk__in=sent_ids).update(emailed_at=timezone.now())
    return len(messages)


def mark_read(*, user, ids: list[int] | None = None) -> int:
    """Mark the user's notifications read (all unread ones when ``ids`` is None)."""
    qs = Notification.objects.for_user(user).unread()
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(read_at=timezone.now())
