"""Lineage through ingest: a corrected re-delivery keeps each label's identity and writes what changed.

The version diff is checked against an independent computation (every row compared in Python,
``test_workspace_diff.expected_diff``), and the ledger is read back event by event.
"""

from __future__ import annotations

import io
import json

import pytest

from governance import ledger
from governance.models import LabelEvent
from marketplace.models import DatasetVersion, Delivery, Label
from marketplace.workspace import diff as workspace_diff

from . import ingest_support as support
from .ingest_support import make_delivery, picture
from .test_workspace_diff import expected_diff

media, run = support.media, support.run  # fixtures

pytestmark = pytest.mark.django_db

IMAGES = [("a.jpg", 96, 64), ("b.jpg", 96, 64), ("c.jpg", 96, 64)]
CATEGORIES = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]
V1 = [
    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4.0, 4.0, 20.0, 16.0]},
    {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50.0, 30.0, 20.0, 16.0]},
    {"id": 3, "image_id": 2, "category_id": 2, "bbox": [10.0, 10.0, 12.0, 30.0]},
    {"id": 4, "image_id": 3, "category_id": 1, "bbox": [30.0, 20.0, 24.0, 18.0]},
]


def coco_delivery(annotations, *, provenance=None) -> dict:
    doc = {
        "images": [
            {"id": i, "file_name": n, "width": w, "height": h} for i, (n, w, h) in enumerate(IMAGES, 1)
        ],
        "annotations": [{"iscrowd": 0, **a} for a in annotations],
        "categories": CATEGORIES,
    }
    files = {
        "annotations/instances_default.json": json.dumps(doc),
        **{f"images/{n}": picture(w, h, i) for i, (n, w, h) in enumerate(IMAGES)},
    }
    if provenance:
        files["provenance.jsonl"] = "\n".join(json.dumps(p) for p in provenance) + "\n"
    return files


def corrected() -> list[dict]:
    """The supplier's fix, exported again by the same tool: same ids, one class change, one nudge, one new."""
    fixed = [dict(a) for a in V1]
    fixed[1]["category_id"] = 2  # the second object on a.jpg is a person, not a car
    fixed[2]["bbox"] = [11.0, 10.0, 12.0, 30.0]  # nudged by a pixel
    fixed.append({"id": 5, "image_id": 3, "category_id": 2, "bbox": [70.0, 5.0, 10.0, 25.0]})
    return fixed


def deliver(dataset, files, run, **options) -> Delivery:
    delivery = make_delivery(dataset, files, format="coco")
    if options:
        Delivery.objects.filter(pk=delivery.pk).update(matching=options)
    result = run(delivery)
    assert result.ok, result.problems
    delivery.refresh_from_db()
    return delivery


def label_events(dataset, version_number):
    return list(
        LabelEvent.objects.filter(dataset=dataset, version_number=version_number, label_uid__isnull=False)
        .order_by("seq")
        .values_list("action", "label_uid", "payload")
    )


def test_a_corrected_coco_export_diffs_as_what_the_supplier_fixed(dataset, media, run):
    deliver(dataset, coco_delivery(V1), run)
    second = deliver(dataset, coco_delivery(corrected()), run)
    v1, v2 = DatasetVersion.objects.get(dataset=dataset, number=1), second.version

    diff = workspace_diff.diff_versions(old=v1, new=v2)
    labels = {k: diff["labels"][k] for k in ("added", "removed", "changed", "unchanged")}
    assert labels == {"added": 1, "removed": 0, "changed": 2, "unchanged": 2}
    assert diff["labels"] == {**diff["labels"], **expected_diff(v1, v2)["labels"]}

    section = second.report["lineage"]
    assert section["previous_version"] == 1
    assert section["counts"] == {
        "uid": 0, "source_id": 4, "geometry": 0, "relabel": 0, "new": 1, "removed": 0,
        "modified": 2, "provenance_only": 0, "unchanged": 2,
    }  # fmt: skip
    assert section["source_ids"]["status"] == "used"
    assert section["thresholds"]["iou"] == 0.5
    assert diff["lineage"]["counts"] == section["counts"]

    # The ledger: the class change and the nudge are "modified" with before and after; the new
    # label is "created"; the two untouched labels have no event in version 2.
    events = label_events(dataset, 2)
    assert sorted(a for a, _, _ in events) == ["created", "modified", "modified"]
    person = Label.objects.get(version=v2, source_id="2")
    first_uid = Label.objects.get(version=v1, source_id="2").uid
    assert person.uid == first_uid
    [(_, _, payload)] = [e for e in events if e[1] == person.uid]
    assert payload["before"]["category"] == "car" and payload["after"]["category"] == "person"
    assert payload["before"]["geometry_sha256"] == payload["after"]["geometry_sha256"]
    assert payload["lineage"]["method"] == "source_id"


