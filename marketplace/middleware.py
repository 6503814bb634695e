"""Answers for faults a request cannot fix by itself, in the API's one error shape."""

from __future__ import annotations

import logging

from django.db import OperationalError
from django.http import JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


def is_database_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database table is locked": another writer held on."""
    return isinstance(exc, OperationalError) and "is locked" in str(exc)


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
            return JsonResponse({"code": "too_large", "detail": str(exception.detail)}, status=413)
        if not is_database_busy(exception):
            return None
        logger.warning("database busy on %s %s: answered 503", request.method, request.path)
        response = JsonResponse(
            {"code": "database_busy", "detail": "The database is busy with another write; retry shortly."},
            status=503,
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
