"""Who sees what: the one place that answers it (netbox's ``restrict()``), for every view,
serializer and service of both apps.

Seeing and using are different rights:

- **seeing** a dataset: the public catalogue (listed, with a published version), the user's own
  organisation's datasets, and datasets their organisation is entitled to (even delisted ones);
  a version: released versions of visible datasets, drafts only for their supplier; staff see all;
- **using** the originals of a version (and its unwatermarked previews): staff, the supplier, or a
  buyer whose organisation's active entitlement covers the version *and* who accepted its license
  (their seat);
- **exporting** a version: staff, the supplier (drafts too), or for a released version a buyer
  who may use it, or any logged-in user when the dataset has an active open offer.

Refusals: what a user cannot see is a 404 (its existence is not revealed); what they can see
but not export is a 403 (``not_authenticated`` for the anonymous, who gets 401).
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from .errors import DomainError, ErrorCode, LoginRequired, not_found
from .models import (
    AccessRequest,
    Dataset,
    DatasetVersion,
    Delivery,
    Entitlement,
    Offer,
    Order,
    Organization,
    Role,
    org_ids,
)


def _is_staff(user) -> bool:
    return user is not None and user.is_authenticated and user.is_staff


def _released(version: DatasetVersion) -> bool:
    return version.status in (DatasetVersion.Status.PUBLISHED, DatasetVersion.Status.DEPRECATED)


# --------------------------------------------------------------------------- datasets and versions


def datasets(user) -> QuerySet[Dataset]:
    """What this user may see: the catalogue, their own org's drafts, what they are entitled to."""
    if _is_staff(user):
        return Dataset.objects.all()
    orgs = org_ids(user)
    public = Q(status=Dataset.Status.LISTED) & Q(
        Exists(DatasetVersion.objects.filter(dataset=OuterRef("pk"), status=DatasetVersion.Status.PUBLISHED))
    )
    if not orgs:
        return Dataset.objects.filter(public)
    entitled = Exists(Entitlement.objects.active().filter(dataset=OuterRef("pk"), organization_id__in=orgs))
    return Dataset.objects.filter(public | Q(supplier_id__in=orgs) | entitled)


def supplied_datasets(user) -> QuerySet[Dataset]:
    """Datasets of the organisations where the user is a supplier."""
    return Dataset.objects.filter(supplier_id__in=org_ids(user, Role.SUPPLIER))


def versions(user) -> QuerySet[DatasetVersion]:
    """Released versions of visible datasets; drafts only for their supplier."""
    if _is_staff(user):
        return DatasetVersion.objects.all()
    visible = DatasetVersion.objects.filter(dataset__in=datasets(user))
    own = org_ids(user, Role.SUPPLIER)
    return visible.filter(
        Q(status__in=[DatasetVersion.Status.PUBLISHED, DatasetVersion.Status.DEPRECATED])
        | Q(dataset__supplier_id__in=own)
    )


def visible_version(
    user, slug: str, number: int, *, detail: str = "No such dataset version."
) -> DatasetVersion:
    """The version, if this user can see it; a 404 otherwise."""
    version = (
        versions(user)
        .select_related("dataset", "dataset__supplier")
        .filter(dataset__slug=slug, number=number)
        .first()
    )
    if version is None:
        raise not_found(detail)
    return version


def access_dataset(user, slug: str) -> Dataset:
    """The user's own organisation's dataset, else 404: a foreign dataset is not there, not forbidden."""
    try:
        return supplied_datasets(user).select_related("supplier").get(slug=slug)
    except Dataset.DoesNotExist:
        raise not_found() from None  # the API's plain "Not found.": nothing about whose it is


def access_version(user, slug: str, number: int) -> DatasetVersion:
    """A version of the user's own organisation's dataset, drafts included, else 404."""
    dataset = access_dataset(user, slug)
    try:
        return dataset.versions.select_related("dataset__supplier").get(number=number)
    except DatasetVersion.DoesNotExist:
        raise not_found() from None


def is_supplier_of(user, dataset: Dataset) -> bool:
    return dataset.supplier_id in org_ids(user, Role.SUPPLIER)


# --------------------------------------------------------------------------- deliveries, orders, requests


def deliveries(user) -> QuerySet[Delivery]:
    """Deliveries of the datasets the user supplies (nothing for anyone else)."""
    return (
        Delivery.objects.filter(dataset__in=supplied_datasets(user))
        .select_related("dataset", "version")
        .order_by("-created_at", "-pk")
    )


def _bought_or_supplied(queryset: QuerySet, user) -> QuerySet:
    if _is_staff(user):
        return queryset.all()
    return queryset.filter(
        Q(organization_id__in=org_ids(user)) | Q(dataset__supplier_id__in=org_ids(user, Role.SUPPLIER))
    )


def orders(user) -> QuerySet[Order]:
    """Orders the user's organisations placed, and orders for datasets they supply; staff see all."""
    return _bought_or_supplied(Order.objects.all(), user)


def access_requests(user) -> QuerySet[AccessRequest]:
    """Requests the user's organisations made, and requests for datasets they supply; staff see all."""
    return _bought_or_supplied(AccessRequest.objects.all(), user)


def entitlements(user) -> QuerySet[Entitlement]:
    """Entitlements of the user's organisations, and those on datasets they supply; staff see all."""
    return _bought_or_supplied(Entitlement.objects.all(), user)


