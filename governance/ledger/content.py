"""What a published version holds, as one hash the signed ledger covers: the content rule.

The ``version_published`` event (``governance.ledger``, whose event hash rule is written at the top of
``governance/ledger/__init__.py`` and in ``verify_offline.py``) carries ``content_hash``, ``content_rule`` and, from rule 2 on,
``parts``. The tree head signed at publication covers that event, so the content hash is as tamper-
evident as the ledger itself.

Rule 2 (versions published since this module exists)
----------------------------------------------------
A version's content is cut into PARTS, always in this order::

    schema, categories, attributes, datasheet, guidelines, items, labels

Each part is a sequence of rows; every row is a JSON object with a ``"key"`` unique within its part,
and the rows are sorted by that key in Unicode code point order (PostgreSQL sorts with the "C"
collation, SQLite with BINARY: both are code point order for UTF-8). The rows (``ROW_FIELDS`` lists
each part's fields):

``schema``      one row, key "schema": the schema's description
``categories``  key = class name: source id (the id exports keep), supercategory, description,
                geometry types, keypoint names, skeleton, sigmas, flip index, colour
``attributes``  key = "scope:name": type, scope, allowed values, categories, describes_person,
                target distribution, description
``datasheet``   one row per question, key = the field name (e.g. "limitations"): the answer
``guidelines``  key = "title / tag", every guideline version the version or its labels name: the
                stored sha256, the SHA-256 of the stored text (so a text rewritten under a stale
                sha256 shows), the effective date
``items``       key = the item key: sha256, size in bytes, width, height, split, synthetic, attributes
``labels``      key = the label uid (final and candidate labels): item key, class name, geometry type,
                geometry, attributes, iscrowd, is_final, annotator pseudonym, made_at (ISO 8601 UTC,
                microseconds), guideline version ("title / tag"), source, model name and version

Hashes, with ``canonical_json`` the ledger's own (``verify_offline.canonical_json``)::

    row_digest   = SHA-256(canonical_json(row))
    part_digest  = SHA-256(row_digest_1 || row_digest_2 || ...)          (raw 32-byte digests)
    content_hash = SHA-256(canonical_json({"content_rule": 2,
                                           "parts": {part: {"count": n, "sha256": part_digest}}}))

JSON values are normalised as the ledger normalises payloads (``chain._plain``). Export archives
carry these rows verbatim in ``content/<part>.jsonl`` (one canonical row a line), which is all
``verify_offline.py --archive`` needs to recompute the hash.

Finding the row: a hash says *that* something changed, not *where*. At publication the row digests
are also stored, with a short digest of each field, in ``ContentDigestBlock`` (BLOCK_ROWS rows a
block). ``governance.ledger.content_verification`` believes that reference only after recomputing the signed
part digest from it, then walks it beside the live rows and names the first row missing, added or
different, and the field. The reference costs about 150-250 bytes a row.

Rule 1 (versions published before): SHA-256 over items (key, sha256, split, width, height) and labels
(uid, item, class, geometry type, geometry, attributes, is_final), streamed in key order; it is kept
(``content_hash_rule_1``, which ``marketplace.catalogue.stats.compute_content_hash`` calls), so those
versions verify under the rule they were published with (their event has no ``content_rule``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from django.db import connection
from django.db.models import F
from django.db.models.functions import Collate

from marketplace.models import (
    DATASHEET_SECTIONS,
    AnnotationSchema,
    AttributeSpec,
    Category,
    DatasetVersion,
    Datasheet,
    Item,
    Label,
)

from ..models import ContentDigestBlock, GuidelineVersion, LabelEvent, TreeHead
from ..verify_offline import canonical_json
from .canonical import canonical_json_finite, loads_text
from .chain import _iso as ledger_iso
from .chain import _plain
from .proofs import proof_bundle

CONTENT_RULE = 2
PARTS = ("schema", "categories", "attributes", "datasheet", "guidelines", "items", "labels")
BLOCK_ROWS = 1000
FIELD_DIGEST_HEX = 8  # per-field digests only point at a field; the security is in the full row digest

TABLES = {
    "schema": "marketplace_annotationschema",
    "categories": "marketplace_category",
    "attributes": "marketplace_attributespec",
    "datasheet": "marketplace_datasheet",
    "guidelines": "governance_guidelineversion",
    "items": "marketplace_item",
    "labels": "marketplace_label",
}
DATASHEET_FIELDS = sorted(f for _, questions in DATASHEET_SECTIONS.values() for f, _ in questions)
ROW_FIELDS = {
    "schema": ("description",),
    "categories": (
        "source_id",
        "supercategory",
        "description",
        "geometry_types",
        "keypoint_names",
        "skeleton",
        "keypoint_sigmas",
        "flip_idx",
        "color",
    ),
    "attributes": (
        "name",
        "type",
        "scope",
        "allowed_values",
        "categories",
        "describes_person",
        "target_distribution",
        "description",
    ),
    "datasheet": ("answer",),
    "guidelines": ("guideline", "tag", "sha256", "text_sha256", "effective_date"),
    "items": ("sha256", "size_bytes", "width", "height", "split", "synthetic", "attributes"),
    "labels": (
        "item",
        "category",
        "geometry_type",
        "geometry",
        "attributes",
        "iscrowd",
        "is_final",
        "annotator",
        "made_at",
        "guideline_version",
        "source",
        "model_name",
        "model_version",
    ),
}
CHUNK = 2000


def _iso(moment) -> str | None:
    return None if moment is None else ledger_iso(moment)


def _by_key(field_name: str):
    """Order by a text column in code point order, whatever the database's collation."""
    if connection.vendor == "postgresql":
        return Collate(F(field_name), "C")
    return F(field_name)


