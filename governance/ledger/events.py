"""The events that describe labels: created, modified, deleted, consensus, with the label's state.

A label's state in a payload ("after", "before") binds its geometry by hash (since issue 13)::

    {"category", "geometry_type", "geometry_sha256", "attributes", "is_final", "item"}
    geometry_sha256 = SHA-256(canonical_json(geometry)), hex, the geometry normalised as payloads are

The geometry itself stays in the label row (``marketplace_label.geometry``), which is what exports,
content hashes and pages read; the event no longer copies it. Rules that keep a history checkable:

- Events written before the rule hold ``"geometry"`` inline instead; they stay valid forever (the
  chain hash covers whatever the payload holds) and every reader takes both forms.
- A state whose label row is about to be overwritten in place (a reviewer's fix of a draft's label:
  its "before") keeps the geometry inline: so every hash a history holds resolves to a label row that
  still holds that geometry or to an inline state of a later event of the same label.
- Readers get the geometries of a history from the label rows (``history_geometries``); a history
  bundle carries them, and ``verify_offline.py --history`` checks each against its event's hash.

- Deleting a draft removes its label rows: ``hold_geometries`` first keeps each geometry that no
  other version's row of the same label holds in ``HeldGeometry`` (append-only), where readers find
  it after the label rows. A held geometry is shown only if it hashes to what an event binds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import orjson
from django.db.models import Exists, JSONField, OuterRef, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from marketplace.models import DatasetVersion, Label

from ..models import HeldGeometry
from .canonical import _OPTIONS, canonical_json, plain_json, plain_json_text
from .chain import EventData, _plain

GEOMETRY_DIGEST = "geometry_sha256"
STATE_KEYS = ("after", "before")


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
            # Compared by value, as before the hash rule: the geometry's digest only when it changed.
            if label_content(old) != label_content(new):
                yield label_event(new, action="modified", before=_label_state(old), version_number=number)
            new, old = next(current, None), next(older, None)


def _stream_labels(labels: Iterable[Label]) -> Iterator[Label]:
    if isinstance(labels, QuerySet):
        return labels.select_related(
            "item", "category", "annotator", "guideline_version", "version"
        ).iterator(chunk_size=2000)
    return iter(labels)


def geometry_sha256(geometry, *, geometry_json: str | bytes | None = None) -> str:
    """SHA-256 (hex) of a geometry's canonical JSON, normalised as payloads are (``chain._plain``).

    ``geometry_json``: ``canonical.plain_json_text(geometry)`` when the caller has it (those are the
    very bytes of the rule: ingest's row path encodes each geometry once, for the row and the hash).
    """
    if geometry_json is None:
        data = canonical_json(_plain(geometry))
    else:
        data = geometry_json.encode() if isinstance(geometry_json, str) else geometry_json
    return hashlib.sha256(data).hexdigest()


def label_state(
    *,
    category: str,
    geometry_type: str,
    geometry,
    attributes,
    is_final: bool,
    item: str,
    geometry_json: str | None = None,
    inline: bool = False,
) -> dict:
    """A label's state as event payloads hold it ("after", "before"): the one definition.

    The geometry is bound by its hash (module docstring); ``inline`` keeps it in the state, for a
    state whose label row is about to be overwritten.
    """
    return {
        "category": category,
        "geometry_type": geometry_type,
        **(
            {"geometry": geometry}
            if inline
            else {GEOMETRY_DIGEST: geometry_sha256(geometry, geometry_json=geometry_json)}
        ),
        "attributes": attributes,
        "is_final": is_final,
        "item": item,
    }


_ONLY_TEXT = frozenset((str,))


def state_payload_json(key: str, state: dict) -> str | None:
    """``plain_json_text({key: state})`` of a ``label_state`` with its geometry hashed, in fewer steps.

    Ingest builds one such payload a label (``{"after": state}``), and plain_json's scans of its whole
    output for markers of numbers (``null``, ``e-``, ``0.0000`` ...) cost several times orjson's
    encoding. Here every value but ``attributes`` is a str or a bool, which orjson writes as the rule
    does (what it refuses, a lone surrogate, goes to plain_json_text), so only the attributes, the
    one part that may hold numbers, are scanned -- and an empty object (the usual) is not. The text is
    then the rule's bytes of ``_plain({key: state})``: those of plain_json_text where that answers, and
    also where it declines on a string that only looks like a marker (a category named "null"), so
    the event's hash and stored payload are the slow path's. Any other state takes plain_json_text.
    """
    attributes = state.get("attributes")
    try:
        texts = (state["category"], state["geometry_type"], state[GEOMETRY_DIGEST], state["item"])
    except KeyError:
        return plain_json_text({key: state})
    if not (
        len(state) == 6
        and type(state.get("is_final")) is bool
        and type(attributes) is dict
        and _ONLY_TEXT.issuperset(map(type, texts))
    ):
        return plain_json_text({key: state})
    if attributes:
        inner = plain_json(attributes)
        if inner is None:
            return plain_json_text({key: state})
        spliced = {**state, "attributes": orjson.Fragment(inner)}
    else:
        spliced = state
    try:
        return orjson.dumps({key: spliced}, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return plain_json_text({key: state})


def label_content(label: Label) -> tuple:
    """What a label's state says, by value: two labels with the same content need no "modified" event."""
    return (
        label.category.name,
        label.geometry_type,
        label.geometry,
        label.attributes,
        label.is_final,
        label.item.key,
    )


def _label_state(label: Label, *, inline: bool = False) -> dict:
    return label_state(
        category=label.category.name,
        geometry_type=label.geometry_type,
        geometry=label.geometry,
        attributes=label.attributes,
        is_final=label.is_final,
        item=label.item.key,
        inline=inline,
    )


# --------------------------------------------------------------------------- readers: both forms


def payload_states(payload) -> Iterator[tuple[str, dict]]:
    """(key, state) of a payload's label states ("after", "before")."""
    if isinstance(payload, dict):
        for key in STATE_KEYS:
            if isinstance(payload.get(key), dict):
                yield key, payload[key]


def history_geometries(events: Iterable, labels: Iterable) -> dict[str, object]:
    """{hash: geometry} for every hash a label's events bind, from its label rows and inline states.

    ``events``: ``LabelEvent`` rows or event documents; ``labels``: the label's rows the reader may
    see, then any held geometries (anything with a ``geometry``). Each is hashed again here: only
    hashes the events name are returned, so nothing is shown that the events did not bind.
    """
    wanted, found = _bound_digests(events)
    for label in labels:
        if len(found.keys() & wanted) == len(wanted):
            break
        digest = geometry_sha256(label.geometry)
        if digest in wanted:
            found.setdefault(digest, _plain(label.geometry))
    return {digest: found[digest] for digest in sorted(wanted) if digest in found}


def _bound_digests(events: Iterable) -> tuple[set[str], dict[str, object]]:
    """(hashes the events bind without the geometry, {hash: geometry} of their inline states)."""
    wanted: set[str] = set()
    found: dict[str, object] = {}
    for event in events:
        payload = event.get("payload") if isinstance(event, dict) else event.payload
        for _key, state in payload_states(payload):
            if GEOMETRY_DIGEST in state and "geometry" not in state:
                wanted.add(state[GEOMETRY_DIGEST])
            elif "geometry" in state:
                found.setdefault(geometry_sha256(state["geometry"]), _plain(state["geometry"]))
    return wanted, found


def geometries_of_events(events: Sequence) -> dict[str, object]:
    """``history_geometries`` of some ``LabelEvent`` rows of one dataset, from their labels' rows.

    Label rows of any version of the dataset: a "before" state names the previous version's row,
    which the reader of the event saw inline before the hash rule; then the geometries held for a
    deleted draft (``hold_geometries``). Only hashes the events bind are returned, so nothing more
    is shown than the events showed.
    """
    uids = {event.label_uid for event in events if event.label_uid is not None}
    if not uids:
        return {}
    dataset_id = events[0].dataset_id
    labels = (
        Label.objects.filter(version__dataset_id=dataset_id, uid__in=uids)
        .only("geometry")
        .order_by("-version__number", "id")
        .iterator(chunk_size=200)
    )

    def held():
        wanted, _inline = _bound_digests(events)
        yield from (
            HeldGeometry.objects.filter(dataset_id=dataset_id, sha256__in=sorted(wanted))
            .only("geometry")
            .iterator(chunk_size=200)
        )

    return history_geometries(events, _chain(labels, held))


def _chain(first: Iterable, then) -> Iterator:
    yield from first
    yield from then()  # called only when the first ran out before every hash was found


HOLD_BATCH = 2000


def hold_geometries(version: DatasetVersion) -> int:
    """Keep the geometries of a draft's labels that its deletion would lose; returns how many are new.

    Skipped: a geometry another version's row of the same label holds as the same value (its history
    finds it there) and one already held for the dataset. Call inside the deleting transaction.
    """
    same_elsewhere = (
        Label.objects.filter(uid=OuterRef("uid"))
        .exclude(version_id=version.pk)
        # PostgreSQL json has no equality and keeps the text as written: compared as jsonb, by value.
        .annotate(value=Cast("geometry", JSONField()))
        .filter(value=Cast(OuterRef("geometry"), JSONField()))
    )
    rows = (
        Label.objects.filter(version=version)
        .exclude(Exists(same_elsewhere))
        .order_by("id")
        .values_list("uid", "geometry")
        .iterator(chunk_size=HOLD_BATCH)
    )
    already = HeldGeometry.objects.filter(dataset_id=version.dataset_id).count()
    batch = []
    for uid, geometry in rows:
        digest = geometry_sha256(geometry)
        batch.append(
            HeldGeometry(dataset_id=version.dataset_id, sha256=digest, label_uid=uid, geometry=geometry)
        )
        if len(batch) >= HOLD_BATCH:
            HeldGeometry.objects.bulk_create(batch, ignore_conflicts=True)  # a repeated geometry is held once
            batch = []
    if batch:
        HeldGeometry.objects.bulk_create(batch, ignore_conflicts=True)
    return HeldGeometry.objects.filter(dataset_id=version.dataset_id).count() - already


def with_geometries(payload: dict, geometries: dict) -> dict:
    """A payload for display: each hash-bound state with its geometry beside the hash (when known)."""
    shown = dict(payload)
    for key, state in payload_states(payload):
        if "geometry" not in state and GEOMETRY_DIGEST in state:
            geometry = geometries.get(state[GEOMETRY_DIGEST])
            shown[key] = {**state, "geometry": geometry if geometry is not None else "(not held)"}
    return shown


def _version_number(label: Label) -> int | None:
    return label.version.number if label.version_id else None
