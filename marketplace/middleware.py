"""Answers for faults a request cannot fix by itself, and a service's "not found" on pages.

The API renders ``DomainError`` in its own handler (marketplace.api.errors); these middlewares
cover what escapes a view: a page's 404, an upload past the size limit, a busy SQLite database;
and a path under /api/ that no route matches answers the API's JSON 404 (ApiNotFoundMiddleware).
"""

from __future__ import annotations

import logging

from django.db import OperationalError
from django.http import Http404, JsonResponse

from .errors import DomainError, ErrorCode

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


def is_database_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database table is locked": another writer held on."""
    return isinstance(exc, OperationalError) and "is locked" in str(exc)


class DomainErrorMiddleware:
    """Turn a ``DomainError`` with status 404 that escapes a page view into ``Http404``.

    Services raise ``DomainError`` and never ``Http404``; a page that does not catch the refusal
    (a dataset the user does not supply) must still be a 404 page, as it always was.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DomainError) and exception.status_code == 404:
            raise Http404(exception.detail) from exception
        return None


class DatabaseBusyMiddleware:
    """An upload past the size limit answers 413 (marketplace.uploads); and:

    a write that could not get SQLite's lock within the busy timeout answers 503, not 500.

    The transaction that failed rolled back whole, so nothing is half-written and the client may
    simply retry; Retry-After says when. (PostgreSQL never raises this: writers queue on row locks.)
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from .uploads import UploadTooLarge

        if isinstance(exception, UploadTooLarge):  # a page's upload (the API's handler answers its own)
            return JsonResponse({"code": ErrorCode.TOO_LARGE, "detail": str(exception.detail)}, status=413)
        if not is_database_busy(exception):
            return None
        logger.warning("database busy on %s %s: answered 503", request.method, request.path)
        response = JsonResponse(
            {
                "code": ErrorCode.DATABASE_BUSY,
                "detail": "The database is busy with another write; retry shortly.",
            },
            status=503,
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


class ApiNotFoundMiddleware:
    """Answer a 404 under ``/api/`` in the API's JSON error shape, not Django's HTML page.

    An unknown path (``/api/v1/nope/``) or a malformed id (``/versions/abc/``, a label uid that is
    not a UUID) matches no route, so no API view and no DRF handler ever runs: Django answers its
    404 page, in DEBUG its technical one. Views' own 404s are JSON already and pass through.
    Listed after CommonMiddleware, so a missing trailing slash still redirects first.
    """

    PREFIX = "/api/"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith(self.PREFIX)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse({"code": ErrorCode.NOT_FOUND.value, "detail": "Not found."}, status=404)
        return response
