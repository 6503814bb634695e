"""The label ledger: append-only, hash-chained events per dataset, signed Merkle tree heads, proofs.

Every dataset has one chain of ``LabelEvent`` rows, numbered by ``seq`` from 0. Each event is hashed
with ``verify_offline.event_hash`` over its *document*, the JSON object that the API serves and that
``governance/verify_offline.py`` checks, so the server and an auditor's copy of the verifier apply
the same rule byte for byte::

    hash = SHA-256(canonical_json(document) + bytes.fromhex(prev_hash))

The document holds exactly these fields, all covered by the hash:

``dataset``            the dataset's slug
``seq``                position in the chain (0, 1, 2 ...)
``label_uid``          the label's stable uid (str) or null for dataset-level events
``action``             created, modified, deleted, reviewed, accepted, rejected, consensus,
                       version_published, version_deprecated, entitlement_granted, export_downloaded
``actor``              annotator pseudonym, model name, "consensus", or an organisation/user
``occurred_at``        when it happened, as the source says (ISO 8601, UTC, microseconds)
``recorded_at``        when the registry wrote it down (same format)
``guideline_version``  the guideline version tag it was made under, or ""
``source``             human, model or consensus, or ""
``model_name``, ``model_version``  for model-made labels, else ""
``payload``            geometry and attributes before/after, or the dataset event's details
``delivery_id``        the delivery that brought it, or null
``version_number``     the dataset version it belongs to, or null

plus ``prev_hash`` (64 zeros for seq 0) and ``hash``, which are not hashed themselves. Payloads are
normalised before hashing so that they come back from either database unchanged (see ``_plain``).
The dataset's slug is part of every hash: renaming a dataset that has a ledger breaks verification.

Merkle tree: leaf i is ``SHA-256(0x00 + bytes.fromhex(hash of event i))`` (RFC 6962), built with
``governance.merkle``. Publishing a version signs a tree head (dataset, size, root, time, key id)
with the registry's Ed25519 key (``governance.signing``). Full aligned blocks of 2**CHUNK_LEVEL
leaves have their roots cached in ``LedgerChunk`` so an inclusion proof reads ~2,000 hashes rather
than the whole ledger; every proof is verified against the signed root before it is served.

Concurrency: appending and signing lock the dataset row (``SELECT ... FOR NO KEY UPDATE``), so two
transactions cannot both extend the same chain head; the ``(dataset, seq)`` and ``hash`` unique
constraints back that up on SQLite, which has no row locks but serialises writers.

Append-only: ``LabelEvent.save()``/``delete()`` and the QuerySet's ``update()``/``delete()`` refuse,
and database triggers refuse UPDATE and DELETE from anywhere (migration 0004). An event appended after
the latest tree head has no proof until the next head is signed (at the next publication).

Cost (bench/ledger, 2 cores): verification re-encodes every event's canonical JSON, ~15 us each with
the standard library, which dominates; ``verify_dataset(workers=N)`` spreads that over processes.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from marketplace.models import Dataset, DatasetVersion, Label

from . import merkle, signing
from .canonical import dumps_text, event_hash  # orjson fast path, byte-identical to verify_offline's rule
from .models import LabelEvent, LedgerAppendOnlyError, LedgerChunk, TreeHead
from .verify_offline import GENESIS_PREV_HASH, tree_head_message

# The offline verifier's own tree head check, so the server judges a signed head exactly as auditors do.
from .verify_offline import _check_signed_head as _head_failures  # noqa: E402

__all__ = [
    "BATCH_SIZE",
    "CHUNK_LEVEL",
    "EventData",
    "LedgerAppendOnlyError",
    "LedgerError",
    "LedgerIntegrityError",
    "VerificationReport",
    "append_events",
    "consistency_proof_for",
    "event_document",
    "inclusion_proof_for",
    "label_created_events",
    "label_event",
    "label_version_events",
    "latest_tree_head",
    "proof_bundle",
    "proofs_for",
    "public_key_pem",
    "record_dataset_event",
    "sign_tree_head",
    "tree_head_document",
    "verify_dataset",
]

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


# --------------------------------------------------------------------------- building events


def label_event(
    label: Label,
    *,
    action: str,
    actor: str | None = None,
    occurred_at: datetime | None = None,
    guideline_version: str | None = None,
    before: dict | None = None,
    extra: dict | None = None,
    delivery_id: int | None = None,
    version_number: int | None = None,
    include_after: bool = True,
) -> EventData:
    """Return one event about ``label``; the payload's "after" is the label as it is now."""
    payload = {"after": _label_state(label)} if include_after else {}
    if before is not None:
        payload["before"] = before
    if extra:
        payload.update(extra)
    annotator = label.annotator.pseudonym if label.annotator_id else ""
    default_actor = annotator or label.model_name or label.source
    guideline = label.guideline_version.tag if label.guideline_version_id else ""
    return EventData(
        label_uid=label.uid,
        action=action,
        actor=actor if actor is not None else default_actor,
        occurred_at=occurred_at or label.made_at or timezone.now(),
        guideline_version=guideline if guideline_version is None else guideline_version,
        source=label.source,
        model_name=label.model_name,
        model_version=label.model_version,
        payload=payload,
        delivery_id=delivery_id if delivery_id is not None else label.delivery_id,
        version_number=version_number if version_number is not None else _version_number(label),
    )


