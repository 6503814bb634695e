"""Who may read a version's quality reports (whoever may see the version) and who reviews (its supplier).

Shared by the quality API and pages; the answer itself comes from ``marketplace.visibility``, the one
place that says who sees what: whoever may not see a version gets a 404, its existence unrevealed.
"""

from http import HTTPStatus

from marketplace import visibility
from marketplace.errors import DomainError
from marketplace.models import DatasetVersion


def readable_version(user, slug: str, number: int) -> DatasetVersion:
    """The version if this user may read it; a 404 otherwise (its existence is not revealed)."""
    return visibility.visible_version(user, slug, number)


def is_supplier(user, version: DatasetVersion) -> bool:
    return visibility.is_supplier_of(user, version.dataset)


def supplied_version(user, slug: str, number: int) -> DatasetVersion:
    """The version if this user supplies it; a 404 for anyone else, staff included."""
    version = readable_version(user, slug, number)
    if not is_supplier(user, version):
        raise DomainError("No such dataset version.", code="not_found", status_code=HTTPStatus.NOT_FOUND)
    return version
