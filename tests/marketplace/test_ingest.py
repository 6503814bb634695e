"""Ingest: a valid delivery becomes the next draft version with its files; anything wrong changes nothing."""

from __future__ import annotations

import io
import json
import platform
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from django.db import connection

from governance.models import Annotator, LabelEvent
from marketplace.catalogue import publication as catalogue_publication
from marketplace.deliveries import archive, report, service
from marketplace.exports import packaging as export_packaging
from marketplace.exports import service as export_service
from marketplace.formats import model as fmt
from marketplace.models import Category, DatasetVersion, Delivery, Item, Label
from tests import factories as f
from tests.conftest import build_version

from . import ingest_support as support
from .ingest_support import (
    coco_doc,
    coco_files,
    image_bytes,
    jpeg_with_exif_orientation,
    make_delivery,
    picture,
    row_counts,
    storage_files,
    zip_bytes,
)

media, run = support.media, support.run  # fixtures

pytestmark = pytest.mark.django_db

LS_FIXTURE = Path("/work/shared/fixtures/labelstudio/rectangles-export.json")


@pytest.fixture
def guideline(dataset):
    g = f.GuidelineFactory(dataset=dataset, title="Street labelling guide")
    return {
        "v1.0": f.GuidelineVersionFactory(guideline=g, tag="v1.0", effective_date=date(2026, 1, 1)),
        "v1.1": f.GuidelineVersionFactory(guideline=g, tag="v1.1", effective_date=date(2026, 3, 1)),
    }


# --------------------------------------------------------------------------- the happy path


def test_a_coco_delivery_becomes_the_first_draft_version(dataset, supplier, media, run):
    delivery = make_delivery(dataset, coco_files(n_images=3), user=supplier)
    before = storage_files(media)

    result = run(delivery)

    assert result.ok and result.created and result.version_number == 1
    assert delivery.status == Delivery.Status.INGESTED and delivery.progress == 100
    assert delivery.format == "coco" and delivery.finished_at is not None
    version = delivery.version
    assert version.number == 1 and version.status == DatasetVersion.Status.DRAFT
    assert version.items.count() == 3 and version.labels.count() == 4
    assert {i.split for i in version.items.all()} == {"train"}
    assert sorted(version.schema.categories.values_list("source_id", "name")) == [(1, "car"), (2, "person")]
    assert version.stats["labels"] == 4 and version.stats["annotation_kinds"] == {"bbox": 3, "polygon": 1}
    assert hasattr(version, "datasheet")
    # Every image is stored under its hash once the rows are committed.
    new_files = storage_files(media) - before
    assert new_files == set(version.items.values_list("storage_key", flat=True))
    assert result.counts["items"] == 3 and result.counts["labels_by_kind"] == {"bbox": 3, "polygon": 1}


def test_geometry_is_kept_exactly(dataset, media, run):
    run(delivery := make_delivery(dataset, coco_files(n_images=1)))
    label = delivery.version.labels.get(category__name="person")
    assert label.geometry_type == fmt.POLYGON
    assert label.geometry["polygons"] == [[5, 5, 20, 5, 20, 30, 5, 30]]
    assert label.source_ref == "annotations/instances_train.json#/annotations/1"
    assert label.delivery_id == delivery.pk


def test_every_label_gets_a_ledger_event_in_the_same_transaction(dataset, media, run):
    delivery = make_delivery(dataset, coco_files(n_images=2))
    run(delivery)
    uids = set(delivery.version.labels.values_list("uid", flat=True))
    events = LabelEvent.objects.filter(dataset=dataset)
    assert set(events.values_list("label_uid", flat=True)) == uids
    assert set(events.values_list("delivery_id", flat=True)) == {delivery.pk}
    assert set(events.values_list("version_number", flat=True)) == {1}


