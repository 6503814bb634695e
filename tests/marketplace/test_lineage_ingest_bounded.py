"""Issue 13: a re-delivery matched bucket by bucket (bounded memory) writes what one bucket wrote."""

from __future__ import annotations

import pytest

from marketplace.deliveries import lineage
from marketplace.models import Label

from . import ingest_support as support
from .test_lineage_ingest import V1, coco_delivery, corrected, deliver, label_events

media, run = support.media, support.run  # fixtures

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("chunk_labels", [lineage.CHUNK_LABELS, 1])
def test_a_corrected_re_delivery_keeps_its_uids_however_many_buckets_it_is_matched_in(
    dataset, media, run, monkeypatch, chunk_labels
):
    # Given a first delivery, and buckets of one label each (the three images in three buckets)
    deliver(dataset, coco_delivery(V1), run)
    monkeypatch.setattr(lineage, "CHUNK_LABELS", chunk_labels)
    # The same labels under ids no longer shared (geometry decides), listed in another order.
    renumbered = [{**a, "id": 100 + a["id"]} for a in reversed(corrected())]

    # When the supplier delivers a corrected export, then the same under new ids
    second = deliver(dataset, coco_delivery(corrected()), run)
    third = deliver(dataset, coco_delivery(renumbered), run)

    # Then each label keeps its uid through both, matched as the lineage rules say
    v1, v2, v3 = (dataset.versions.get(number=n) for n in (1, 2, 3))
    for sid in ("1", "2", "3", "4"):
        first_uid = Label.objects.get(version=v1, source_id=sid).uid
        assert Label.objects.get(version=v2, source_id=sid).uid == first_uid
        assert Label.objects.get(version=v3, source_id=str(100 + int(sid))).uid == first_uid
    assert (
        Label.objects.get(version=v3, source_id="105").uid == Label.objects.get(version=v2, source_id="5").uid
    )
    counts = second.report["lineage"]["counts"]
    assert (counts["source_id"], counts["new"], counts["removed"], counts["modified"]) == (4, 1, 0, 2)
    section = third.report["lineage"]
    assert section["source_ids"]["status"] == "unused"
    assert (section["counts"]["geometry"], section["counts"]["new"], section["counts"]["unchanged"]) == (
        5,
        0,
        5,
    )
    examples = second.report["lineage"]["examples"]
    assert [(e["item"], e["category"], e["was"]) for e in examples["source_id"]] == [
        ("images/a.jpg", "car", "car"),
        ("images/a.jpg", "person", "car"),
        ("images/b.jpg", "person", "person"),
        ("images/c.jpg", "car", "car"),
    ]
    assert [(e["item"], e["category"]) for e in examples["new"]] == [("images/c.jpg", "person")]
    assert sorted(a for a, _, _ in label_events(dataset, 2)) == ["created", "modified", "modified"]
    assert label_events(dataset, 3) == []  # the same content under new ids: nothing changed
