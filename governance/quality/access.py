"""Who may read a version's quality reports (whoever may see the version) and who reviews (its supplier).

Shared by the quality API and pages: whoever may not see a version gets a 404, its existence unrevealed.
"""

from rest_framework import status

from marketplace.api.errors import DomainError
from marketplace.models import DatasetVersion, Role, org_ids


def readable_version(user, slug: str, number: int) -> DatasetVersion:
    """The version if this user may read it; a 404 otherwise (its existence is not revealed)."""
    version = (
        DatasetVersion.objects.visible_to(user)
        .select_related("dataset", "dataset__supplier")
        .filter(dataset__slug=slug, number=number)
        .first()
    )
    if version is None:
        raise DomainError("No such dataset version.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    return version


def is_supplier(user, version: DatasetVersion) -> bool:
    return version.dataset.supplier_id in org_ids(user, Role.SUPPLIER)


def supplied_version(user, slug: str, number: int) -> DatasetVersion:
    """The version if this user supplies it; a 404 for anyone else, staff included."""
    version = readable_version(user, slug, number)
    if not is_supplier(user, version):
        raise DomainError("No such dataset version.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    return version
