"""Pages answer a service's "not found" as Django's 404 page; the API answers every 404 in JSON."""

from django.http import Http404, JsonResponse

from .errors import DomainError, ErrorCode


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
