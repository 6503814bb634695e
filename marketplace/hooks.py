"""Facts other apps add to the marketplace's documents, registered in their ``AppConfig.ready()``.

The Croissant of a version carries the agreement, balance and source figures that governance
measures; marketplace must not import ``governance.quality``, so governance registers a provider
here (``GovernanceConfig.ready()``) and ``exports.documents`` asks the registry. Without a provider
the Croissant still carries the datasheet and what the labels say; a provider's fields replace
those of the same name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import DatasetVersion

log = logging.getLogger(__name__)

CroissantRaiProvider = Callable[["DatasetVersion"], dict]
_croissant_rai: dict[str, CroissantRaiProvider] = {}


def register_croissant_rai(name: str, provider: CroissantRaiProvider) -> None:
    """Add (or replace, by name) a provider of measured ``rai:`` properties; idempotent."""
    _croissant_rai[name] = provider


def croissant_rai(version: DatasetVersion) -> dict:
    """The ``rai:`` properties every registered provider measures for a version, merged in name order."""
    fields: dict = {}
    for name in sorted(_croissant_rai):
        fields.update(_croissant_rai[name](version))
    return fields
