"""Recompute what each published version holds and compare it with what its signed event says.

``ledger verify`` proves that the ``version_published`` event is the one that was signed; this module
proves that the database still holds what that event's content hash covers (``governance.ledger.content``
writes the rule). For a rule-2 version it names the first difference: the part (and its table), the
row (by key) and the field. How the row is found:

1. Each part is recomputed, streamed in key order, and its digest compared with the event's
   ``parts``. Equal parts are done with.
2. For the first part that differs, the stored row reference (``ContentDigestBlock``) is first checked
   against the signed part digest: a reference that does not add up is not believed (someone with the
   rights to drop triggers edited it too), and the report says only which part changed.
3. Otherwise the live rows and the reference are walked side by side, both in key order: a key only
   in the reference is a row removed, a key only in the database a row added, a key in both with
   another digest a row changed; its short field digests say which field.

Guideline versions stored as a file (a PDF): the content hash covers their ``sha256`` column, not
the bytes in storage, so once the rows check out each such file is read again (streamed) and hashed;
a file replaced in storage, or gone, is reported at its guideline version (field ``document``).

Then each label row is checked against the ledger's own event about it in that version (the latest
event with an "after" state): the row's geometry must hash to the state's ``geometry_sha256``
(``ledger.events``: events bind geometry by hash), or equal its inline geometry (events written before
that rule). The content hash covers what the rows held at publication; this binds the rows to what
the label events say, so a row changed without an event before publication is found too. Labels
carried unchanged from an earlier version have no event in this one: they are checked in the version
whose event they have.

Memory stays bounded: one block of the reference and one chunk of rows (or of a file) at a time.
Rule-1 versions (published before rule 2) are recomputed under rule 1; it keeps no row reference,
so the report names the version and the rule only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import TextField
from django.db.models.functions import Cast

from marketplace.models import Dataset, DatasetVersion, Label

from ..models import GuidelineVersion, LabelEvent
from . import content
from .canonical import canonical_json_finite
from .chain import _plain
from .events import geometry_sha256

KEY_NAMES = {
    "schema": "schema",
    "categories": "name",
    "attributes": "scope:name",
    "datasheet": "field",
    "guidelines": "version",
    "items": "key",
    "labels": "uid",
}
_END = object()
FILE_CHUNK = 1 << 20
CHUNK = 2000  # label rows and events per fetch


@dataclass
class ContentDifference:
    """The first thing in a version that is not what its signed event covers."""

    version: str
    table: str = ""
    row: str = ""
    field: str = ""
    detail: str = ""

    def __str__(self) -> str:
        where = self.table
        if self.row:
            where += f" row {self.row}"
        if self.field:
            where += f" field {self.field}"
        return f"{self.version}: {where}: {self.detail}" if where else f"{self.version}: {self.detail}"


def verify_version(version: DatasetVersion) -> ContentDifference | None:
    """Return the first difference between a released version and its signed content, or None."""
    return _verify_rows(version) or _verify_guideline_files(version) or verify_label_geometries(version)


def verify_label_geometries(version: DatasetVersion) -> ContentDifference | None:
    """The first label row of ``version`` whose geometry is not what its event in that version binds.

    Rows and events are both streamed in uid order and merged (events: the latest with an "after"
    state per label), so a million labels never sit in memory. Each geometry is read as the text the
    database holds: when those bytes hash to the event's digest they are the rule's canonical
    encoding of the bound geometry (ingest writes exactly those bytes), and nothing is decoded;
    otherwise the geometry is decoded and hashed by the rule.
    """
    label = f"{version.dataset.slug} v{version.number}"
    rows = (
        Label.objects.filter(version=version)
        .order_by("uid")
        .annotate(geometry_text=Cast("geometry", TextField()))
        .values_list("uid", "geometry_text")
        .iterator(chunk_size=CHUNK)
    )
    states = _latest_states(version)
    # Both are server-side cursors on PostgreSQL: closed on the way out, found or not, so that
    # none stays open in the caller's transaction.
    with contextlib.closing(rows), contextlib.closing(states):
        return _first_changed_geometry(label, rows, states)


def _first_changed_geometry(label: str, rows, states) -> ContentDifference | None:
    state = next(states, None)
    for uid, text in rows:
        while state is not None and state[0] < uid:
            state = next(states, None)
        if state is None or state[0] != uid:
            continue  # no event in this version: carried unchanged, checked where its event is
        _uid, seq, digest, inline = state
        if digest is not None:
            same = isinstance(digest, str) and (
                hashlib.sha256(text.encode()).hexdigest() == digest
                or geometry_sha256(json.loads(text)) == digest
            )
        elif inline is not None:
            same = _plain(inline) == _plain(json.loads(text))
        else:
            continue  # a state with no geometry at all: nothing to compare
        if not same:
            return ContentDifference(
                label,
                table=content.TABLES["labels"],
                row=f"uid={str(uid)!r}",
                field="geometry",
                detail=f"does not hash to the geometry_sha256 of its ledger event (seq {seq}): changed "
                "without an event",
            )
    return None


def _latest_states(version: DatasetVersion) -> Iterator[tuple]:
    """(uid, seq, geometry_sha256, inline geometry) of each label's latest event with an "after" state."""
    events = (
        LabelEvent.objects.filter(
            dataset_id=version.dataset_id,
            version_number=version.number,
            label_uid__isnull=False,
            payload__has_key="after",
        )
        .order_by("label_uid", "-seq")
        .values_list("label_uid", "seq", "payload__after__geometry_sha256", "payload__after__geometry")
        .iterator(chunk_size=CHUNK)
    )
    last = None
    with contextlib.closing(events):
        for uid, seq, digest, inline in events:
            if uid != last:
                last = uid
                yield uid, seq, digest, inline