def test_a_second_delivery_is_the_next_version_and_keeps_datasheet_and_category_ids(
    dataset, published_version, media, run
):
    published_version.datasheet  # noqa: B018 - the fixture wrote "Detection research."
    doc = coco_doc(
        [("0000.jpg", 64, 48)],
        [
            {"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 9, "bbox": [2, 2, 5, 5]},
        ],
        categories=[{"id": 7, "name": "car"}, {"id": 9, "name": "bicycle"}],
    )
    delivery = make_delivery(dataset, coco_files(n_images=1, doc=doc))

    result = run(delivery)

    assert result.ok and result.version_number == 2
    version = delivery.version
    assert version.datasheet.purpose == published_version.datasheet.purpose
    ids = dict(version.schema.categories.values_list("name", "source_id"))
    # car keeps its id from v1; person stays in the schema; bicycle is new with its own id.
    assert ids == {"car": 1, "person": 2, "bicycle": 9}
    assert version.items.count() == 1  # a full snapshot: nothing carried forward
    assert any(p["code"] == "category_id_kept" and p["severity"] == "warning" for p in result.problems)
    published_version.refresh_from_db()
    assert (
        published_version.status == DatasetVersion.Status.PUBLISHED and published_version.items.count() == 3
    )


def test_running_an_ingested_delivery_again_changes_nothing(dataset, media, run):
    delivery = make_delivery(dataset, coco_files())
    first = run(delivery)
    rows, files = row_counts(), storage_files(media)

    again = run(delivery)

    assert again.version_number == first.version_number and again.ok and not again.created
    assert row_counts() == rows and storage_files(media) == files


def test_it_detects_the_format_unless_told(dataset, media, run):
    delivery = make_delivery(dataset, coco_files(), format="voc")
    result = run(delivery)
    assert not result.ok and result.problems[0]["code"] == "missing_file"


# --------------------------------------------------------------------------- failures change nothing


def test_a_broken_delivery_fails_with_a_located_report_and_leaves_nothing(dataset, media, run):
    doc = coco_doc(
        [("0000.jpg", 64, 48), ("0001.jpg", 64, 48)],
        [
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"image_id": 2, "category_id": 42, "bbox": [1, 1, 5, 5]},
            {"image_id": 1, "category_id": 1, "bbox": [60, 40, 30, 30]},
        ],
    )
    delivery = make_delivery(dataset, coco_files(doc=doc))
    rows, files = row_counts(), storage_files(media)

    result = run(delivery)

    assert result.status == Delivery.Status.FAILED and result.version_number is None
    assert row_counts() == rows and storage_files(media) == files
    by_code = {p["code"]: p for p in result.problems}
    assert by_code["unknown_category"]["file"] == "annotations/instances_train.json"
    assert by_code["unknown_category"]["location"] == "/annotations/1/category_id"
    assert by_code["invalid_geometry"]["location"] == "/annotations/2/bbox"
    assert all(p["severity"] == "error" for p in result.problems)
    assert delivery.report["problem_counts"]["error"] == 2
    assert delivery.progress == 100 and delivery.finished_at is not None


def test_the_report_is_capped(dataset, media, run, settings):
    annotations = [{"image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]} for _ in range(30)]
    delivery = make_delivery(dataset, coco_files(doc=coco_doc([("0000.jpg", 64, 48)], annotations)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "MAX_REPORTED_PROBLEMS", 10)
        result = run(delivery)
    assert len(result.problems) == 10
    assert delivery.report["problems_not_listed"] == 20 and delivery.report["problem_counts"]["error"] == 30


def test_a_failure_inside_the_write_transaction_rolls_everything_back(dataset, media, run, monkeypatch):
    from governance import ledger

    def explode(**kwargs):
        list(kwargs["events"])  # the labels are inserted as the ledger consumes them
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger, "append_events", explode)
    delivery = make_delivery(dataset, coco_files())
    rows, files = row_counts(), storage_files(media)

    result = run(delivery)

    assert result.status == Delivery.Status.FAILED
    assert [p["code"] for p in result.problems] == ["internal_error"]
    assert row_counts() == rows
    # Files before rows: the images were stored before the transaction, and stay as unreferenced
    # blobs (harmless; swept by sweep_orphan_blobs, test_ingest_faults.py). Nothing else is new.
    new = storage_files(media) - files
    assert new and all(p.startswith("blobs/") for p in new)
    assert not Item.objects.filter(storage_key__in=new).exists()


def test_a_model_label_must_name_its_model(dataset, media, run):
    doc = coco_doc(
        [("0000.jpg", 64, 48)], [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "source": "model"}]
    )
    result = run(make_delivery(dataset, coco_files(doc=doc)))
    assert [p["code"] for p in result.problems] == ["missing_model_name"]
    assert result.problems[0]["location"] == "/annotations/0"


def test_an_annotator_given_as_an_email_address_is_refused(dataset, media, run):
    doc = coco_doc(
        [("0000.jpg", 64, 48)],
        [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "annotator": "jane@example.com"}],
    )
    result = run(make_delivery(dataset, coco_files(doc=doc)))
    assert [p["code"] for p in result.problems] == ["personal_data"]
    assert not Annotator.objects.exists()


