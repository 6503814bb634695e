"""The ingest's events are built from the spooled rows, not from Label objects: the same documents.

The reference is ``ledger.label_event`` over each Label as read back from the database, the path the
ledger's other writers take; the stored chain must also verify under the offline verifier's rule.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date

import pytest

from governance import ledger, verify_offline
from governance.ledger import canonical
from governance.ledger.chain import _plain, event_document
from governance.models import LabelEvent
from marketplace.deliveries import lineage
from marketplace.deliveries.plan import LabelRow
from marketplace.deliveries.write import WrittenLabel
from marketplace.models import Delivery, Label
from tests import factories as f

from . import ingest_support as support
from .ingest_support import coco_doc, make_delivery, picture

media, run = support.media, support.run  # fixtures

pytestmark = pytest.mark.django_db

IMAGES = [("a.jpg", 96, 64), ("b c é.jpg", 96, 64)]
CATEGORIES = [{"id": 1, "name": "car\\van\ttruck"}, {"id": 2, "name": "personne é"}]
ANNOTATIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [4.0, 4.0, 20.0, 16.0]},
    {"image_id": 1, "category_id": 2, "segmentation": [[5.25, 5, 20, 5, 20, 30.5, 5, 30]]},
    # Values the ledger normalises (-0.0, 1e16) or prints unlike orjson (1e-07): the reference path.
    {
        "image_id": 2,
        "category_id": 1,
        "bbox": [-0.0, 1.0, 10.0, 8.0],
        "attributes": {"score": 1e-07, "big": 1e16, "zero": -0.0, "note": 'a\nb\\c\t"d"', "n": None},
    },
    {"image_id": 2, "category_id": 2, "bbox": [30.0, 20.0, 24.0, 18.0], "attributes": {"occluded": True}},
]
PROVENANCE = [
    {"defaults": {"annotator": "annotator-A", "guideline_version": "v1", "source": "human"}},
    {"label": 4, "source": "model", "model_name": "detector", "model_version": "2.1"},
]


def deliver(dataset, run) -> Delivery:
    guide = f.GuidelineFactory(dataset=dataset, title="guide")
    f.GuidelineVersionFactory(guideline=guide, tag="v1", effective_date=date(2026, 1, 1))
    files = {
        "annotations/instances_default.json": json.dumps(coco_doc(IMAGES, ANNOTATIONS, CATEGORIES)),
        "provenance.jsonl": "\n".join(json.dumps(p) for p in PROVENANCE) + "\n",
        **{f"images/{n}": picture(w, h, i) for i, (n, w, h) in enumerate(IMAGES)},
    }
    delivery = make_delivery(dataset, files, format="coco")
    result = run(delivery)
    assert result.ok, result.problems
    delivery.refresh_from_db()
    return delivery


def test_each_created_event_is_the_document_label_event_makes_of_the_stored_label(dataset, media, run):
    delivery = deliver(dataset, run)

    labels = Label.objects.filter(version=delivery.version).select_related(
        "item", "category", "annotator", "guideline_version", "version"
    )
    events = {e.label_uid: e for e in LabelEvent.objects.filter(dataset=dataset, action="created")}
    assert len(labels) == len(events) == len(ANNOTATIONS)
    seen_sources = set()
    for label in labels:
        reference = ledger.label_event(label, action="created", delivery_id=delivery.pk, version_number=1)
        stored = events[label.uid]
        assert stored.payload == _plain(reference.payload)
        assert (stored.actor, stored.guideline_version, stored.source) == (
            reference.actor,
            reference.guideline_version,
            reference.source,
        )
        assert (stored.model_name, stored.model_version) == (reference.model_name, reference.model_version)
        assert (stored.delivery_id, stored.version_number) == (delivery.pk, 1)
        seen_sources.add((stored.source, stored.actor, stored.guideline_version))
    assert seen_sources == {("human", "annotator-A", "v1"), ("model", "annotator-A", "v1")}
    # The rows written by COPY read back as written: names with tabs and backslashes, odd numbers.
    assert {label.category.name for label in labels} == {c["name"] for c in CATEGORIES}
    assert {label.item.key for label in labels} == {f"images/{n}" for n, _, _ in IMAGES}
    odd = next(label for label in labels if "note" in label.attributes)
    assert odd.attributes["note"] == 'a\nb\\c\t"d"' and odd.attributes["n"] is None
    assert odd.attributes["big"] == 1e16 and odd.attributes["score"] == 1e-07


def test_the_stored_chain_verifies_under_the_offline_rule(dataset, media, run):
    deliver(dataset, run)
    prev = verify_offline.GENESIS_PREV_HASH
    events = LabelEvent.objects.filter(dataset=dataset).select_related("dataset").order_by("seq")
    for event in events:
        document = event_document(event)
        assert document["prev_hash"] == prev
        assert verify_offline.event_hash(document, prev) == event.hash
        prev = event.hash
    assert events.count() == len(ANNOTATIONS)


def row(geometry, attributes=None) -> LabelRow:
    return LabelRow(
        item="images/a.jpg",
        category="car",
        geometry_type="polygon",
        geometry=geometry,
        attributes=attributes or {},
        iscrowd=False,
        is_final=True,
        annotator="",
        guideline_version=None,
        source="human",
        model_name="",
        model_version="",
        made_at=None,
        source_ref="annotations.json#/annotations/0",
    )


def created(label_row):
    from django.utils import timezone

    written = WrittenLabel(uuid.uuid4(), label_row, canonical.plain_json_text(label_row.geometry))
    return lineage._created_event(written, tags={}, now=timezone.now(), delivery_id=1, version_number=1)


def test_a_plain_geometry_takes_the_fast_path_and_gives_the_reference_bytes():
    event = created(row({"points": [[5.25, 5.0, 20.0, 5.0, 20.0, 30.5]]}, {"occluded": False, "z": 3}))
    assert event.payload_json is not None
    assert event.payload_json.encode() == verify_offline.canonical_json(_plain(event.payload))


@pytest.mark.parametrize(
    "attributes",
    [{"score": float("nan")}, {"tiny": 1e-07, "none": None}, {"zero": -0.0}, {"big": 1e16}],
)
def test_attributes_the_ledger_normalises_take_the_reference_path(attributes):
    event = created(row({"points": [[5.0, 5.0, 20.0, 5.0, 20.0, 30.5]]}, attributes))
    assert event.payload_json is None  # then _prepare normalises with _plain, as for every other event


@pytest.mark.parametrize(
    "geometry",
    [
        {"points": [[-0.0, 5.0, 20.0, 5.0, 20.0, 30.5]]},
        {"points": [[1e16, 5.0, 20.0, 5.0, 20.0, 30.5]]},
        {"points": [[5.0, 1e-07, 20.0, 5.0, 20.0, 30.5]]},
        {"counts": "x" * 3, "size": [2**70, 1]},
        {"points": [[5.25, 5.0, 20.0, 5.0, 20.0, 30.5]]},
    ],
)
def test_the_event_binds_the_geometry_by_the_hash_of_its_normalised_canonical_json(geometry):
    event = created(row(geometry, {"occluded": False}))

    # The rule, from the offline verifier's own encoder: SHA-256 of the geometry as payloads normalise it.
    expected = hashlib.sha256(verify_offline.canonical_json(_plain(geometry))).hexdigest()
    assert event.payload["after"]["geometry_sha256"] == expected
    assert "geometry" not in event.payload["after"]
    assert event.payload_json.encode() == verify_offline.canonical_json(_plain(event.payload))


def test_the_collector_runs_as_before_once_the_write_is_done(dataset, media, run):
    import gc

    before = gc.get_threshold()
    deliver(dataset, run)
    assert gc.get_threshold() == before


def test_the_collector_runs_as_before_after_a_refused_delivery_too(dataset, media, run):
    """The read-and-check phase also runs with fewer collections; a refusal must restore the setting."""
    import gc

    before = gc.get_threshold()
    files = {
        "annotations/instances_default.json": json.dumps(
            coco_doc(
                IMAGES, [{"image_id": 1, "category_id": 1, "bbox": [4.0, 4.0, float("nan"), 1]}], CATEGORIES
            )
        ),
        **{f"images/{n}": picture(w, h, i) for i, (n, w, h) in enumerate(IMAGES)},
    }
    result = run(make_delivery(dataset, files, format="coco"))
    assert not result.ok
    assert gc.get_threshold() == before


def test_a_label_built_without_init_has_every_column():
    from marketplace.deliveries.write import _LabelIds, _new_label

    ids = _LabelIds(items={"images/a.jpg": 7}, categories={"car": 3}, annotators={}, version=2, delivery=5)
    label = _new_label(WrittenLabel(uuid.uuid4(), row({"bbox": [1.0, 2.0, 3.0, 4.0]}), None), ids)
    assert label.__dict__.keys() >= {f.attname for f in Label._meta.concrete_fields}
    assert (label.item_id, label.category_id, label.version_id, label.delivery_id) == (7, 3, 2, 5)
