"""Content-addressed file storage: a file's key is its SHA-256, so versions share unchanged images."""

from __future__ import annotations

import hashlib
import secrets

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def blob_key(sha256: str, suffix: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}{suffix.lower()}"


def put_blob(data: bytes, *, suffix: str) -> tuple[str, str]:
    """Store bytes under their hash (once); return (storage key, sha256)."""
    sha = hashlib.sha256(data).hexdigest()
    key = blob_key(sha, suffix)
    if not default_storage.exists(key):
        saved = default_storage.save(key, ContentFile(data))
        # A concurrent writer may have won the race; storages then rename ours. Keep one name.
        if saved != key:
            default_storage.delete(saved)
    return key, sha


def content_part_key(version_id: int, part: str) -> str:
    """Where a published version's deflated ``content/<part>.jsonl`` goes: a new name each publication.

    Under ``blobs/`` so that the orphan sweeper (deliveries.sweeping) removes one a failed publication
    left; never reused, so no sweep can delete a blob a publication in progress has decided to keep.
    """
    return f"blobs/content/{version_id}/{part}-{secrets.token_hex(8)}.jsonl.deflate"
