"""Signed, expiring download links, and the record (and ledger event) of each download."""

from __future__ import annotations

import logging
import posixpath
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse

from .. import visibility
from ..errors import DomainError
from ..models import (
    Download,
    Export,
)
from .documents import site_url
from .records import DOWNLOAD_SALT

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- downloads


def download_filename(export: Export) -> str:
    return posixpath.basename(export.file.name) if export.file.name else f"export-{export.pk}.zip"


def download_token(*, export: Export, user) -> str:
    """A signed, timestamped token naming this export and this user."""
    return signing.TimestampSigner(salt=DOWNLOAD_SALT).sign_object({"e": export.pk, "u": user.pk})


def check_download_token(token: str, *, export: Export, user) -> None:
    """Raise unless the token is ours, unexpired, and names this export and this user."""
    try:
        value = signing.TimestampSigner(salt=DOWNLOAD_SALT).unsign_object(
            token, max_age=settings.DOWNLOAD_URL_TTL
        )
    except signing.SignatureExpired:
        raise DomainError(
            "This download link has expired: ask for a new one.", code="link_expired", status_code=403
        ) from None
    except signing.BadSignature:
        raise DomainError("This download link is not valid.", code="invalid_link", status_code=403) from None
    if value.get("e") != export.pk or value.get("u") != user.pk:
        raise DomainError(
            "This download link was made for another user or export.", code="invalid_link", status_code=403
        )


def download_url_for(*, export: Export, user, request=None) -> str:
    """A link to download the export, bound to this user and valid for DOWNLOAD_URL_TTL seconds."""
    path = (
        reverse("api-export-download", kwargs={"pk": export.pk})
        + "?"
        + urlencode({"token": download_token(export=export, user=user)})
    )
    return request.build_absolute_uri(path) if request is not None else site_url(path)


def storage_download_url(export: Export) -> str | None:
    """A presigned URL straight to object storage (S3), or None when storage serves no URL of its own."""
    storage = export.file.storage
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages is a dependency, but local setups may lack boto3
        return None
    if not isinstance(storage, S3Storage):
        return None
    disposition = f'attachment; filename="{download_filename(export)}"'
    return storage.url(
        export.file.name,
        parameters={"ResponseContentDisposition": disposition},
        expire=settings.DOWNLOAD_URL_TTL,
    )


def record_download(*, export: Export, user, ip_address: str | None = None) -> Download:
    """Record who downloaded what, when: a Download row and an event in the dataset's ledger."""
    version = export.version
    organization = visibility.access_organization(user, version)
    with transaction.atomic():
        download = Download.objects.create(
            export=export, user=user, organization=organization, ip_address=ip_address or None
        )
        _ledger_event(export, user, organization, download)
    return download


def _ledger_event(export: Export, user, organization, download: Download) -> None:
    try:
        from governance import ledger
    except ImportError:  # the ledger ships separately; downloads are still recorded as rows
        return
    ledger.record_dataset_event(
        dataset=export.version.dataset,
        action="export_downloaded",
        # Pseudonymous on purpose: the ledger is append-only, so no name or e-mail goes in it.
        actor=f"user:{user.pk}",
        payload={
            "download": download.pk,
            "export": export.pk,
            "format": export.format,
            "options": export.options,
            "sha256": export.sha256,
            "organization": organization.slug if organization else None,
        },
        version_number=export.version.number,
    )
