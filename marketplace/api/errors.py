"""One JSON error shape for the whole API: {"code": "...", "detail": "...", "fields"?: {...}}.

Renders ``marketplace.errors.DomainError`` (the services' vocabulary) and DRF's and Django's own
exceptions; it defines no error of its own.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.errors import DomainError, LoginRequired


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
    if isinstance(exc, LoginRequired):
        # DRF's own NotAuthenticated adds the WWW-Authenticate header of the first authenticator.
        exc = exceptions.NotAuthenticated(exc.detail)
    elif isinstance(exc, DomainError):
        return Response({"code": str(exc.code), "detail": exc.detail, **exc.extra}, status=exc.status_code)
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
