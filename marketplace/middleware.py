"""Pages answer a service's "not found" as Django's 404 page (the API has its own handler)."""

from django.http import Http404

from .errors import DomainError


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