# --------------------------------------------------------------------------- images


def test_a_declared_size_that_is_not_the_image_size_is_refused(dataset, media, run):
    files = coco_files(n_images=1, width=64, height=48)
    files["images/train/0000.jpg"] = image_bytes(32, 48)
    result = run(make_delivery(dataset, files))
    (problem,) = result.problems
    assert problem["code"] == "size_mismatch" and "32x48" in problem["message"]
    assert problem["file"] == "annotations/instances_train.json" and problem["location"] == "/images/0"


def test_exif_orientation_is_applied_to_the_recorded_size(dataset, media, run):
    # Stored 48 wide and 64 high, shown rotated (orientation 6): 64 x 48, as the labels say.
    files = coco_files(n_images=1, width=64, height=48)
    files["images/train/0000.jpg"] = jpeg_with_exif_orientation(48, 64, 6)
    result = run(delivery := make_delivery(dataset, files))
    assert result.ok, result.problems
    item = delivery.version.items.get()
    assert (item.width, item.height) == (64, 48)


def test_identical_images_are_found_by_hash_and_stored_once(dataset, media, run):
    files = coco_files(n_images=2)
    files["images/train/0001.jpg"] = files["images/train/0000.jpg"]
    result = run(delivery := make_delivery(dataset, files))
    assert result.ok and result.counts["duplicate_images"] == 1
    assert [p["code"] for p in result.problems] == ["duplicate_content"]
    assert len(set(delivery.version.items.values_list("sha256", flat=True))) == 1
    assert len([p for p in storage_files(media) if p.startswith("blobs/")]) == 1


def test_an_image_is_stored_under_its_real_type(dataset, media, run):
    files = coco_files(n_images=1)
    files["images/train/0000.jpg"] = image_bytes(64, 48, "PNG")
    result = run(delivery := make_delivery(dataset, files))
    assert result.ok and [p["code"] for p in result.problems] == ["extension_mismatch"]
    item = delivery.version.items.get()
    assert item.storage_key.endswith(".png") and item.key == "images/train/0000.jpg"


# --------------------------------------------------------------------------- provenance


def _provenance_delivery(dataset, sidecar_lines: list[dict], *, annotations=None):
    annotations = annotations or [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5]},
        {"image_id": 1, "category_id": 2, "bbox": [3, 3, 5, 5]},
    ]
    doc = coco_doc([("0000.jpg", 64, 48)], annotations)
    sidecar = "\n".join(json.dumps(line) for line in sidecar_lines)
    return coco_files(doc=doc, extra={"provenance.jsonl": sidecar})


def test_provenance_comes_from_the_sidecar_then_its_defaults(dataset, supplier_org, guideline, media, run):
    existing = f.AnnotatorFactory(organization=supplier_org, pseudonym="ann-1")
    files = _provenance_delivery(
        dataset,
        [
            {"defaults": {"guideline_version": "v1.0", "annotator": "ann-9"}},
            {
                "label": 1,
                "annotator": "ann-1",
                "created_at": "2026-03-01T10:00:00Z",
                "guideline_version": "v1.1",
            },
            {"label": 2, "source": "model", "model_name": "yolov8x", "model_version": "8.1"},
        ],
    )
    result = run(delivery := make_delivery(dataset, files))

    assert result.ok, result.problems
    labels = {lab.source_ref.rsplit("/", 1)[-1]: lab for lab in delivery.version.labels.all()}
    first, second, third = labels["0"], labels["1"], labels["2"]
    assert first.annotator == existing and first.guideline_version == guideline["v1.1"]
    assert first.made_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert second.source == fmt.MODEL and second.model_name == "yolov8x" and second.model_version == "8.1"
    assert third.annotator.pseudonym == "ann-9" and third.guideline_version == guideline["v1.0"]
    assert Annotator.objects.filter(organization=supplier_org).count() == 2  # ann-1 reused, ann-9 created
    assert set(delivery.version.guideline_versions.all()) == set(guideline.values())
    coverage = delivery.report["provenance"]
    assert coverage["per_label"] == 2 and coverage["defaults"] == 1 and coverage["nothing"] == 0
    assert coverage["shares"] == {"per_label": 0.6667, "defaults": 0.3333, "none": 0.0}


