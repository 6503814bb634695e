"""Who may take the data out: the export and download permission, in one place.

Seeing a version (the catalogue's ``visible_to``) is not the right to download it. Exporting
a version needs one of:

- staff;
- membership with the supplier role in the organisation that supplies the dataset (drafts too);
- for a released version: membership with the buyer role in an organisation whose active
  entitlement covers the version, and the user's own acceptance of its license (their seat:
  the same rule that opens originals and unwatermarked previews, ``licensing.may_use``);
- for a released version: any logged-in user, when the dataset has an active open offer.

Refusals: a version the user cannot see is a 404 (its existence is not revealed); a version
they can see but not export is a 403 (``not_authenticated`` for the anonymous, who gets 401).
"""

from __future__ import annotations

from .errors import DomainError, ErrorCode, LoginRequired, not_found
from .models import Dataset, DatasetVersion, Entitlement, Offer, Organization, Role, org_ids


def _released(version: DatasetVersion) -> bool:
    return version.status in (DatasetVersion.Status.PUBLISHED, DatasetVersion.Status.DEPRECATED)


def _covering_entitlements(user, version: DatasetVersion):
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


def is_supplier_of(user, dataset: Dataset) -> bool:
    return dataset.supplier_id in org_ids(user, Role.SUPPLIER)


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
    if not _released(version) or not DatasetVersion.objects.visible_to(user).filter(pk=version.pk).exists():
        return False
    return has_open_offer(version.dataset) or entitled_organization(user, version) is not None


def access_organization(user, version: DatasetVersion) -> Organization | None:
    """The organisation a download is made for: the entitled buyer org, else the supplier."""
    org = entitled_organization(user, version)
    if org is not None:
        return org
    if is_supplier_of(user, version.dataset):
        return version.dataset.supplier
    memberships = org_ids(user)
    return Organization.objects.filter(pk__in=memberships).order_by("pk").first() if memberships else None


def visible_version(user, slug: str, number: int) -> DatasetVersion:
    """The version, if this user can see it; a 404 otherwise."""
    version = (
        DatasetVersion.objects.visible_to(user)
        .select_related("dataset", "dataset__supplier")
        .filter(dataset__slug=slug, number=number)
        .first()
    )
    if version is None:
        raise not_found("No such dataset version.")
    return version


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


def can_list_downloads(user, dataset: Dataset) -> bool:
    """The supplier sees who downloaded its data; so do auditors and staff."""
    if user is None or not user.is_authenticated:
        return False
    return user.is_staff or is_supplier_of(user, dataset) or bool(org_ids(user, Role.AUDITOR))