def test_a_class_change_is_one_label_modified_and_its_history_spans_both_versions(
    dataset, media, run, api_for, supplier
):
    deliver(dataset, coco_delivery(V1), run)
    deliver(dataset, coco_delivery(corrected()), run)
    uid = Label.objects.get(version__number=1, version__dataset=dataset, source_id="2").uid
    assert Label.objects.filter(uid=uid).count() == 2  # one label, in two versions
    ledger.sign_tree_head(dataset=dataset)

    body = api_for(supplier).get(f"/api/v1/labels/{uid}/history/").json()
    actions = [(e["event"]["action"], e["event"]["version_number"]) for e in body["events"]]
    assert actions == [("created", 1), ("modified", 2)]
    assert all(e["proof"] for e in body["events"])


def test_a_label_reviewed_under_a_new_guideline_is_modified_for_its_provenance_alone(
    dataset, media, run, api_for, supplier
):
    from datetime import date

    from tests import factories as f

    guide = f.GuidelineFactory(dataset=dataset, title="Street labelling guide")
    f.GuidelineVersionFactory(guideline=guide, tag="v1", effective_date=date(2026, 1, 1))
    f.GuidelineVersionFactory(guideline=guide, tag="v2", effective_date=date(2026, 3, 1))
    first = [{"defaults": {"annotator": "annotator-A", "guideline_version": "v1", "source": "human"}}]
    deliver(dataset, coco_delivery(V1, provenance=first), run)
    # The same export again; reviewer B went over label 3 under guideline v2 and changed nothing in it.
    reviewed = [*first, {"label": 3, "annotator": "reviewer-B", "guideline_version": "v2"}]
    second = deliver(dataset, coco_delivery(V1, provenance=reviewed), run)

    counts = second.report["lineage"]["counts"]
    assert (counts["modified"], counts["provenance_only"], counts["unchanged"]) == (1, 1, 3)
    [(action, uid, payload)] = label_events(dataset, 2)
    assert action == "modified" and payload["before"] == payload["after"]  # the label itself is as it was
    assert payload["lineage"]["changed"] == ["provenance"]
    assert payload["provenance"]["before"]["annotator"] == "annotator-A"
    assert payload["provenance"]["before"]["guideline_version"] == "v1"
    assert payload["provenance"]["after"]["annotator"] == "reviewer-B"
    v1, v2 = (DatasetVersion.objects.get(dataset=dataset, number=n) for n in (1, 2))
    assert (
        Label.objects.get(version=v1, source_id="3").uid
        == uid
        == Label.objects.get(version=v2, source_id="3").uid
    )
    diff = workspace_diff.diff_versions(old=v1, new=v2)
    assert diff["labels"]["changed"] == 0 and diff["labels"]["relabelled"] == 1

    # Its history: v1 created by annotator A under guideline v1, then v2 modified by reviewer B under v2.
    ledger.sign_tree_head(dataset=dataset)
    body = api_for(supplier).get(f"/api/v1/labels/{uid}/history/").json()
    life = [
        (
            e["event"]["action"],
            e["event"]["version_number"],
            e["event"]["actor"],
            e["event"]["guideline_version"],
        )
        for e in body["events"]
    ]
    assert life == [("created", 1, "annotator-A", "v1"), ("modified", 2, "reviewer-B", "v2")]
    assert all(e["proof"] for e in body["events"])


