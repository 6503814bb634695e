"""A published version's ``content/<part>.jsonl`` files, deflated once at publication; exports copy them.

Publication already builds every content row's canonical bytes to hash them (``governance.ledger.
content.compute_content``). Given ``ContentFiles`` as its ``files``, it also writes each part's lines
(the canonical row and "\\n": the bytes the content hash covers, which ``write_archive_content``
writes into every export) here, where a helper thread deflates them as a zip entry holds them
(``writing.DeflatingSpool``); each part becomes a blob in the default storage and a ``ContentPartFile``
row. An export of the version then copies the blobs into its archive (``ZipSink.copy_deflated``): no
labels' lines query, no deflating; the entries byte for byte those it would have written.

All or nothing: the blobs are written during the publication's transaction, before its commit, and
the rows in it; a publication that fails leaves blobs no row names, under ``blobs/``, which the orphan
sweeper (``deliveries.sweeping``) removes. Memory stays flat: the lines go by batches to a temporary
file, which is streamed to the storage.

An export does not trust a blob blindly: ``StoredPart.chunks`` checks the blob's length and the SHA-256
of its (deflated) bytes as they are copied, against the row, and refuses the export on a difference
(a cryptographic hash of the few compressed bytes costs less than inflating them to check the CRC).
The offline verifier would catch a changed file anyway: it hashes the rows against the signed hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.files import File
from django.core.files.storage import default_storage

from governance.ledger import content as ledger_content

from ..blobs import content_part_key
from ..formats.writing import COPY_CHUNK, DeflatedFile, DeflatingSpool
from ..models import ContentPartFile, DatasetVersion


class ContentFileMismatch(Exception):
    """A stored content file is not what its row says: the export is refused."""


class ContentFiles:
    """The files sink ``compute_content`` writes each part's lines to: stored deflated, recorded by part."""

    def __init__(self, version: DatasetVersion, *, storage=None):
        self.version = version
        self.storage = storage or default_storage

    @contextmanager
    def open(self, name: str) -> Iterator[DeflatingSpool]:
        part = name.removeprefix("content/").removesuffix(".jsonl")
        with DeflatingSpool(text=False) as spool:
            yield spool
            self._store(part, spool.finish())

    def _store(self, part: str, deflated: DeflatedFile) -> None:
        digest = hashlib.sha256()
        for chunk in deflated.chunks():
            digest.update(chunk)
        deflated.file.seek(0)
        key = self.storage.save(content_part_key(self.version.pk, part), File(deflated.file))
        ContentPartFile.objects.create(
            version=self.version,
            part=part,
            storage_key=key,
            size=deflated.size,
            crc=deflated.crc,
            sha256=deflated.sha256,
            compressed_size=deflated.compressed_size,
            deflated_sha256=digest.hexdigest(),
        )


def compute_and_store_content(*, version: DatasetVersion, record: bool = True) -> dict:
    """``compute_content`` of a version, each part's file stored on the way (publication's step)."""
    ContentPartFile.objects.filter(version=version).delete()  # a retried publication of a draft
    return ledger_content.compute_content(version=version, record=record, files=ContentFiles(version))


class StoredPart:
    """A stored content file as ``ZipSink.copy_deflated`` takes it (a finished ``DeflatedFile``'s fields)."""

    finished = True

    def __init__(self, row: ContentPartFile, *, storage=None):
        self.row = row
        self.storage = storage or default_storage
        self.size, self.crc, self.sha256 = row.size, row.crc, row.sha256
        self.compressed_size = row.compressed_size

    def chunks(self) -> Iterator[bytes]:
        """The blob's bytes; ContentFileMismatch at the end if their length or SHA-256 is not the row's."""
        digest = hashlib.sha256()
        length = 0
        with self.storage.open(self.row.storage_key, "rb") as blob:
            while chunk := blob.read(COPY_CHUNK):
                digest.update(chunk)
                length += len(chunk)
                if length > self.compressed_size:
                    break
                yield chunk
        if length != self.compressed_size or digest.hexdigest() != self.row.deflated_sha256:
            raise ContentFileMismatch(
                f"version {self.row.version_id}: the stored content/{self.row.part}.jsonl "
                f"({self.row.storage_key}) is not the file recorded at publication; export refused"
            )


def stored_content_parts(version: DatasetVersion) -> dict[str, StoredPart] | None:
    """The stored files of every part of a released version, or None (a draft, or published before them)."""
    if version.status == DatasetVersion.Status.DRAFT:
        return None
    rows = {row.part: row for row in ContentPartFile.objects.filter(version=version)}
    if set(rows) != set(ledger_content.PARTS):
        return None
    return {part: StoredPart(rows[part]) for part in ledger_content.PARTS}