def guideline_key(title: str, tag: str) -> str:
    return f"{title} / {tag}"


# --------------------------------------------------------------------------- the rows


def iter_rows(version: DatasetVersion, part: str) -> Iterator[dict]:
    """Yield the canonical rows of one part of a version, in key order, streamed from the database."""
    return _ROWS[part](version)


def _schema_rows(version):
    schema = AnnotationSchema.objects.filter(version=version).values_list("description", flat=True).first()
    if schema is not None:
        yield {"key": "schema", "description": schema}


def _category_rows(version):
    rows = (
        Category.objects.filter(schema__version=version)
        .order_by(_by_key("name"))
        .values_list("name", *ROW_FIELDS["categories"])
    )
    for name, *values in rows.iterator(chunk_size=CHUNK):
        yield {"key": name, **{f: _plain(v) for f, v in zip(ROW_FIELDS["categories"], values, strict=True)}}


def _attribute_rows(version):
    fields = ROW_FIELDS["attributes"]
    rows = [
        dict(zip(fields, values, strict=True))
        for values in AttributeSpec.objects.filter(schema__version=version).values_list(*fields)
    ]
    for row in rows:
        row["key"] = f"{row['scope']}:{row['name']}"
    for row in sorted(rows, key=lambda r: r["key"]):  # a schema's attributes: a few dozen at most
        yield {k: _plain(v) for k, v in row.items()}


def _datasheet_rows(version):
    sheet = Datasheet.objects.filter(version=version).values(*DATASHEET_FIELDS).first()
    if sheet is not None:
        for name in DATASHEET_FIELDS:
            yield {"key": name, "answer": sheet[name]}


def referenced_guideline_versions(version: DatasetVersion) -> set[int]:
    """Ids of the guideline versions a version names, itself or through its labels."""
    referenced = set(version.guideline_versions.values_list("pk", flat=True))
    referenced |= set(
        Label.objects.filter(version=version, guideline_version__isnull=False)
        .values_list("guideline_version_id", flat=True)
        .distinct()
    )
    return referenced


def _guideline_rows(version):
    referenced = referenced_guideline_versions(version)
    rows = []
    for title, tag, sha, text, effective in GuidelineVersion.objects.filter(pk__in=referenced).values_list(
        "guideline__title", "tag", "sha256", "text", "effective_date"
    ):
        rows.append(
            {
                "key": guideline_key(title, tag),
                "guideline": title,
                "tag": tag,
                "sha256": sha,
                "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "effective_date": effective.isoformat() if effective else None,
            }
        )
    yield from sorted(rows, key=lambda r: r["key"])