def label_created_events(
    labels: Iterable[Label], *, delivery_id: int | None = None, version_number: int | None = None
) -> Iterator[EventData]:
    """Yield one "created" event per label: who (annotator or model), when, under which guideline, what.

    A QuerySet is streamed with the related rows the events need; a list of unsaved labels works too.
    """
    for label in _stream_labels(labels):
        yield label_event(label, action="created", delivery_id=delivery_id, version_number=version_number)


def label_version_events(
    *, version: DatasetVersion, previous: DatasetVersion | None = None
) -> Iterator[EventData]:
    """Yield what changed in ``version`` since ``previous``, label by label (matched by uid).

    New labels are "created" ("consensus" for consensus labels: that is how they come into being),
    changed ones "modified" with before and after, vanished ones "deleted". Both versions are streamed
    in uid order and merged, so a million labels never sit in memory.
    """
    current = _stream_labels(Label.objects.filter(version=version).order_by("uid"))
    if previous is None:
        older: Iterator[Label] = iter(())
    else:
        older = _stream_labels(Label.objects.filter(version=previous).order_by("uid"))
    number = version.number
    new, old = next(current, None), next(older, None)
    while new is not None or old is not None:
        if old is None or (new is not None and new.uid < old.uid):
            action = "consensus" if new.source == Label.Source.CONSENSUS else "created"
            yield label_event(new, action=action, version_number=number)
            new = next(current, None)
        elif new is None or old.uid < new.uid:
            yield label_event(
                old,
                action="deleted",
                occurred_at=timezone.now(),
                before=_label_state(old),
                version_number=number,
                include_after=False,
            )
            old = next(older, None)
        else:
            before, after = _label_state(old), _label_state(new)
            if before != after:
                yield label_event(new, action="modified", before=before, version_number=number)
            new, old = next(current, None), next(older, None)


def _stream_labels(labels: Iterable[Label]) -> Iterator[Label]:
    if isinstance(labels, QuerySet):
        return labels.select_related(
            "item", "category", "annotator", "guideline_version", "version"
        ).iterator(chunk_size=2000)
    return iter(labels)


def _label_state(label: Label) -> dict:
    return {
        "category": label.category.name,
        "geometry_type": label.geometry_type,
        "geometry": label.geometry,
        "attributes": label.attributes,
        "is_final": label.is_final,
        "item": label.item.key,
    }


def _version_number(label: Label) -> int | None:
    return label.version.number if label.version_id else None


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
        appended = 0
        events = iter(events)
        while batch := list(itertools.islice(events, BATCH_SIZE)):
            prepared = []
            for data in batch:
                document, label_uid, occurred_at = _prepare(slug, seq, data, recorded_at)
                hash_hex = event_hash(document, prev_hash)
                prepared.append((document, label_uid, occurred_at, prev_hash, hash_hex))
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
    slug: str, seq: int, data: EventData, recorded_at: datetime
) -> tuple[dict, uuid.UUID | None, datetime]:
    """Validate one event; return its document, its label uid and when it occurred (UTC)."""
    if data.action not in _ACTIONS:
        raise LedgerError(f"unknown ledger action {data.action!r}")
    label_uid = data.label_uid
    if label_uid is not None and not isinstance(label_uid, uuid.UUID):
        label_uid = uuid.UUID(str(label_uid))
    if not isinstance(data.payload, dict):
        raise LedgerError("an event payload must be a JSON object")
    if data.occurred_at.tzinfo is None:
        raise LedgerError(f"occurred_at must be timezone-aware, got {data.occurred_at!r}")
    occurred_at = data.occurred_at.astimezone(UTC)
    document = _document(
        slug,
        seq,
        label_uid,
        data.action,
        data.actor or "",
        occurred_at,
        recorded_at,
        data.guideline_version or "",
        data.source or "",
        data.model_name or "",
        data.model_version or "",
        _plain(data.payload),
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
        text = "".join(_copy_line(dataset_id, *entry[:1], *entry[3:]) for entry in prepared)
        sql = f"COPY governance_labelevent ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.connection.cursor() as raw, raw.copy(sql) as copy:
            copy.write(text)
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
            for document, label_uid, occurred_at, prev_hash, hash_hex in prepared
        ]
    )


