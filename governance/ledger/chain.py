"""The chain: one event's document, the hash rule that links it to the one before, appending.

See the package docstring (``governance.ledger``) for the document's fields and the hash rule.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone

from marketplace.models import Dataset

from ..models import LabelEvent
from ..verify_offline import GENESIS_PREV_HASH
from . import merkle
from .canonical import document_json, dumps_text, event_hash  # orjson: verify_offline's bytes
from .copying import copy_rows

BATCH_SIZE = 5000
# 2**10 = 1024 events per cached block: a proof reads one block of leaves and n/1024 block roots.
CHUNK_LEVEL = 10

_COPY_COLUMNS = (
    "dataset_id",
    "seq",
    "label_uid",
    "action",
    "actor",
    "occurred_at",
    "recorded_at",
    "guideline_version",
    "source",
    "model_name",
    "model_version",
    "payload",
    "delivery_id",
    "version_number",
    "prev_hash",
    "hash",
)
# The columns a document is built from, in _document's argument order.
_DOC_COLUMNS = (
    "seq",
    "label_uid",
    "action",
    "actor",
    "occurred_at",
    "recorded_at",
    "guideline_version",
    "source",
    "model_name",
    "model_version",
    "payload",
    "delivery_id",
    "version_number",
)
_ACTIONS = frozenset(LabelEvent.Action.values)
_LABEL_ACTIONS = frozenset(
    {"created", "modified", "deleted", "reviewed", "accepted", "rejected", "consensus"}
)


class LedgerError(Exception):
    """A ledger operation cannot be done as asked (no tree head yet, an unknown action ...)."""


class LedgerIntegrityError(LedgerError):
    """The stored ledger does not add up: refuse to sign or prove over it; run ``ledger verify``."""


@dataclass
class EventData:
    """One event to append; ``append_events`` adds the dataset, seq, recorded_at and the hashes."""

    label_uid: uuid.UUID | None
    action: str
    actor: str
    occurred_at: datetime
    guideline_version: str = ""
    source: str = ""
    model_name: str = ""
    model_version: str = ""
    payload: dict = field(default_factory=dict)
    delivery_id: int | None = None
    version_number: int | None = None
    # The payload's canonical JSON text from ``canonical.plain_json_text`` (proof it needs no ``_plain``),
    # or None: then the payload is normalised and encoded here. Set by the ingest's hot path.
    payload_json: str | None = None


# --------------------------------------------------------------------------- documents and hashing


def _iso(moment: datetime) -> str:
    """The one timestamp format of the ledger: UTC, microseconds, ``+00:00``."""
    if moment.tzinfo is None:
        raise ValueError(f"ledger times must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _plain(value):
    """Return ``value`` as plain JSON that both databases give back unchanged.

    PostgreSQL's jsonb stores numbers as numeric and prints them without exponent, so a float such as
    1e16 comes back as the integer 10000000000000000 and -0.0 as 0.0; they are normalised here, before
    hashing, to what will be read back. Tuples become lists. Anything that is not JSON is refused.
    """
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return value
    if kind is float:
        return _plain_float(value)
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if kind is dict:
        for key in value:
            if type(key) is not str:
                raise ValueError(f"ledger payload keys must be strings, got {key!r}")
        return {key: _plain(item) for key, item in value.items()}
    # Subclasses (an IntEnum, a str enum, an OrderedDict) are turned into their plain JSON form.
    if isinstance(value, bool | int | str):
        return json.loads(json.dumps(value))
    if isinstance(value, float):
        return _plain_float(float(value))
    if isinstance(value, dict):
        return _plain(dict(value))
    if isinstance(value, list | tuple):
        return _plain(list(value))
    raise ValueError(f"ledger payloads hold plain JSON only, got {type(value).__name__}")


def _plain_float(value: float):
    if value != value or value in (math.inf, -math.inf):
        raise ValueError("ledger payloads cannot hold NaN or infinity")
    if value == 0:
        return 0.0
    if -1e16 < value < 1e16:
        return value
    return int(value) if value.is_integer() else value


def _document(
    slug,
    seq,
    label_uid,
    action,
    actor,
    occurred_at,
    recorded_at,
    guideline_version,
    source,
    model_name,
    model_version,
    payload,
    delivery_id,
    version_number,
) -> dict:
    """The hashed content of one event (without ``prev_hash`` and ``hash``)."""
    return {
        "dataset": slug,
        "seq": seq,
        "label_uid": label_uid if label_uid is None or isinstance(label_uid, str) else str(label_uid),
        "action": action,
        "actor": actor,
        "occurred_at": occurred_at if isinstance(occurred_at, str) else _iso(occurred_at),
        "recorded_at": recorded_at if isinstance(recorded_at, str) else _iso(recorded_at),
        "guideline_version": guideline_version,
        "source": source,
        "model_name": model_name,
        "model_version": model_version,
        "payload": payload,
        "delivery_id": delivery_id,
        "version_number": version_number,
    }


def event_document(event: LabelEvent) -> dict:
    """Return the event as the verifier reads it: the hashed fields plus ``prev_hash`` and ``hash``."""
    document = _document(event.dataset.slug, *(getattr(event, name) for name in _DOC_COLUMNS))
    document["prev_hash"] = event.prev_hash
    document["hash"] = event.hash
    return document


def _leaf(hash_hex: str) -> bytes:
    return merkle.leaf_hash(bytes.fromhex(hash_hex))


# --------------------------------------------------------------------------- appending


def append_events(*, dataset: Dataset, events: Iterable[EventData]) -> int:
    """Append events to the dataset's chain, in order, in batches; return how many were appended.

    Call it inside the caller's transaction (ingest does, so labels and their events commit together).
    The dataset row stays locked until that transaction ends. Generators are consumed lazily, BATCH_SIZE
    events at a time; on PostgreSQL each batch goes in with COPY.
    """
    with transaction.atomic():
        slug, head_seq, head_hash = _lock_chain_head(dataset)
        seq, prev_hash = head_seq + 1, head_hash
        recorded_at = timezone.now()
        recorded_iso, last_moment = _iso(recorded_at), []
        appended = 0
        events = iter(events)
        while batch := list(itertools.islice(events, BATCH_SIZE)):
            prepared = []
            for data in batch:
                document, label_uid, occurred_at = _prepare(slug, seq, data, recorded_iso, last_moment)
                if data.payload_json is None:
                    hash_hex = event_hash(document, prev_hash)
                else:
                    content = document_json(document, data.payload_json)
                    hash_hex = hashlib.sha256(content + bytes.fromhex(prev_hash)).hexdigest()
                prepared.append((document, label_uid, occurred_at, prev_hash, hash_hex, data.payload_json))
                prev_hash = hash_hex
                seq += 1
            _write(dataset.pk, prepared, recorded_at)
            appended += len(prepared)
        return appended


def record_dataset_event(
    *,
    dataset: Dataset,
    action: str,
    actor: str,
    payload: dict | None = None,
    version_number: int | None = None,
    occurred_at: datetime | None = None,
) -> LabelEvent:
    """Append one dataset-level event (version published or deprecated, entitlement granted, export downloaded)."""
    if action in _LABEL_ACTIONS:
        raise LedgerError(f"{action!r} is a label action; append it with append_events and a label uid")
    data = EventData(
        label_uid=None,
        action=action,
        actor=actor,
        occurred_at=occurred_at or timezone.now(),
        payload=payload or {},
        version_number=version_number,
    )
    with transaction.atomic():
        append_events(dataset=dataset, events=[data])
        return LabelEvent.objects.filter(dataset=dataset).order_by("-seq").first()


def _lock_chain_head(dataset: Dataset) -> tuple[str, int, str]:
    """Lock the dataset row and return (slug, last seq or -1, last hash or the genesis hash).

    NO KEY UPDATE, not UPDATE: inserting a version or a delivery takes a KEY SHARE lock on the dataset
    row, which FOR UPDATE would wait on and deadlock with; appenders still exclude one another.
    """
    slug = Dataset.objects.select_for_update(no_key=True).values_list("slug", flat=True).get(pk=dataset.pk)
    last = (
        LabelEvent.objects.filter(dataset_id=dataset.pk).order_by("-seq").values_list("seq", "hash").first()
    )
    return (slug, *last) if last else (slug, -1, GENESIS_PREV_HASH)


def _prepare(
    slug: str, seq: int, data: EventData, recorded_at: str, last_moment: list
) -> tuple[dict, uuid.UUID | None, datetime]:
    """Validate one event; return its document, its label uid and when it occurred (UTC).

    ``last_moment``: the previous event's occurred_at, in UTC and as text (an ingest's events without
    their own time share one moment: it is converted once).
    """
    if data.action not in _ACTIONS:
        raise LedgerError(f"unknown ledger action {data.action!r}")
    label_uid = data.label_uid
    if label_uid is not None and not isinstance(label_uid, uuid.UUID):
        label_uid = uuid.UUID(str(label_uid))
    if not isinstance(data.payload, dict):
        raise LedgerError("an event payload must be a JSON object")
    if data.occurred_at.tzinfo is None:
        raise LedgerError(f"occurred_at must be timezone-aware, got {data.occurred_at!r}")
    if last_moment and last_moment[0] is data.occurred_at:
        occurred_at, occurred_iso = last_moment[1], last_moment[2]
    else:
        occurred_at = data.occurred_at.astimezone(UTC)
        occurred_iso = _iso(occurred_at)
        last_moment[:] = (data.occurred_at, occurred_at, occurred_iso)
    document = _document(
        slug,
        seq,
        label_uid,
        data.action,
        data.actor or "",
        occurred_iso,
        recorded_at,
        data.guideline_version or "",
        data.source or "",
        data.model_name or "",
        data.model_version or "",
        data.payload if data.payload_json is not None else _plain(data.payload),
        data.delivery_id,
        data.version_number,
    )
    return document, label_uid, occurred_at


def _use_copy() -> bool:
    return connection.vendor == "postgresql"


def _write(dataset_id: int, prepared: list[tuple], recorded_at: datetime) -> None:
    if _use_copy():
        # COPY is ~5x faster than INSERT for wide rows (REFERENCE.md: 59k vs 11k rows/s). The raw
        # psycopg connection is inside Django's transaction, so the rows commit or roll back with it.
        # Lines are written in COPY's text format directly: the document already holds every value as
        # text, and psycopg's per-value adaptation would cost as much as the hashing.
        text = "".join(_copy_line(dataset_id, entry[0], *entry[3:]) for entry in prepared)
        copy_rows(f"COPY governance_labelevent ({', '.join(_COPY_COLUMNS)}) FROM STDIN", text)
        return
    LabelEvent.objects.bulk_create(
        [
            LabelEvent(
                dataset_id=dataset_id,
                seq=document["seq"],
                label_uid=label_uid,
                action=document["action"],
                actor=document["actor"],
                occurred_at=occurred_at,
                recorded_at=recorded_at,
                guideline_version=document["guideline_version"],
                source=document["source"],
                model_name=document["model_name"],
                model_version=document["model_version"],
                payload=document["payload"],
                delivery_id=document["delivery_id"],
                version_number=document["version_number"],
                prev_hash=prev_hash,
                hash=hash_hex,
            )
            for document, label_uid, occurred_at, prev_hash, hash_hex, _ in prepared
        ]
    )


COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _needs_escape(value: str) -> bool:
    """Does ``value`` hold a character COPY's text format escapes (backslash, tab, CR or LF)?

    Four substring scans (memchr each): about a sixth of a regex's time on a geometry's JSON.
    """
    return "\\" in value or "\t" in value or "\n" in value or "\r" in value


def copy_text(value: str) -> str:
    """A string as a value of COPY's text format (backslash, tab and line breaks escaped)."""
    return value.translate(_COPY_ESCAPES) if _needs_escape(value) else value