def test_the_upload_defaults_fill_what_the_sidecar_leaves_out(dataset, guideline, media, run):
    files = _provenance_delivery(dataset, [{"defaults": {"annotator": "ann-2"}}])
    delivery = make_delivery(dataset, files, defaults={"guideline_version": "v1.1", "annotator": "ann-7"})
    result = run(delivery)
    assert result.ok, result.problems
    label = delivery.version.labels.first()
    assert label.annotator.pseudonym == "ann-2" and label.guideline_version == guideline["v1.1"]


def test_coverage_says_when_labels_have_no_provenance(dataset, media, run):
    result = run(delivery := make_delivery(dataset, coco_files()))
    assert result.ok
    assert delivery.report["provenance"]["nothing"] == 3
    assert delivery.report["provenance"]["shares"]["none"] == 1.0


def test_an_unknown_guideline_tag_is_reported_once_with_where_it_is_first_used(
    dataset, guideline, media, run
):
    files = _provenance_delivery(dataset, [{"defaults": {"guideline_version": "v9"}}])
    result = run(delivery := make_delivery(dataset, files))
    assert delivery.status == Delivery.Status.FAILED
    (problem,) = result.problems
    assert problem["code"] == "unknown_guideline" and problem["location"] == "/annotations/0"
    assert (
        "'v9'" in problem["message"]
        and "3 label(s)" in problem["message"]
        and "v1.0, v1.1" in problem["message"]
    )


def test_sidecar_records_for_labels_that_do_not_exist_are_a_warning(dataset, media, run):
    files = _provenance_delivery(dataset, [{"label": 77, "annotator": "ann-1"}])
    result = run(make_delivery(dataset, files))
    assert result.ok
    (problem,) = result.problems
    assert problem["code"] == "unmatched_provenance" and problem["severity"] == "warning"


def test_sidecar_problems_are_located_by_line(dataset, media, run):
    files = _provenance_delivery(
        dataset, [{"label": 1, "annotator": "ann-1"}, {"label": 2, "created_at": "yesterday"}]
    )
    result = run(make_delivery(dataset, files))
    assert not result.ok
    (problem,) = result.problems
    assert (problem["file"], problem["location"], problem["code"]) == (
        "provenance.jsonl",
        "line 2",
        "bad_date",
    )


def test_invalid_upload_defaults_are_refused_before_anything_is_stored(dataset, media):
    from marketplace.errors import DomainError

    with pytest.raises(DomainError) as caught:
        make_delivery(dataset, coco_files(), defaults={"source": "robot"})
    assert caught.value.code == "invalid_defaults"
    assert not Delivery.objects.exists() and not storage_files(media)


# --------------------------------------------------------------------------- Label Studio, real export


def _label_studio_files() -> dict:
    tasks = json.loads(LS_FIXTURE.read_text())
    files = {"export.json": LS_FIXTURE.read_bytes()}
    for task in tasks:
        result = next(r for a in task["annotations"] for r in a["result"])
        name = task["data"]["image"].rsplit("/", 1)[-1]
        files[f"images/{name}.jpg"] = image_bytes(result["original_width"], result["original_height"])
    return files


def test_the_real_label_studio_export_keeps_each_annotators_candidates(dataset, supplier_org, media, run):
    tasks = json.loads(LS_FIXTURE.read_text())
    result = run(delivery := make_delivery(dataset, _label_studio_files()))

    assert result.ok, result.problems
    version = delivery.version
    assert version.items.count() == len(tasks)
    results = sum(
        len(r["value"]["rectanglelabels"]) for t in tasks for a in t["annotations"] for r in a["result"]
    )
    assert version.labels.count() == results
    # The task two annotators worked on keeps both as candidates; the other has final labels.
    multi = next(t for t in tasks if len(t["annotations"]) > 1)
    multi_labels = Label.objects.filter(
        version=version, item__key__endswith=multi["data"]["image"].rsplit("/", 1)[-1] + ".jpg"
    )
    assert multi_labels.exists() and not multi_labels.filter(is_final=True).exists()
    assert {lab.annotator.pseudonym for lab in multi_labels} == {
        f"ls-user-{a['completed_by']}" for a in multi["annotations"]
    }
    assert Annotator.objects.filter(organization=supplier_org).count() == len(
        {a["completed_by"] for t in tasks for a in t["annotations"]}
    )
    assert all(lab.made_at is not None for lab in version.labels.all())
    assert delivery.report["provenance"]["native"] == results
    assert delivery.format == "labelstudio"