def _verify_rows(version: DatasetVersion) -> ContentDifference | None:
    label = f"{version.dataset.slug} v{version.number}"
    event = content.published_event(version)
    if event is None:
        return ContentDifference(label, detail="released, but the ledger has no version_published event")
    payload = event.payload or {}
    signed = payload.get("content_hash")
    if version.content_hash != signed:
        return ContentDifference(
            label,
            table="marketplace_datasetversion",
            row=f"id={version.pk}",
            field="content_hash",
            detail=f"{version.content_hash!r} is not the signed {signed!r}",
        )
    rule = payload.get("content_rule", 1)
    if rule == 1:
        if content.content_hash_rule_1(version) != signed:
            return ContentDifference(
                label,
                table="marketplace_item/marketplace_label",
                detail="items or labels differ from what was published (content rule 1 keeps no row "
                "reference: republish as a new version to get one)",
            )
        return None
    if rule != content.CONTENT_RULE:
        return ContentDifference(label, detail=f"unknown content rule {rule!r}")
    parts = payload.get("parts") or {}
    if content.content_hash_of(parts) != signed:
        return ContentDifference(label, detail="the event's part digests do not give its content hash")
    for part in content.PARTS:
        expected = parts.get(part) or {}
        if _part_digest(version, part) == expected:
            continue
        return _locate(version, label, part, expected) or ContentDifference(
            label, table=content.TABLES[part], detail="the part's digest differs; no single row found"
        )
    return None


def _part_digest(version: DatasetVersion, part: str) -> dict:
    """One part's count and digest, recomputed from the rows the database holds now.

    Each row is encoded by ``canonical_json_finite`` (orjson, proven byte for byte the rule's in
    tests/governance/test_canonical.py; content rows hold no NaN, ``_plain`` refuses it): the standard
    library's encoder took half of the labels part's CPU.
    """
    digest = content.PartDigest()
    sha256 = hashlib.sha256
    for row in content.iter_rows(version, part):
        digest.add(sha256(canonical_json_finite(row)).digest())
    return digest.as_dict()


def _verify_guideline_files(version: DatasetVersion) -> ContentDifference | None:
    """Re-hash the stored file of every guideline version the version names that has one."""
    label = f"{version.dataset.slug} v{version.number}"
    stored = (
        GuidelineVersion.objects.filter(pk__in=content.referenced_guideline_versions(version))
        .exclude(document="")
        .select_related("guideline")
        .order_by("pk")
    )
    for gv in stored:
        row = f"version={content.guideline_key(gv.guideline.title, gv.tag)!r}"
        digest = hashlib.sha256()
        try:
            with gv.document.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(FILE_CHUNK), b""):
                    digest.update(chunk)
        except (FileNotFoundError, OSError):
            return ContentDifference(
                label,
                table=content.TABLES["guidelines"],
                row=row,
                field="document",
                detail="the guideline's file is missing from storage",
            )
        if digest.hexdigest() != gv.sha256:
            return ContentDifference(
                label,
                table=content.TABLES["guidelines"],
                row=row,
                field="document",
                detail="the stored file's SHA-256 is not the sha256 pinned at publication: the file was replaced",
            )
    return None


def verify_dataset(dataset: Dataset) -> list[ContentDifference]:
    """The first difference of each released version of a dataset (empty: all as published)."""
    versions = DatasetVersion.objects.released().filter(dataset=dataset).select_related("dataset")
    found = []
    for version in versions.order_by("number"):
        difference = verify_version(version)
        if difference is not None:
            found.append(difference)
    return found


def _reference_matches(version: DatasetVersion, part: str, expected: dict) -> bool:
    digest = content.PartDigest()
    try:
        for _key, row_hex, _fields in content.stored_reference(version.pk, part):
            digest.add(bytes.fromhex(row_hex))
    except ValueError:
        return False
    return digest.as_dict() == expected


def _live(version: DatasetVersion, part: str) -> Iterator[tuple[str, str, str]]:
    for row in content.iter_rows(version, part):
        yield row["key"], content.row_digest(row).hex(), content.field_digests(part, row)


def _locate(version: DatasetVersion, label: str, part: str, expected: dict) -> ContentDifference | None:
    table, key_name = content.TABLES[part], KEY_NAMES[part]
    if not _reference_matches(version, part, expected):
        return ContentDifference(
            label,
            table=table,
            detail="differs from what was published; the stored row reference does not match the "
            "signed digest either, so the row cannot be named",
        )
    live, stored = _live(version, part), content.stored_reference(version.pk, part)
    now, then = next(live, _END), next(stored, _END)
    while now is not _END or then is not _END:
        if then is _END or (now is not _END and now[0] < then[0]):
            return ContentDifference(
                label, table=table, row=f"{key_name}={now[0]!r}", detail="added after publication"
            )
        if now is _END or then[0] < now[0]:
            return ContentDifference(
                label, table=table, row=f"{key_name}={then[0]!r}", detail="removed after publication"
            )
        if now[1] != then[1]:
            return ContentDifference(
                label,
                table=table,
                row=f"{key_name}={now[0]!r}",
                field=_changed_field(part, now[2], then[2]),
                detail="changed after publication",
            )
        now, then = next(live, _END), next(stored, _END)
    return None


def _changed_field(part: str, now: str, then: str) -> str:
    width = content.FIELD_DIGEST_HEX
    names = content.ROW_FIELDS[part]
    changed = [
        name
        for i, name in enumerate(names)
        if now[i * width : (i + 1) * width] != then[i * width : (i + 1) * width]
    ]
    if part == "datasheet":
        return ""  # the row is the question: its key already names the field
    return ", ".join(changed) or "(unknown)"
