"""Real exports go in: every case of the corpus ingests with what an independent reader finds in it.

The corpus (tests/marketplace/formats/corpus/, origins in its manifest.json) holds files written by
CVAT, Roboflow, Ultralytics-style tools, Label Studio, datumaro, mmpose/mmdetection test suites and
others, untouched. Each case is ingested through the real service; its items, labels by kind and
keypoint visibility are compared with pycocotools or the format's documented rules (never with our
own readers); then the version is exported to its own format and to COCO, and the export ingested
again must hold the same labels.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

from marketplace.exports import packaging as export_packaging
from marketplace.exports import service as export_service
from marketplace.models import Delivery, Label

from . import ingest_support as support
from .formats import corpus_support as corpus
from .ingest_support import make_delivery

pytestmark = pytest.mark.django_db

media, run = support.media, support.run  # fixtures

# Cases the readers do not accept yet, with the reason (issue #17, not finished): each is an
# expected failure, so the day a reader learns the case the test says so (strict xfail).
NOT_YET = {
    "datumaro/roboflow_yolo": "datumaro's 10x5 images are under the 10 px minimum; data.yaml names ../valid",
    "datumaro/roboflow_yolo_obb": "datumaro's 10x5 images are under the 10 px minimum; data.yaml names ../valid",
    "datumaro/cvat_task": "shapes with an empty label are refused (a shape without a class)",
    "mmpose/humanart": "its category names 21 keypoints, its annotations hold 17 (and 21 in keypoints_21): refused",
}
# Round trips that lose something today (beyond the cases above).
ROUND_TRIP_NOT_YET = {
    (
        "same",
        "roboflow-python/sharks_yolov9",
    ): "our YOLO segment export writes boxes as 4-corner polygons (Ultralytics misreads box rows in segment files)",
}

# Refused or miscounted on the way in, yet what goes in survives the round trip.
ROUND_TRIP_DESPITE: set[str] = set()


def _case(c: dict):
    reason = NOT_YET.get(c["name"])
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(c, id=c["name"], marks=marks)


CASES = corpus.load_cases()
IDS = [c["name"] for c in CASES]
# Kinds an export cannot write in a format (the round trip compares the rest).
EXPORTABLE = {
    "coco": {"bbox", "polygon", "mask", "keypoints", "classification", "polyline", "cuboid_2d"},
    "voc": {"bbox", "mask"},  # a mask and its box: one <object>, back as the same two labels
    "yolo": {"bbox", "polygon", "keypoints"},
}


def _kinds(version) -> Counter:
    return Counter(Label.objects.filter(version=version).values_list("geometry_type", flat=True))


def _kinds_and_finality(version, kinds) -> Counter:
    """(kind, is_final) of each label whose kind the format holds: candidates stay candidates."""
    rows = Label.objects.filter(version=version, geometry_type__in=kinds)
    return Counter(rows.values_list("geometry_type", "is_final"))


def _visibility(version) -> Counter:
    seen: Counter = Counter()
    for geometry in Label.objects.filter(version=version, geometry_type="keypoints").values_list(
        "geometry", flat=True
    ):
        seen.update(int(v) for v in geometry["keypoints"][2::3])
    return seen


def _parts_and_actions(version) -> tuple[int, int]:
    attributes = list(
        Label.objects.filter(version=version, geometry_type="bbox").values_list("attributes", flat=True)
    )
    return sum(len(a.get("parts", [])) for a in attributes), sum(
        len(a.get("actions", {})) for a in attributes
    )


def _ingest(dataset, run, data: bytes, format: str = "auto"):
    delivery = make_delivery(dataset, data, format=format)
    result = run(delivery)
    errors = [
        (p["code"], p["file"], p["location"], p["message"])
        for p in result.problems
        if p["severity"] == "error"
    ]
    assert result.ok, errors[:5]
    assert delivery.status == Delivery.Status.INGESTED
    return delivery, result


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_manifest_holds_what_the_independent_reader_counts(case):
    # Through JSON, as the manifest stores them (visibility keys become strings).
    assert json.loads(json.dumps(corpus.independent_counts(case))) == case["independent_counts"]


@pytest.mark.parametrize("case", [_case(c) for c in CASES])
def test_a_real_export_goes_in_with_everything_it_holds(case, dataset, media, run):
    expected = case["independent_counts"]
    delivery, result = _ingest(dataset, run, corpus.case_zip(case))

    assert delivery.format == case["format"]
    version = delivery.version
    if "items" in expected:
        assert version.items.count() == expected["items"]
    kinds = _kinds(version)
    want = Counter({k: n for k, n in expected["labels_by_kind"].items() if k != "caption"})
    assert kinds == want
    if expected.get("keypoint_visibility"):
        assert _visibility(version) == Counter(
            {int(k): n for k, n in expected["keypoint_visibility"].items()}
        )
    if expected.get("parts"):  # VOC <part> boxes, kept with their object
        parts = Label.objects.filter(version=version).values_list("attributes", flat=True)
        assert sum(len(a.get("parts", [])) for a in parts) == expected["parts"]
    # Nothing adjusted without a word: every warning names its code and where.
    for problem in result.problems:
        assert problem["severity"] in ("warning", "info") and problem["code"] and problem["message"]


# CVAT and Label Studio are read, never written: their cases go round through COCO only.
ROUND_TRIPS = [
    pytest.param(case, target, id=f"{target}-{case['name']}")
    for target in ("coco", "same")
    for case in CASES
    if target == "coco" or case["format"] in EXPORTABLE
]


@pytest.mark.parametrize(("case", "target"), ROUND_TRIPS)
def test_a_real_export_survives_a_round_trip_through_our_exports(case, target, dataset, media, run, request):
    format = case["format"] if target == "same" else "coco"
    reason = ROUND_TRIP_NOT_YET.get((target, case["name"]))
    if case["name"] in NOT_YET and case["name"] not in ROUND_TRIP_DESPITE:
        reason = NOT_YET[case["name"]]
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    delivery, _ = _ingest(dataset, run, corpus.case_zip(case))
    v1 = delivery.version
    archive = io.BytesIO()
    # COCO holds annotators' candidates (``"is_final": false``) when the export is asked for them;
    # the other formats have no place for them and export the final labels.
    candidates = format == "coco"
    options = export_service.normalise_options(version=v1, format=format, options={"candidates": candidates})
    export_packaging.build_archive(version=v1, format=format, options=options, fileobj=archive)

    again, _ = _ingest(dataset, run, archive.getvalue(), format=format)

    before = _kinds_and_finality(v1, EXPORTABLE[format])
    if not candidates:
        before = Counter({(kind, final): n for (kind, final), n in before.items() if final})
    assert _kinds_and_finality(again.version, set(_kinds(again.version))) == before
    assert again.version.items.count() == v1.items.count()
    if "keypoints" in EXPORTABLE[format]:
        assert _visibility(again.version) == _visibility(v1)
    if format == "voc":  # <part> boxes and <actions> go back as VOC elements
        assert _parts_and_actions(again.version) == _parts_and_actions(v1)


# What the registry adjusted, said in the report with its severity (issue #17: "a report that says
# what was adjusted").
STATED = {
    "review_object_detection_metrics/voc_cvat": ("warning", "voc_zero_based_decimal"),
    "roboflow-python/chess_voc": ("warning", "voc_zero_based_integer"),
    "datumaro/voc_dataset2_no_size": ("warning", "size_from_image"),
    "roboflow-python/sharks_yolov9": ("warning", "mixed_rows"),
    "pylabel/bccd_yolo": ("warning", "missing_split"),
    "datumaro/cvat_video": ("info", "video_frames"),
    "mmpose/coco_wholebody": ("warning", "extra_fields"),
    "datumaro/coco_multi_task": ("warning", "merged_image"),
}


@pytest.mark.parametrize(("name", "stated"), sorted(STATED.items()))
def test_the_report_states_what_was_adjusted(name, stated, dataset, media, run):
    case = next(c for c in CASES if c["name"] == name)
    _, result = _ingest(dataset, run, corpus.case_zip(case))

    found = [(p["severity"], p["code"]) for p in result.problems]
    assert stated in found
    entry = next(p for p in result.problems if p["code"] == stated[1])
    assert entry["file"] and entry["message"] and len(entry["message"]) < 400


# Where datumaro reads the layout, it is a second independent reader of the same files.
DATUMARO_READS = {
    "review_object_detection_metrics/cvat_images": "cvat",
    "review_object_detection_metrics/voc_cvat": "voc",
    "review_object_detection_metrics/yolo_cvat": "yolo",
    "roboflow-python/chess_voc": "roboflow_voc",
    "datumaro/cvat_project": "cvat",
}


@pytest.mark.parametrize(("name", "dm_format"), sorted(DATUMARO_READS.items()))
def test_datumaro_counts_the_same_items_and_boxes_as_the_manifest(name, dm_format, tmp_path):
    import datumaro as dm
    from datumaro.components.annotation import AnnotationType

    case = next(c for c in CASES if c["name"] == name)
    for key, data in corpus.case_files(case).items():
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    imported = dm.Dataset.import_from(str(tmp_path), dm_format)
    boxes = sum(1 for item in imported for a in item.annotations if a.type == AnnotationType.bbox)

    expected = case["independent_counts"]
    assert boxes == expected["labels_by_kind"]["bbox"]
    if "items" in expected:
        assert len(imported) == expected["items"]