def _item_rows(version):
    fields = ROW_FIELDS["items"]
    rows = Item.objects.filter(version=version).order_by(_by_key("key")).values_list("key", *fields)
    for key, *values in rows.iterator(chunk_size=CHUNK):
        yield {"key": key, **{f: _plain(v) for f, v in zip(fields, values, strict=True)}}


_LABEL_COLUMNS = (
    "uid",
    "item__key",
    "category__name",
    "geometry_type",
    "geometry",
    "attributes",
    "iscrowd",
    "is_final",
    "annotator__pseudonym",
    "made_at",
    "guideline_version_id",
    "source",
    "model_name",
    "model_version",
)


def _label_rows(version):
    return label_rows(version)


def label_rows(version, *, uids=None) -> Iterator[dict]:
    """The labels' rows (those of ``uids`` only, if given), read as the database's own values.

    No per-value converters of the ORM: a label's geometry and attributes are JSON text parsed once
    (``loads_text``: exact for any number) and normalised by ``_plain_parsed``; a version's labels are
    the bulk of its content, and the ORM's JSON converters with ``_plain``'s walk cost more than the
    rest of an export together. ``uids``: the export's database-built rows (``marketplace.exports.
    content_lines``) ask here for the few rows they cannot prove they write byte for byte.
    """
    tags = {
        pk: guideline_key(title, tag)
        for pk, title, tag in GuidelineVersion.objects.filter(labels__version=version)
        .distinct()
        .values_list("pk", "guideline__title", "tag")
    }
    query = Label.objects.filter(version=version)
    if uids is not None:
        query = query.filter(uid__in=uids)
    query = query.order_by("uid").values_list(*_LABEL_COLUMNS)
    sql, params = query.query.sql_with_params()
    with connection.chunked_cursor() as cursor:  # server-side on PostgreSQL: one chunk in memory
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK):
            for (
                uid,
                item,
                category,
                kind,
                geometry,
                attributes,
                iscrowd,
                is_final,
                annotator,
                made_at,
                guideline_id,
                source,
                model_name,
                model_version,
            ) in chunk:
                yield {
                    "key": _uuid_text(uid),
                    "item": item,
                    "category": category,
                    "geometry_type": kind,
                    "geometry": _plain_parsed(_parsed(geometry)),
                    "attributes": _plain_parsed(_parsed(attributes)),
                    "iscrowd": bool(iscrowd),
                    "is_final": bool(is_final),
                    "annotator": annotator,
                    "made_at": _iso(_aware(made_at)),
                    "guideline_version": tags.get(guideline_id),
                    "source": source,
                    "model_name": model_name,
                    "model_version": model_version,
                }


def _parsed(value):
    """A JSON column's value: the text the database gives (parsed), or what a driver decoded itself.

    ``loads_text``'s rule (orjson, the standard library for a run of 19 digits, which orjson would read
    as a float), with the digit runs found by ``bytes.translate`` and a substring search: 1-2 us a
    value, where ``loads_text``'s regex takes ten.
    """
    if not isinstance(value, str):
        return value
    if value == "{}":  # most labels' attributes
        return {}
    if _LONG_RUN not in value.encode("utf-8", "surrogatepass").translate(_DIGITS):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
    return loads_text(value)


_DIGITS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))  # digits to "0", the rest to " "
_LONG_RUN = b"0" * 19


def _uuid_text(value) -> str:
    text = str(value)
    return text if len(text) == 36 else str(uuid.UUID(text))  # SQLite stores 32 hex digits