def test_label_studio_pixels_are_percent_of_the_original_size(dataset, media, run):
    tasks = json.loads(LS_FIXTURE.read_text())
    run(delivery := make_delivery(dataset, _label_studio_files()))
    first = tasks[0]["annotations"][0]["result"][0]
    value, w, h = first["value"], first["original_width"], first["original_height"]
    expected = [
        value["x"] * w / 100,
        value["y"] * h / 100,
        value["width"] * w / 100,
        value["height"] * h / 100,
    ]
    boxes = [lab.geometry["bbox"] for lab in delivery.version.labels.all()]
    assert any(all(abs(a - b) < 1e-6 for a, b in zip(box, expected, strict=True)) for box in boxes)


# --------------------------------------------------------------------------- progress


@pytest.mark.django_db(transaction=True)
def test_progress_is_written_outside_the_write_transaction(supplier_org, media, monkeypatch):
    dataset = f.DatasetFactory(supplier=supplier_org)
    delivery = make_delivery(dataset, coco_files(n_images=3))
    seen = []
    original = report.Progress.set

    def spy(self, percent, **kwargs):
        seen.append((percent, connection.in_atomic_block))
        monkeypatch.setattr(report, "PROGRESS_INTERVAL", 0)
        return original(self, percent, **kwargs)

    monkeypatch.setattr(report.Progress, "set", spy)
    result = service.ingest_delivery(delivery_id=delivery.pk)

    assert result.ok
    assert seen and not any(in_atomic for _, in_atomic in seen)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)
    delivery.refresh_from_db()
    assert delivery.progress == 100 and delivery.status == Delivery.Status.INGESTED


def test_a_published_version_is_never_touched_by_a_later_delivery(dataset, media, run):
    v1 = build_version(dataset, number=1, publish=False)
    catalogue_publication.publish_version(version=v1)
    labels_before = list(Label.objects.filter(version=v1).values_list("uid", "geometry"))
    run(make_delivery(dataset, coco_files()))
    assert list(Label.objects.filter(version=v1).values_list("uid", "geometry")) == labels_before
    assert Category.objects.filter(schema__version=v1).count() == 2


# --------------------------------------------------------------------------- round trip and identity


def test_our_coco_export_of_a_version_ingests_back_to_the_same_labels(dataset, guideline, media, run):
    files = _provenance_delivery(
        dataset,
        [
            {"defaults": {"guideline_version": "v1.0"}},
            {"label": 1, "annotator": "ann-1", "created_at": "2026-03-01T10:00:00Z"},
            {"label": 3, "source": "model", "model_name": "yolov8x", "model_version": "8.1"},
        ],
    )
    run(first := make_delivery(dataset, files))
    v1 = first.version
    archive = io.BytesIO()
    options = export_service.normalise_options(version=v1, format="coco", options={})
    export_packaging.build_archive(version=v1, format="coco", options=options, fileobj=archive)

    result = run(second := make_delivery(dataset, archive.getvalue()))

    assert result.ok, result.problems
    v2 = second.version
    fields = ("uid", "category__name", "category__source_id", "geometry_type", "geometry", "attributes",
              "annotator__pseudonym", "guideline_version__tag", "source", "model_name", "model_version",
              "made_at", "is_final", "item__sha256")  # fmt: skip
    before = sorted(Label.objects.filter(version=v1).values_list(*fields))
    after = sorted(Label.objects.filter(version=v2).values_list(*fields))
    assert after == before
    assert v2.items.count() == v1.items.count()


def test_the_same_label_studio_export_delivered_twice_keeps_every_label_uid(dataset, media, run):
    run(first := make_delivery(dataset, _label_studio_files()))
    run(second := make_delivery(dataset, _label_studio_files()))
    uids = set(first.version.labels.values_list("uid", flat=True))
    assert uids and uids == set(second.version.labels.values_list("uid", flat=True))
    assert second.version.number == 2


VOC_XML = """<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>car</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>11</xmax><ymax>10</ymax></bndbox></object>
<object><name>person</name><bndbox><xmin>20</xmin><ymin>5</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
</annotation>"""


def test_provenance_names_a_voc_object_by_its_file_and_index(dataset, media, run):
    sidecar = json.dumps(
        {"label": "VOC/Annotations/a.xml#2", "annotator": "ann-5"}
    )  # 1-based, as VOC's masks
    files = {
        "VOC/Annotations/a.xml": VOC_XML,
        "VOC/JPEGImages/a.jpg": picture(64, 48),
        "provenance.jsonl": sidecar,
    }
    result = run(delivery := make_delivery(dataset, zip_bytes(files)))
    assert result.ok, result.problems
    annotators = dict(delivery.version.labels.values_list("category__name", "annotator__pseudonym"))
    assert annotators == {"car": None, "person": "ann-5"}
    # VOC's 1-based corners, made 0-based by the devkit rule.
    assert delivery.version.labels.get(category__name="car").geometry["bbox"] == [1, 2, 10, 8]


