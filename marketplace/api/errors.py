"""One JSON error shape for the whole API: {"code": "...", "detail": "...", "fields"?: {...}}."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A business rule said no; services raise it, the API turns it into a 4xx."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, status_code: int | None = None, extra=None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.extra = extra or {}


def _first_code(codes):
    if isinstance(codes, str):
        return codes
    if isinstance(codes, dict):
        for value in codes.values():
            return _first_code(value)
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return "invalid"


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"code": exc.code, "detail": exc.detail, **exc.extra}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        code = exc.code or "invalid"
        exc = exceptions.ValidationError(detail={"non_field_errors": exc.messages}, code=code)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = {
            "code": _first_code(exc.get_codes()),
            "detail": "The request is not valid.",
            "fields": exc.detail,
        }
        if isinstance(exc.detail, dict) and list(exc.detail) == ["non_field_errors"]:
            body["detail"] = " ".join(str(m) for m in exc.detail["non_field_errors"])
        elif isinstance(exc.detail, list):
            body = {"code": _first_code(exc.get_codes()), "detail": " ".join(str(m) for m in exc.detail)}
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        body = {
            "code": getattr(detail, "code", None) or getattr(exc, "default_code", "error"),
            "detail": str(detail),
        }
    response.data = body
    return response