def _aware(value):
    """The ORM's reading of a DateTimeField: SQLite gives ISO text in UTC, PostgreSQL an aware datetime."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _plain_parsed(value):
    """``_plain(value)`` for a value just parsed from JSON text, without the walk where it changes nothing.

    Parsed JSON holds only JSON's own types, so ``_plain`` can change only a float: -0.0 (to 0.0), one of
    1e16 or more (to an int), NaN or an infinity (refused). orjson prints each of those with "-0.0", an
    exponent (a digit, then "e": ``1e+16``) or "null" in its output, and an integer beyond 64 bits makes
    it refuse: any of them, or merely a string with a digit and an "e", a "null" or a "-0.0" in it,
    sends the value through ``_plain``. Not any "e": the key ``keypoints`` has one, and walking every
    keypoint geometry was half of a verification's Python time.
    tests/governance/test_content_fast.py checks it against ``_plain`` on random values.
    """
    if not value:
        return _plain(value)
    try:
        out = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _plain(value)
    if b"0e" in out.translate(_EXPONENT) or b"-0.0" in out or b"null" in out:
        return _plain(value)
    return value


_EXPONENT = bytes(48 if 48 <= i <= 57 else 101 if i == 101 else 32 for i in range(256))  # digits to "0"


_ROWS = {
    "schema": _schema_rows,
    "categories": _category_rows,
    "attributes": _attribute_rows,
    "datasheet": _datasheet_rows,
    "guidelines": _guideline_rows,
    "items": _item_rows,
    "labels": _label_rows,
}


# --------------------------------------------------------------------------- hashing


def row_digest(row: dict) -> bytes:
    """SHA-256 of a row of ``iter_rows``, whose values ``_plain`` made finite: the rule's bytes by
    ``canonical_json_finite`` (orjson; proven byte for byte in tests/governance/test_content_fast.py).
    The standard library's encoder was most of publication's content CPU."""
    return hashlib.sha256(canonical_json_finite(row)).digest()


def field_digests(part: str, row: dict) -> str:
    """Short digests of the row's fields, concatenated in ROW_FIELDS order: they point at a field.
    (A row of ``iter_rows``: finite values, as ``row_digest`` says.)"""
    return "".join(
        hashlib.sha256(canonical_json_finite(row.get(name))).hexdigest()[:FIELD_DIGEST_HEX]
        for name in ROW_FIELDS[part]
    )


def content_hash_of(parts: dict[str, dict]) -> str:
    """The rule-2 content hash of the per-part counts and digests."""
    return hashlib.sha256(canonical_json({"content_rule": CONTENT_RULE, "parts": parts})).hexdigest()


@dataclass
class PartDigest:
    count: int = 0
    _digest: object = field(default_factory=hashlib.sha256)

    def add(self, digest: bytes) -> None:
        self._digest.update(digest)
        self.count += 1

    def as_dict(self) -> dict:
        return {"count": self.count, "sha256": self._digest.hexdigest()}


def compute_content(*, version: DatasetVersion, record: bool = False, files=None) -> dict:
    """Return ``{"content_rule", "content_hash", "parts"}`` of a version (rule 2), streaming every part.

    ``record=True`` also stores the row reference (ContentDigestBlock) that ``content_verification`` uses to
    name a changed row; publication does that, inside its transaction. ``files``: a sink (``open(name)``
    as an export's) given each part's ``content/<part>.jsonl``, the bytes hashed here, each row's and
    "\n", which are those ``write_archive_content`` writes; publication stores them
    (``marketplace.catalogue.content_files``).
    """
    if record:
        ContentDigestBlock.objects.filter(version=version).delete()  # a retried publication of a draft
    parts = {}
    for part in PARTS:
        with files.open(f"content/{part}.jsonl") if files is not None else nullcontext() as out:
            parts[part] = _compute_part(version, part, record=record, out=out)
    return {"content_rule": CONTENT_RULE, "content_hash": content_hash_of(parts), "parts": parts}


def _compute_part(version: DatasetVersion, part: str, *, record: bool, out) -> dict:
    digest = PartDigest()
    block: list[str] = []
    index = 0
    for row in iter_rows(version, part):
        data = canonical_json_finite(row)  # finite rows: the rule's bytes (see row_digest)
        d = hashlib.sha256(data).digest()  # row_digest(row)
        digest.add(d)
        if out is not None:
            out.write(data + b"\n")
        if record:
            block.append(f"{json.dumps(row['key'])}\t{d.hex()}\t{field_digests(part, row)}")
            if len(block) == BLOCK_ROWS:
                _store_block(version, part, index, block)
                block, index = [], index + 1
    if record and block:
        _store_block(version, part, index, block)
    return digest.as_dict()


def _store_block(version, part, index, lines):
    ContentDigestBlock.objects.create(
        version=version,
        part=part,
        index=index,
        rows="\n".join(lines),
    )


def stored_reference(version_id: int, part: str) -> Iterator[tuple[str, str, str]]:
    """Yield (key, row digest hex, field digests) of the stored reference, one block at a time."""
    blocks = (
        ContentDigestBlock.objects.filter(version_id=version_id, part=part)
        .order_by("index")
        .values_list("rows", flat=True)
    )
    for text in blocks.iterator(chunk_size=4):
        for line in text.split("\n"):
            key, digest, fields = line.split("\t")  # the key is JSON: its tabs and newlines are escaped
            yield json.loads(key), digest, fields


def published_event(version: DatasetVersion) -> LabelEvent | None:
    """The version's (last) ``version_published`` event."""
    return (
        LabelEvent.objects.filter(
            dataset_id=version.dataset_id, action="version_published", version_number=version.number
        )
        .order_by("-seq")
        .first()
    )


# --------------------------------------------------------------------------- rule 1


def content_hash_rule_1(version: DatasetVersion) -> str:
    """Content rule 1: SHA-256 over every item and label of a version, in a stable order, streamed."""
    digest = hashlib.sha256()
    for key, sha, split, w, h in (
        Item.objects.filter(version=version)
        .order_by("key")
        .values_list("key", "sha256", "split", "width", "height")
    ).iterator(chunk_size=CHUNK):
        digest.update(_rule_1_json(["item", key, sha, split, w, h]))
        digest.update(b"\n")
    rows = (
        Label.objects.filter(version=version)
        .order_by("uid")
        .values_list(
            "uid", "item__key", "category__name", "geometry_type", "geometry", "attributes", "is_final"
        )
    )
    for row in rows.iterator(chunk_size=CHUNK):
        digest.update(_rule_1_json(["label", *row]))
        digest.update(b"\n")
    return digest.hexdigest()


def _rule_1_json(value) -> bytes:
    # Rule 1's own canonical JSON (marketplace.catalogue.stats.canonical_json before rule 2).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# --------------------------------------------------------------------------- export archives


def write_archive_content(
    sink, version: DatasetVersion, selection: dict | None = None, *, part_lines: dict | None = None
) -> None:
    """Put the version's canonical rows and its signed evidence into an export archive.

    ``content/<part>.jsonl``: every part, one canonical row a line, in key order (what the content
    hash is computed over). ``evidence/version_published.json``: the version_published event, its
    inclusion proof and the tree head signed at publication, with the public key for convenience
    (an auditor checks against the key they hold, not this one). ``evidence/export.json``: what the
    export took (format, splits, classes, candidates), so the verifier can tell a label left out by
    the selection from a label removed. ``verify_offline.py --archive`` walks manifest -> content
    hash -> event -> inclusion proof -> signature, then the format files against the content.

    ``part_lines``: for a part, an iterable of bytes that ARE that part's lines (each canonical row
    and its newline, in key order), made elsewhere (the export builds the labels' in the database,
    ``marketplace.exports.content_lines``, whose tests prove the bytes equal these); or those bytes
    already deflated (a finished ``marketplace.formats.writing.DeflatedFile``, which has ``chunks``
    and ``crc``), handed to ``sink.copy_deflated``.
    """
    if selection is not None:
        sink.write("evidence/export.json", canonical_json(selection))
    for part in PARTS:
        given = part_lines.get(part) if part_lines is not None else None
        if given is not None and hasattr(given, "crc"):
            sink.copy_deflated(f"content/{part}.jsonl", given)
            continue
        with sink.open(f"content/{part}.jsonl") as out:
            if part_lines is not None and part in part_lines:
                for chunk in part_lines[part]:
                    out.write(chunk)
                continue
            # The same bytes as canonical_json (proved in tests/governance/test_canonical.py); rows hold
            # no NaN (_plain refuses it), so their None values keep the fast path.
            for row in iter_rows(version, part):
                out.write(canonical_json_finite(row) + b"\n")
    event = published_event(version) if version.status != DatasetVersion.Status.DRAFT else None
    if event is None or (event.payload or {}).get("content_rule") != CONTENT_RULE:
        return  # a draft, or a version published under rule 1: no rule-2 evidence to carry
    head = TreeHead.objects.filter(version=version).order_by("tree_size").first()
    bundle = proof_bundle(event, head=head)
    sink.write("evidence/version_published.json", canonical_json(bundle))