def test_provenance_names_a_yolo_row_by_its_file_and_line_and_never_by_the_bare_line(dataset, media, run):
    sidecar = "\n".join(
        [
            json.dumps({"label": "labels/train/b.txt:2", "annotator": "ann-6"}),
            json.dumps({"label": 1, "annotator": "ann-x"}),
        ]
    )
    files = {
        "data.yaml": "names: [car, person]\ntrain: images/train\n",
        "images/train/a.jpg": picture(64, 48, 1),
        "images/train/b.jpg": picture(64, 48, 2),
        "labels/train/a.txt": "0 0.5 0.5 0.2 0.2\n",
        "labels/train/b.txt": "0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n",
        "provenance.jsonl": sidecar,
    }
    result = run(delivery := make_delivery(dataset, zip_bytes(files)))
    assert result.ok, result.problems
    rows = set(delivery.version.labels.values_list("source_ref", "annotator__pseudonym"))
    assert rows == {
        ("labels/train/a.txt:1", None),
        ("labels/train/b.txt:1", None),
        ("labels/train/b.txt:2", "ann-6"),
    }
    assert [p["code"] for p in result.problems] == ["unmatched_provenance"]  # {"label": 1} matches nothing


def test_a_lost_database_leaves_the_delivery_pending_for_the_tasks_retry(dataset, media, monkeypatch):
    from django.db.utils import OperationalError

    def down(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(service, "write_version", down)
    delivery = make_delivery(dataset, coco_files())
    with pytest.raises(OperationalError):
        service.ingest_delivery(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING and delivery.version is None


def test_a_yolo_export_with_its_croissant_metadata_is_detected_as_yolo():
    """Our exports put croissant.json (JSON-LD) at the top level; it is metadata, not COCO labels."""
    from marketplace.formats.archive import DirectorySource

    files = {
        "data.yaml": b"names:\n  0: car\ntrain: images/train\nval: images/train\n",
        "images/train/a.jpg": picture(32, 24),
        "labels/train/a.txt": b"0 0.5 0.5 0.25 0.25\n",
        "croissant.json": b'{"@context": {"@language": "en"}, "@type": "sc:Dataset", "name": "x"}',
    }
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        for name, data in files.items():
            path = Path(root) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        assert archive.detect_format(DirectorySource(root)) == "yolo"
        (Path(root) / "croissant.json").write_bytes(b'{"images": [], "annotations": [], "categories": []}')
        assert archive.detect_format(DirectorySource(root)) == "coco"


def test_the_label_pass_does_not_hold_the_image_contents_table(dataset, media, run, monkeypatch):
    # The duplicate-content table (~20 bytes an archive entry) was held through the label pass,
    # where the read peaks at ten times the images; only its count is needed there.
    from marketplace.deliveries import plan

    checked_items = []
    real = plan._check_items

    def spied(*args, **kwargs):
        checked_items.append(real(*args, **kwargs))
        return checked_items[-1]

    monkeypatch.setattr(plan, "_check_items", spied)
    files = coco_files(n_images=3)
    files["images/train/0001.jpg"] = files["images/train/0000.jpg"]
    result = run(make_delivery(dataset, files))
    assert result.ok and result.counts["duplicate_images"] == 1
    (checked,) = checked_items
    assert len(checked.seen_content) == 0 and checked.distinct == 2


def test_the_memory_the_read_freed_is_given_back_before_the_write(dataset, media, run, monkeypatch):
    # glibc kept the read's freed tables in its heap and the write piled on top: at 500,000 images
    # the write started 36 MB higher than at 50,000.
    from marketplace.deliveries import service, write

    calls = []
    real_validate, real_write = service.validate_delivery, service.write_version
    monkeypatch.setattr(
        service, "validate_delivery", lambda **kw: calls.append("read") or real_validate(**kw)
    )
    monkeypatch.setattr(service, "write_version", lambda **kw: calls.append("write") or real_write(**kw))
    monkeypatch.setattr(
        service, "release_freed_memory", lambda: calls.append("release") or write.release_freed_memory()
    )
    assert run(make_delivery(dataset, coco_files(n_images=2))).ok
    assert calls == ["read", "release", "write"]
    assert write.release_freed_memory() is (platform.libc_ver()[0] == "glibc")
