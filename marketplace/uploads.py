"""Upload size enforced while the body streams in, before it is written anywhere.

Django saves a multipart file to a temporary file as it arrives and only then would a view
see its size: a 1 MB limit answered 413 after 126 MB had been written. This handler sits first
in ``FILE_UPLOAD_HANDLERS``: it refuses a request whose declared length is already too big
before reading it, and stops a file the moment its bytes pass ``DELIVERY_MAX_BYTES`` (the
largest file the registry accepts anywhere), so at most one more chunk reaches the disk.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework import status
from rest_framework.exceptions import APIException

FORM_OVERHEAD = 1024 * 1024  # multipart headers and the other fields of the form


class UploadTooLarge(APIException, RequestDataTooBig):
    """413 in the API; on a page, where CSRF checking reads the form first, Django's 400."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The upload is larger than the registry accepts."


class LimitedUploadHandler(FileUploadHandler):
    """Refuses an upload past ``DELIVERY_MAX_BYTES`` while it streams (raises UploadTooLarge)."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.limit = settings.DELIVERY_MAX_BYTES
        if content_length and content_length > self.limit + FORM_OVERHEAD:
            raise UploadTooLarge(f"the request is {content_length} bytes; at most {self.limit} are accepted")
        return None  # let the other handlers parse

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received = start + len(raw_data)
        if self.received > self.limit:
            raise UploadTooLarge(f"the file is larger than the {self.limit} bytes accepted")
        return raw_data  # pass it on to the handler that stores it

    def file_complete(self, file_size):
        return None