def copy_texts(values: tuple[str, ...]) -> tuple[str, ...]:
    """``copy_text`` of each value, with one scan for the usual row where none needs escaping."""
    if not _needs_escape("".join(values)):
        return values
    return tuple(map(copy_text, values))


def _copy_int(value: int | None) -> str:
    return COPY_NULL if value is None else str(int(value))


def _copy_line(
    dataset_id: int, document: dict, prev_hash: str, hash_hex: str, payload_json: str | None = None
) -> str:
    """One row in COPY's text format, columns as _COPY_COLUMNS."""
    # jsonb keeps no key order: the canonical (sorted) bytes store the very value dumps_text would.
    payload = dumps_text(document["payload"]) if payload_json is None else payload_json
    action, actor, guideline, source, model_name, model_version, payload = copy_texts(
        (
            document["action"],
            document["actor"],
            document["guideline_version"],
            document["source"],
            document["model_name"],
            document["model_version"],
            payload,
        )
    )
    return (
        "\t".join(
            (
                str(dataset_id),
                str(document["seq"]),
                document["label_uid"] or COPY_NULL,
                action,
                actor,
                document["occurred_at"],
                document["recorded_at"],
                guideline,
                source,
                model_name,
                model_version,
                payload,
                _copy_int(document["delivery_id"]),
                _copy_int(document["version_number"]),
                prev_hash,
                hash_hex,
            )
        )
        + "\n"
    )


def _stream(sql: str, params: Sequence) -> Iterator[tuple]:
    """Yield the rows of a query without holding them all: a server-side cursor on PostgreSQL."""
    if connection.vendor == "postgresql":
        # Django's own iterator() adds ~13 us of conversion per row; at a million rows that is the
        # whole verification budget. A named cursor streams plain tuples in BATCH_SIZE round trips.
        name = f"ledger_{uuid.uuid4().hex}"
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.connection.cursor(name=name) as named,
        ):
            named.itersize = BATCH_SIZE
            named.execute(sql, params)
            yield from named
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(BATCH_SIZE):
            yield from rows


def _fetch(sql: str, params: Sequence) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _chain_hashes(dataset_id: int, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, str]]:
    """Yield (seq, hash) of a dataset's events in order, from seq ``lo`` up to ``hi`` (excluded)."""
    sql = "SELECT seq, hash FROM governance_labelevent WHERE dataset_id = %s AND seq >= %s"
    params = [dataset_id, lo]
    if hi is not None:
        sql += " AND seq < %s"
        params.append(hi)
    return _stream(sql + " ORDER BY seq", params)
