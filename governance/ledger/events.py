"""The events that describe labels: created, modified, deleted, consensus, with the label's state."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from marketplace.models import DatasetVersion, Label

from .chain import EventData


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


def label_state(
    *, category: str, geometry_type: str, geometry, attributes, is_final: bool, item: str
) -> dict:
    """A label's state as event payloads hold it ("after", "before"): the one definition."""
    return {
        "category": category,
        "geometry_type": geometry_type,
        "geometry": geometry,
        "attributes": attributes,
        "is_final": is_final,
        "item": item,
    }


def _label_state(label: Label) -> dict:
    return label_state(
        category=label.category.name,
        geometry_type=label.geometry_type,
        geometry=label.geometry,
        attributes=label.attributes,
        is_final=label.is_final,
        item=label.item.key,
    )


def _version_number(label: Label) -> int | None:
    return label.version.number if label.version_id else None