def test_a_cvat_re_export_with_renumbered_shape_ids_matches_by_geometry(dataset, media, run):
    def cvat(shapes):
        boxes = "\n".join(
            f'    <box id="{sid}" label="{label}" source="manual" occluded="0" '
            f'xtl="{x}" ytl="{y}" xbr="{x + w}" ybr="{y + h}" z_order="0"></box>'
            for sid, label, (x, y, w, h) in shapes
        )
        xml = f"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>car</name><type>rectangle</type></label>
    <label><name>person</name><type>rectangle</type></label>
  </labels></task></meta>
  <image id="0" name="a.jpg" width="96" height="64">
{boxes}
  </image>
</annotations>
"""
        return {"annotations.xml": xml, "images/a.jpg": picture(96, 64, 0)}

    a, b, c = (4, 4, 20, 16), (40, 10, 20, 16), (60, 30, 12, 20)
    first = make_delivery(dataset, cvat([(1, "car", a), (2, "car", b), (3, "person", c)]), format="cvat")
    assert run(first).ok
    # The next export lists the shapes in another order under new ids, one box nudged.
    second = make_delivery(
        dataset, cvat([(1, "person", c), (2, "car", (5, 4, 20, 16)), (3, "car", b)]), format="cvat"
    )
    assert run(second).ok
    second.refresh_from_db()
    section = second.report["lineage"]
    assert section["source_ids"]["status"] == "ignored"
    assert section["counts"]["geometry"] == 3 and section["counts"]["new"] == 0
    assert section["counts"]["modified"] == 1 and section["counts"]["unchanged"] == 2
    v1, v2 = dataset.versions.get(number=1), dataset.versions.get(number=2)
    diff = workspace_diff.diff_versions(old=v1, new=v2)
    assert {k: diff["labels"][k] for k in ("added", "removed", "changed", "unchanged")} == {
        "added": 0,
        "removed": 0,
        "changed": 1,
        "unchanged": 2,
    }
    # Found in Python: on PostgreSQL a geometry is json, which SQL cannot compare (TextJSONField).
    by_box = {(label.version_id, tuple(label.geometry["bbox"])): label for label in Label.objects.all()}
    moved = by_box[(v2.pk, (5.0, 4.0, 20.0, 16.0))]
    assert by_box[(v1.pk, (4.0, 4.0, 20.0, 16.0))].uid == moved.uid


def test_no_matching_gives_every_label_a_new_uid_and_the_old_ones_are_deleted(dataset, media, run):
    deliver(dataset, coco_delivery(V1), run)
    second = deliver(dataset, coco_delivery(V1), run, enabled=False)
    old = set(Label.objects.filter(version__number=1, version__dataset=dataset).values_list("uid", flat=True))
    new = set(Label.objects.filter(version=second.version).values_list("uid", flat=True))
    assert len(new) == 4 and not (old & new)
    assert second.report["lineage"]["enabled"] is False
    assert second.report["lineage"]["counts"]["new"] == 4
    assert second.report["lineage"]["counts"]["removed"] == 4
    events = label_events(dataset, 2)
    assert sorted(a for a, _, _ in events) == ["created"] * 4 + ["deleted"] * 4
    assert {u for a, u, _ in events if a == "deleted"} == old


def test_an_identical_re_delivery_writes_no_label_event(dataset, media, run):
    deliver(dataset, coco_delivery(V1), run)
    second = deliver(dataset, coco_delivery(V1), run)
    assert label_events(dataset, 2) == []
    assert second.report["lineage"]["counts"]["unchanged"] == 4


def test_a_removed_label_is_deleted_in_the_ledger(dataset, media, run):
    deliver(dataset, coco_delivery(V1), run)
    deliver(dataset, coco_delivery(V1[:3]), run)
    [(action, uid, payload)] = label_events(dataset, 2)
    assert action == "deleted" and payload["before"]["item"] == "images/c.jpg"
    assert uid == Label.objects.get(version__number=1, version__dataset=dataset, source_id="4").uid


def test_bad_matching_options_are_refused_at_upload(dataset, media):
    from django.core.files.base import ContentFile

    from marketplace.deliveries import service as ingest
    from marketplace.errors import DomainError

    from .ingest_support import zip_bytes

    with pytest.raises(DomainError) as caught:
        ingest.create_delivery(
            dataset=dataset,
            archive=ContentFile(zip_bytes(coco_delivery(V1)), name="d.zip"),
            matching={"thresholds": {"iou": 3}},
        )
    assert caught.value.code == "invalid_matching" and "iou" in caught.value.detail


# --------------------------------------------------------------------------- API, pages, CLI


def test_the_api_takes_no_matching_and_shows_the_lineage_only_to_the_supplier(
    dataset, supplier, outsider, media, api_for, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from .ingest_support import zip_bytes

    deliver_api = api_for(supplier)

    def upload(annotations, **fields):
        with django_capture_on_commit_callbacks(execute=True):
            response = deliver_api.post(
                f"/api/v1/datasets/{dataset.slug}/deliveries/",
                {
                    "archive": SimpleUploadedFile("d.zip", zip_bytes(coco_delivery(annotations))),
                    "format": "coco",
                    **fields,
                },
                format="multipart",
            )
        assert response.status_code == 202, response.content
        return deliver_api.get(f"/api/v1/deliveries/{response.json()['id']}/").json()

    upload(V1)
    body = upload(corrected(), thresholds=json.dumps({"iou": 0.6}))
    assert body["matching"] == {"enabled": True, "thresholds": {"iou": 0.6}}
    assert body["lineage"]["counts"]["source_id"] == 4 and body["lineage"]["thresholds"]["iou"] == 0.6
    fresh = upload(corrected(), matching="none")
    assert fresh["matching"] == {"enabled": False}
    assert fresh["lineage"]["counts"]["new"] == 5 and fresh["lineage"]["counts"]["removed"] == 5

    refused = deliver_api.post(
        f"/api/v1/datasets/{dataset.slug}/deliveries/",
        {
            "archive": SimpleUploadedFile("d.zip", zip_bytes(coco_delivery(V1))),
            "thresholds": json.dumps({"iou": 2}),
        },
        format="multipart",
    )
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_matching"
    assert api_for(outsider).get(f"/api/v1/deliveries/{body['id']}/").status_code == 404


def test_the_delivery_page_and_the_label_history_page_show_the_lineage(
    dataset, supplier, outsider, media, run, client_for
):
    deliver(dataset, coco_delivery(V1), run)
    second = deliver(dataset, coco_delivery(corrected()), run)
    client = client_for(supplier)
    html = client.get(f"/supplier/deliveries/{second.pk}/").content.decode()
    section = html.split('id="lineage"')[1].split("<h2>Report</h2>")[0]
    assert "Labels matched to version 1" in section
    assert "<th>By the tool's own id</th><td>4</td>" in section
    assert "<th>New</th><td>1</td>" in section and "2 / 2" in section

    uid = Label.objects.get(version=second.version, source_id="2").uid
    page = client.get(f"/governance/labels/{uid}/").content.decode()
    actions = [chunk.split("</b>")[0] for chunk in page.split('<tr class="event">')[1:]]
    assert [a.split("<b>")[1] for a in actions] == ["created", "modified"]
    assert "v1" in page and "v2" in page
    assert client_for(outsider).get(f"/supplier/deliveries/{second.pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)  # as in a terminal: the file copy runs at the commit
def test_the_cli_delivers_a_new_generation(dataset, media, tmp_path):
    from django.core.management import call_command

    from .ingest_support import zip_bytes

    for n, shapes in enumerate((V1, corrected())):
        path = tmp_path / f"d{n}.zip"
        path.write_bytes(zip_bytes(coco_delivery(shapes)))
        out = io.StringIO()
        flags = ["--no-matching"] if n else []
        call_command("ingest", str(path), "--dataset", dataset.slug, "--json", *flags, stdout=out)
    body = json.loads(out.getvalue())
    assert body["lineage"]["enabled"] is False and body["lineage"]["counts"]["new"] == 5