# --------------------------------------------------------------------------- using the originals


def active_entitlements(*, user, dataset: Dataset | None = None) -> QuerySet[Entitlement]:
    """Active entitlements of the user's organisations (for one dataset, if given)."""
    qs = Entitlement.objects.active().filter(organization_id__in=org_ids(user))
    if dataset is not None:
        qs = qs.filter(dataset=dataset)
    return qs.select_related("license", "dataset", "organization")


def entitlement_for(*, user, version: DatasetVersion) -> Entitlement | None:
    """An active entitlement of the user's organisations that covers this version, if any."""
    for entitlement in active_entitlements(user=user, dataset=version.dataset):
        if entitlement.covers(version):
            return entitlement
    return None


def has_seat(*, user, entitlement: Entitlement) -> bool:
    return entitlement.seats.filter(user=user).exists()


def may_use(*, user, version: DatasetVersion) -> bool:
    """May this user see the originals of this version (and its unwatermarked previews)?

    Staff and the supplier always; a buyer when their organisation holds an active entitlement that
    covers the version *and* they have accepted its license themselves (which is their seat).
    """
    if user is None or not user.is_authenticated:
        return False
    if user.is_staff or is_supplier_of(user, version.dataset):
        return True
    if version.status == DatasetVersion.Status.DRAFT:
        return False
    return any(
        entitlement.covers(version) and has_seat(user=user, entitlement=entitlement)
        for entitlement in active_entitlements(user=user, dataset=version.dataset)
    )


# --------------------------------------------------------------------------- exports and downloads


def _covering_entitlements(user, version: DatasetVersion) -> list[Entitlement]:
    buyer_orgs = org_ids(user, Role.BUYER)
    if not buyer_orgs or not _released(version):
        return []
    return [
        entitlement
        for entitlement in Entitlement.objects.active()
        .filter(dataset_id=version.dataset_id, organization_id__in=buyer_orgs)
        .select_related("organization")
        .order_by("created_at")
        if entitlement.covers(version)
    ]


def entitled_organization(user, version: DatasetVersion) -> Organization | None:
    """The buyer organisation whose active entitlement covers this version and under which the
    user has accepted the license (holds a seat), if any."""
    for entitlement in _covering_entitlements(user, version):
        if entitlement.seats.filter(user=user).exists():
            return entitlement.organization
    return None


def has_open_offer(dataset: Dataset) -> bool:
    return Offer.objects.filter(dataset=dataset, access_mode=Offer.AccessMode.OPEN, active=True).exists()


def can_export(user, version: DatasetVersion) -> bool:
    """Whether this user may export (and download) this version."""
    if user is None or not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    if is_supplier_of(user, version.dataset):
        return True
    if not _released(version) or not versions(user).filter(pk=version.pk).exists():
        return False
    return has_open_offer(version.dataset) or entitled_organization(user, version) is not None


def require_export(user, version: DatasetVersion) -> None:
    """Raise the right refusal unless the user may export this version."""
    if can_export(user, version):
        return
    if user is None or not user.is_authenticated:
        raise LoginRequired("Log in to export or download data.")
    if _covering_entitlements(user, version):
        raise DomainError(
            "Your organisation holds a license for this version: accept its terms in your library first.",
            code=ErrorCode.LICENSE_NOT_ACCEPTED,
            status_code=403,
        )
    raise DomainError(
        "Your organisation holds no license that covers this version: buy or request access first.",
        code=ErrorCode.NOT_ENTITLED,
        status_code=403,
    )


def require_export_of(user, version: DatasetVersion, *, include_images: bool) -> None:
    """``require_export``, and for original images the seat rule of ``/original/``.

    An open offer lets anyone logged in export labels; the images leave only with the license
    accepted (``may_use``), exactly as one original at a time does.
    """
    require_export(user, version)
    if include_images and not may_use(user=user, version=version):
        raise DomainError(
            "Exporting original images needs the license accepted: claim the offer in your library "
            "first, or export labels only (include_images: false).",
            code=ErrorCode.LICENSE_NOT_ACCEPTED,
            status_code=403,
        )


def exports_of_version(user, version: DatasetVersion, queryset: QuerySet) -> QuerySet:
    """The exports of a version this user may list: which organisations export a dataset is their
    own business, so a buyer sees those its organisations asked for or downloaded; the supplier
    and staff see them all."""
    if _is_staff(user) or is_supplier_of(user, version.dataset):
        return queryset
    orgs = org_ids(user)
    return queryset.filter(
        Q(requested_by__memberships__organization_id__in=orgs) | Q(downloads__organization_id__in=orgs)
    ).distinct()


def access_organization(user, version: DatasetVersion) -> Organization | None:
    """The organisation a download is made for: the entitled buyer org, else the supplier."""
    org = entitled_organization(user, version)
    if org is not None:
        return org
    if is_supplier_of(user, version.dataset):
        return version.dataset.supplier
    memberships = org_ids(user)
    return Organization.objects.filter(pk__in=memberships).order_by("pk").first() if memberships else None


def can_list_downloads(user, dataset: Dataset) -> bool:
    """The supplier sees who downloaded its data; so do auditors and staff."""
    if user is None or not user.is_authenticated:
        return False
    return user.is_staff or is_supplier_of(user, dataset) or bool(org_ids(user, Role.AUDITOR))
