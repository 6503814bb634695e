"""Query parameters the API refuses rather than ignores.

A misspelt filter (``comercial_use=true``) or a sort parameter the list does not have
(``ordering=price``) used to answer the unfiltered list with 200, which reads as "every dataset
allows commercial use". Lists with a filter set now answer 400 ``unknown_parameter`` for any
parameter they do not know, and yes/no parameters answer 400 ``invalid_boolean`` for anything but
true/false (``marketplace.catalogue.search.StrictNullBooleanField``).
"""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend

from marketplace.errors import DomainError, ErrorCode

# Parameters every list understands besides its filters: paging and DRF's format override.
COMMON_PARAMETERS = frozenset({"page", "page_size", "format"})
_SORT_WORDS = frozenset({"ordering", "order", "order_by", "sort_by"})


def _shown(name: str) -> str:
    """A parameter name for a message: bounded, since it is the caller's input."""
    return repr(name[:40] + ("…" if len(name) > 40 else ""))


def refuse_unknown_parameters(query_params, known, *, sort_parameter: str | None = None) -> None:
    """Raise 400 ``unknown_parameter`` naming the first query parameter not in ``known``."""
    allowed = set(known) | COMMON_PARAMETERS
    for name in query_params:
        if name in allowed:
            continue
        if sort_parameter and name.lower() in _SORT_WORDS:
            detail = f"Unknown query parameter {_shown(name)}: this list sorts with ?{sort_parameter}=."
        else:
            detail = f"Unknown query parameter {_shown(name)}. Known: {', '.join(sorted(allowed))}."
        raise DomainError(detail, code=ErrorCode.UNKNOWN_PARAMETER)


def parse_bool(query_params, name: str) -> bool | None:
    """A yes/no query parameter: True, False, None when absent; 400 ``invalid_boolean`` otherwise."""
    raw = query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise DomainError(f"{name} must be true or false.", code=ErrorCode.INVALID_BOOLEAN)


class StrictFilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend that answers 400 for a parameter the list's filter set does not know."""

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None and getattr(view, "action", "list") == "list":
            refuse_unknown_parameters(
                request.query_params,
                filterset_class.base_filters,
                sort_parameter="sort" if "sort" in filterset_class.base_filters else None,
            )
        return super().filter_queryset(request, queryset, view)