_COPY_NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


def _copy_int(value: int | None) -> str:
    return _COPY_NULL if value is None else str(int(value))


def _copy_line(dataset_id: int, document: dict, prev_hash: str, hash_hex: str) -> str:
    """One row in COPY's text format, columns as _COPY_COLUMNS."""
    return (
        "\t".join(
            (
                str(dataset_id),
                str(document["seq"]),
                document["label_uid"] or _COPY_NULL,
                _copy_text(document["action"]),
                _copy_text(document["actor"]),
                document["occurred_at"],
                document["recorded_at"],
                _copy_text(document["guideline_version"]),
                _copy_text(document["source"]),
                _copy_text(document["model_name"]),
                _copy_text(document["model_version"]),
                _copy_text(dumps_text(document["payload"])),
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


# --------------------------------------------------------------------------- the Merkle tree


class _TreeBuilder:
    """Takes leaves in order; keeps the roots of full chunks and the leaves of the current one."""

    def __init__(self, chunk: int):
        self.chunk = chunk
        self.chunk_roots: list[bytes] = []
        self.partial: list[bytes] = []
        self.size = 0

    def add(self, leaf: bytes) -> bytes | None:
        """Add a leaf; return the root of the chunk it completes, if it completes one."""
        self.partial.append(leaf)
        self.size += 1
        if len(self.partial) == self.chunk:
            completed = merkle.root(self.partial)
            self.chunk_roots.append(completed)
            self.partial = []
            return completed
        return None

    def root(self) -> bytes:
        """The RFC 6962 root of the leaves so far: the chunk roots are nodes of that tree."""
        if not self.partial:
            return merkle.root(self.chunk_roots)
        return merkle.root([*self.chunk_roots, merkle.root(self.partial)])


def _chunk_size() -> int:
    return 1 << CHUNK_LEVEL


def tree_head_document(head: TreeHead) -> dict:
    """Return the signed tree head as ``verify_offline.py`` reads it."""
    return {
        "dataset": head.dataset.slug,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "timestamp": _iso(head.timestamp),
        "key_id": head.key_id,
        "signature": head.signature,
    }


def sign_tree_head(*, dataset: Dataset, version: DatasetVersion | None = None) -> TreeHead:
    """Compute the Merkle root over all of the dataset's events, sign it, store and return the head.

    Refuses (LedgerIntegrityError) when the stored ledger no longer extends a head signed before, or a
    cached chunk disagrees with the events: signing over a rewritten log would launder it.
    """
    with transaction.atomic():
        slug, last_seq, _ = _lock_chain_head(dataset)
        size = last_seq + 1
        earlier = list(TreeHead.objects.filter(dataset_id=dataset.pk).order_by("tree_size", "pk"))
        earlier_at = {}
        for head in earlier:
            earlier_at.setdefault(head.tree_size, []).append(head)
        stored = _cached_chunks(dataset.pk)
        builder, missing = _TreeBuilder(_chunk_size()), []
        for head in earlier_at.get(0, []):
            _check_extends(head, builder)
        for seq, hash_hex in _chain_hashes(dataset.pk):
            if seq != builder.size:
                raise LedgerIntegrityError(f"event {builder.size} is missing from the ledger of {slug}")
            completed = builder.add(_leaf(hash_hex))
            if completed is not None:
                index = len(builder.chunk_roots) - 1
                if index not in stored:
                    missing.append(index)
                elif stored[index] != completed.hex():
                    raise LedgerIntegrityError(
                        f"cached chunk {index} of {slug} disagrees with events {index * builder.chunk}.."
                    )
            for head in earlier_at.get(builder.size, []):
                _check_extends(head, builder)
        if builder.size != size:
            raise LedgerIntegrityError(f"the ledger of {slug} has {builder.size} events, expected {size}")
        if earlier and earlier[-1].tree_size > size:
            raise LedgerIntegrityError(
                f"a tree head of {slug} was signed at size {earlier[-1].tree_size}, the ledger has {size}"
            )
        LedgerChunk.objects.bulk_create(
            [
                LedgerChunk(
                    dataset_id=dataset.pk, level=CHUNK_LEVEL, index=i, root_hash=builder.chunk_roots[i].hex()
                )
                for i in missing
            ],
            ignore_conflicts=True,
        )
        head = TreeHead(
            dataset_id=dataset.pk,
            version=version,
            tree_size=size,
            root_hash=builder.root().hex(),
            timestamp=timezone.now(),
            key_id=signing.key_id(),
        )
        head.dataset = dataset if dataset.slug == slug else Dataset.objects.get(pk=dataset.pk)
        head.signature = signing.sign(tree_head_message(tree_head_document(head)))
        head.save()
        return head


def _check_extends(head: TreeHead, builder: _TreeBuilder) -> None:
    if builder.root().hex() != head.root_hash:
        raise LedgerIntegrityError(
            f"the ledger no longer extends the tree head signed at size {head.tree_size} ({head.timestamp}): "
            "run `manage.py ledger verify`"
        )


# --------------------------------------------------------------------------- proofs


class _Prover:
    """Builds proofs against one tree size from cached chunk roots and the leaves of at most a few chunks."""

    def __init__(self, dataset_id: int, tree_size: int):
        self.dataset_id = dataset_id
        self.size = tree_size
        self.chunk = _chunk_size()
        self._chunk_roots: list[bytes] | None = None

    def leaves(self, lo: int, hi: int) -> list[bytes]:
        rows = _fetch(
            "SELECT hash FROM governance_labelevent WHERE dataset_id = %s AND seq >= %s AND seq < %s ORDER BY seq",
            [self.dataset_id, lo, hi],
        )
        if len(rows) != hi - lo:
            raise LedgerIntegrityError(
                f"events {lo}..{hi - 1} are not all in the ledger: run `ledger verify`"
            )
        return [_leaf(h) for (h,) in rows]

    def chunk_roots(self) -> list[bytes]:
        """Roots of every chunk of the tree, the last one partial; computed from events where not cached."""
        if self._chunk_roots is None:
            full = self.size // self.chunk
            cached = _cached_chunks(self.dataset_id, below=full)
            roots = []
            for index in range(full):
                if index in cached:
                    roots.append(bytes.fromhex(cached[index]))
                else:
                    roots.append(merkle.root(self.leaves(index * self.chunk, (index + 1) * self.chunk)))
            if self.size % self.chunk:
                roots.append(merkle.root(self.leaves(full * self.chunk, self.size)))
            self._chunk_roots = roots
        return self._chunk_roots

    def root(self) -> bytes:
        return merkle.root(self.chunk_roots())

    def range_root(self, lo: int, hi: int) -> bytes:
        """Root of leaves lo..hi-1 (an RFC 6962 subtree), from chunk roots when it starts on a chunk."""
        if lo % self.chunk == 0 and hi - lo >= self.chunk:
            first, full_end = lo // self.chunk, hi // self.chunk
            roots = self.chunk_roots()[first:full_end] if hi != self.size else self.chunk_roots()[first:]
            if hi != self.size and hi % self.chunk:
                roots = [*roots, merkle.root(self.leaves(full_end * self.chunk, hi))]
            return merkle.root(roots)
        return merkle.root(self.leaves(lo, hi))

    def inclusion(self, index: int) -> list[bytes]:
        # Levels below CHUNK_LEVEL pair leaves inside the chunk; the levels above pair chunk roots.
        chunk_index = index // self.chunk
        lo = chunk_index * self.chunk
        inner = merkle.inclusion_proof(self.leaves(lo, min(lo + self.chunk, self.size)), index - lo)
        return inner + merkle.inclusion_proof(self.chunk_roots(), chunk_index)

    def consistency(self, old_size: int) -> list[bytes]:
        """RFC 9162 section 2.1.4.1 PROOF(m, D[n]) with subtree roots from ``range_root``."""
        if old_size in (0, self.size):
            return []

        def subproof(m: int, lo: int, hi: int, whole_old_tree: bool) -> list[bytes]:
            n = hi - lo
            if m == n:
                return [] if whole_old_tree else [self.range_root(lo, hi)]
            k = 1 << ((n - 1).bit_length() - 1)
            if m <= k:
                return subproof(m, lo, lo + k, whole_old_tree) + [self.range_root(lo + k, hi)]
            return subproof(m - k, lo + k, hi, False) + [self.range_root(lo, lo + k)]

        return subproof(old_size, 0, self.size, True)


def _cached_chunks(dataset_id: int, below: int | None = None) -> dict[int, str]:
    sql = 'SELECT "index", root_hash FROM governance_ledgerchunk WHERE dataset_id = %s AND level = %s'
    params = [dataset_id, CHUNK_LEVEL]
    if below is not None:
        sql += ' AND "index" < %s'
        params.append(below)
    return dict(_fetch(sql, params))


def latest_tree_head(dataset: Dataset | int) -> TreeHead | None:
    """The newest (largest) signed tree head of a dataset."""
    dataset_id = dataset if isinstance(dataset, int) else dataset.pk
    return (
        TreeHead.objects.filter(dataset_id=dataset_id)
        .select_related("dataset", "version")
        .order_by("-tree_size", "-timestamp", "-pk")
        .first()
    )


def inclusion_proof_for(event: LabelEvent, *, head: TreeHead | None = None, _prover=None) -> dict:
    """Return ``{"leaf_index", "tree_size", "audit_path"}`` proving the event is in ``head`` (default: the latest).

    Raises LedgerError when no signed head covers the event yet (it was appended after the last
    publication), LedgerIntegrityError when the stored ledger does not lead to the signed root.
    """
    head = head or latest_tree_head(event.dataset_id)
    if head is None or head.tree_size <= event.seq:
        raise LedgerError(f"event {event.seq} is not covered by a signed tree head yet")
    prover = _prover or _Prover(event.dataset_id, head.tree_size)
    path = prover.inclusion(event.seq)
    try:
        merkle.verify_inclusion(
            leaf_hash=_leaf(event.hash),
            index=event.seq,
            tree_size=head.tree_size,
            proof=path,
            root=bytes.fromhex(head.root_hash),
        )
    except merkle.ProofError as error:
        raise LedgerIntegrityError(
            f"event {event.seq} does not prove into the signed root: {error}"
        ) from None
    return {"leaf_index": event.seq, "tree_size": head.tree_size, "audit_path": [h.hex() for h in path]}


def consistency_proof_for(old_head: TreeHead, new_head: TreeHead) -> list[str]:
    """Return the RFC 9162 consistency proof (hex) that ``old_head``'s tree is a prefix of ``new_head``'s."""
    if old_head.dataset_id != new_head.dataset_id:
        raise LedgerError("the two tree heads belong to different datasets")
    if old_head.tree_size > new_head.tree_size:
        raise LedgerError("the old tree head is larger than the new one")
    proof = _Prover(new_head.dataset_id, new_head.tree_size).consistency(old_head.tree_size)
    try:
        merkle.verify_consistency(
            old_size=old_head.tree_size,
            new_size=new_head.tree_size,
            old_root=bytes.fromhex(old_head.root_hash),
            new_root=bytes.fromhex(new_head.root_hash),
            proof=proof,
        )
    except merkle.ProofError as error:
        raise LedgerIntegrityError(f"the stored ledger does not link the two tree heads: {error}") from None
    return [h.hex() for h in proof]


def proof_bundle(event: LabelEvent, *, head: TreeHead | None = None) -> dict:
    """Return what ``verify_offline.py --bundle`` checks: the signed head, the event and its proof."""
    head = head or latest_tree_head(event.dataset_id)
    return {
        "tree_head": tree_head_document(head) if head else None,
        "event": event_document(event),
        "proof": inclusion_proof_for(event, head=head),
        "public_key": public_key_pem(),
    }


def proofs_for(events: Sequence[LabelEvent], *, head: TreeHead) -> list[tuple[dict | None, str]]:
    """(proof, "") for each event of ``head``'s dataset, or (None, why not) where there is no valid proof."""
    prover = _Prover(head.dataset_id, head.tree_size)
    results: list[tuple[dict | None, str]] = []
    for event in events:
        if event.dataset_id != head.dataset_id:
            results.append((None, "the event belongs to another dataset"))
            continue
        try:
            results.append((inclusion_proof_for(event, head=head, _prover=prover), ""))
        except LedgerError as error:
            results.append((None, str(error)))
    return results


def public_key_pem() -> str:
    """The registry's public key (PEM) that verifies tree head signatures."""
    return signing.public_key_pem()


# --------------------------------------------------------------------------- verification


@dataclass
class VerificationReport:
    """What ``verify_dataset`` found: intact, or the first broken event and every problem seen."""

    dataset: str
    events: int = 0
    tree_heads: int = 0
    first_broken_seq: int | None = None
    first_broken_event_id: int | None = None
    reason: str = ""
    problems: list[str] = field(default_factory=list)
    root_hash: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}

    def _broken(self, seq: int, event_id: int | None, reason: str) -> None:
        if self.first_broken_seq is None or seq < self.first_broken_seq:
            self.first_broken_seq, self.first_broken_event_id, self.reason = seq, event_id, reason
        self._problem(f"event {seq}: {reason}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... more problems not listed")
        if not self.reason:
            self.reason = text


MAX_PROBLEMS = 50


def verify_dataset(
    *, dataset: Dataset, trusted_heads: Iterable[dict] = (), workers: int = 1
) -> VerificationReport:
    """Recompute the dataset's chain and Merkle roots and check them against every tree head.

    Each event's hash is recomputed from its fields and its link checked against the event before it;
    each stored tree head's signature and root are checked against the events it covers; so are
    ``trusted_heads``, signed head documents kept outside the database (by an auditor, in a
    publication), which is what catches a truncated or rewritten log whose stored heads were replaced.
    The report names the first broken event (seq and reason) and lists every problem found.

    ``workers`` > 1 re-hashes event contents in that many forked processes while this one checks links
    and roots (PostgreSQL, outside a transaction only: the workers read what is committed). For the CLI
    and benchmarks; a web request should not fork.
    """
    report = VerificationReport(dataset=dataset.slug)
    public_key = signing.public_key()
    stored_heads = TreeHead.objects.filter(dataset_id=dataset.pk).select_related("dataset")
    heads = [("stored", tree_head_document(h)) for h in stored_heads]
    heads += [("trusted", dict(head)) for head in trusted_heads]
    report.tree_heads = len(heads)
    by_size: dict[int, list[tuple[str, dict]]] = {}
    for origin, head in heads:
        failures: list[str] = []
        if not _head_failures(head, public_key, failures) or failures:
            size = head.get("tree_size") if isinstance(head, dict) else None
            report._problem(f"{origin} tree head at size {size}: {'; '.join(failures)}")
            continue
        if head["dataset"] != dataset.slug:
            report._problem(
                f"{origin} tree head at size {head['tree_size']} is for dataset {head['dataset']}"
            )
            continue
        by_size.setdefault(head["tree_size"], []).append((origin, head))

    builder = _TreeBuilder(_chunk_size())
    cached = _cached_chunks(dataset.pk)
    _check_heads_at(report, builder, by_size)
    expected_prev = GENESIS_PREV_HASH
    slug = dataset.slug
    filler = b"\x00" * 32  # stands in for an unusable or missing leaf: later roots cannot match anyway
    parallel = workers > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block
    if parallel:
        pool, content_checks = _start_content_checks(dataset.pk, slug, workers)
        rows = ((event_id, seq, None, prev, h) for event_id, seq, prev, h in _link_rows(dataset.pk))
    else:
        rows = ((row[0], row[1], row[2:-2], row[-2], row[-1]) for row in _event_rows(dataset.pk))
    for event_id, seq, columns, prev_hash, hash_hex in rows:
        position = builder.size
        if seq != position:
            if seq > position:  # a gap: events position..seq-1 are gone
                report._broken(
                    position, None, f"missing: the ledger jumps from event {position - 1} to {seq}"
                )
                for _ in range(seq - position):
                    builder.add(filler)
            else:
                report._broken(seq, event_id, "seq out of order")
        elif prev_hash != expected_prev:
            reason = (
                "prev_hash is not the genesis hash: earlier events removed?"
                if seq == 0
                else f"prev_hash does not link to event {seq - 1}: events removed, inserted or reordered"
            )
            report._broken(seq, event_id, reason)
        if columns is not None and not _content_matches(slug, seq, columns, prev_hash, hash_hex):
            report._broken(seq, event_id, EDITED)
        expected_prev = hash_hex
        try:
            leaf = _leaf(hash_hex)
        except ValueError:
            leaf = filler
        completed = builder.add(leaf)
        if completed is not None:
            index = len(builder.chunk_roots) - 1
            if index in cached and cached[index] != completed.hex():
                report._problem(f"cached Merkle chunk {index} disagrees with the events (cache tampered)")
        report.events += 1
        if builder.size in by_size:
            _check_heads_at(report, builder, by_size)

    if parallel:
        try:
            for future in content_checks:
                for seq, event_id in future.result():
                    report._broken(seq, event_id, EDITED)
        finally:
            pool.shutdown()
    for size in sorted(s for s in by_size if s > builder.size):
        for origin, head in by_size[size]:
            report._broken(
                builder.size,
                None,
                f"truncated: the {origin} tree head signed {head['timestamp']} covers {size} events, "
                f"the ledger has {builder.size}",
            )
    report.root_hash = builder.root().hex()
    return report


# PostgreSQL formats the two timestamps exactly as _iso does and the uuid exactly as str(UUID), so the
# rows need no conversion in Python: a million datetime parses would take longer than the hashing.
_PG_EVENT_ROWS = """
SELECT id, seq, label_uid::text, action, actor,
       to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
       guideline_version, source, model_name, model_version, payload::text,
       delivery_id, version_number, prev_hash, hash
FROM governance_labelevent WHERE dataset_id = %s AND seq >= %s AND seq < %s ORDER BY seq
"""


def _event_rows(dataset_id: int, lo: int = 0, hi: int = 2**63 - 1) -> Iterator[tuple]:
    """Yield (id, *_DOC_COLUMNS, prev_hash, hash) of events lo..hi-1 in seq order, ready for _document."""
    if connection.vendor == "postgresql":
        loads = json.loads
        for row in _stream(_PG_EVENT_ROWS, [dataset_id, lo, hi]):
            yield (*row[:11], loads(row[11]), *row[12:])
        return
    rows = (
        LabelEvent.objects.filter(dataset_id=dataset_id, seq__gte=lo, seq__lt=hi)
        .order_by("seq")
        .values_list("id", *_DOC_COLUMNS, "prev_hash", "hash")
    )
    yield from rows.iterator(chunk_size=BATCH_SIZE)


EDITED = "hash does not match the event's content: edited"


def _content_matches(slug: str, seq: int, columns: Sequence, prev_hash: str, hash_hex: str) -> bool:
    try:
        return event_hash(_document(slug, seq, *columns), prev_hash) == hash_hex
    except (ValueError, TypeError):
        return False


def _link_rows(dataset_id: int) -> Iterator[tuple]:
    return _stream(
        "SELECT id, seq, prev_hash, hash FROM governance_labelevent WHERE dataset_id = %s ORDER BY seq",
        [dataset_id],
    )


def _start_content_checks(dataset_id: int, slug: str, workers: int):
    """Fork ``workers`` processes that each re-hash one seq range; return the pool and their futures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    last = _fetch("SELECT max(seq) FROM governance_labelevent WHERE dataset_id = %s", [dataset_id])[0][0]
    size = (last or 0) + 1
    bounds = [size * k // workers for k in range(workers + 1)]
    # The children must not share this process's database socket: close it before forking (all
    # children start at the first submit), and each child opens its own.
    connection.close()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    futures = [
        pool.submit(_content_mismatches, dataset_id, slug, lo, hi) for lo, hi in itertools.pairwise(bounds)
    ]
    return pool, futures


def _content_mismatches(dataset_id: int, slug: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """(seq, id) of the events in seq range lo..hi-1 whose content does not match their hash (in a worker)."""
    try:
        return [
            (row[1], row[0])
            for row in _event_rows(dataset_id, lo, hi)
            if not _content_matches(slug, row[1], row[2:-2], row[-2], row[-1])
        ]
    finally:
        connection.close()


def _check_heads_at(report: VerificationReport, builder: _TreeBuilder, by_size: dict) -> None:
    heads = by_size.get(builder.size)
    if not heads:
        return
    root = builder.root().hex()
    for origin, head in heads:
        if head["root_hash"] != root:
            report._problem(
                f"{origin} tree head at size {head['tree_size']} ({head['timestamp']}): the events do not "
                "lead to its signed root: the log was rewritten or the head forged"
            )
