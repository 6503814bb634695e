"""verify_offline.py --archive checks the labels of the COCO files against the published labels (#16).

The manifest can be rewritten along with what it lists; the content files cannot (their digests are
in the signed event). So a box moved, a label dropped or added, or a class swapped in
``annotations/*.json`` fails even with a consistent manifest, while honest exports (subsets by split
and class, candidates included, the JSON laid out differently) verify.
"""

import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from marketplace.catalogue import publication
from marketplace.exports import packaging, service
from marketplace.formats import model as fmt
from tests import factories as f
from tests.conftest import build_version

from . import test_verify_archive
from .test_verify_archive import load_verifier, rewrite, run_verifier

key_file = test_verify_archive.key_file  # the fixture

pytestmark = pytest.mark.django_db


def _rle(height=40, width=60):
    grid = np.zeros((height, width), dtype=np.uint8, order="F")
    grid[5:25, 10:40] = 1
    coded = mask_utils.encode(grid)
    return {"size": [height, width], "counts": coded["counts"].decode("ascii")}


@pytest.fixture
def rich_version(dataset):
    """Boxes, keypoints (from build_version; item 0 is in val, the others in train), plus a polygon,
    a polyline, a mask, a classification and a candidate label in train."""
    version = build_version(dataset, number=1, items=3, publish=False)
    car = version.schema.categories.get(name="car")
    car.geometry_types = [fmt.BBOX, fmt.POLYGON, fmt.POLYLINE, fmt.MASK, fmt.CLASSIFICATION]
    car.save()
    items = list(version.items.order_by("key"))
    f.LabelFactory(
        item=items[1],
        category=car,
        geometry_type=fmt.POLYGON,
        geometry={"polygons": [[1.5, 2.25, 30.0, 2.25, 30.0, 40.125, 1.5, 40.125]]},
    )
    f.LabelFactory(
        item=items[1], category=car, geometry_type=fmt.POLYLINE, geometry={"points": [3.0, 4.0, 9.0, 4.0]}
    )
    f.LabelFactory(item=items[1], category=car, geometry_type=fmt.MASK, geometry={"rle": _rle()})
    f.LabelFactory(item=items[2], category=car, geometry_type=fmt.CLASSIFICATION, geometry={})
    f.LabelFactory(item=items[2], category=car, geometry={"bbox": [5.0, 5.0, 20.0, 20.0]}, is_final=False)
    publication.publish_version(version=version)
    version.refresh_from_db()
    return version


def export(version, tmp_path, name="export.zip", **options):
    options = service.normalise_options(
        version=version, format="coco", options={"include_images": False, **options}
    )
    path = tmp_path / name
    with open(path, "wb") as fh:
        packaging.build_archive(version=version, format="coco", options=options, fileobj=fh)
    return path


def change_annotations(change):
    """``change(document) -> None`` applied to every COCO file, written back as JSON."""

    def apply(name, data):
        if not (name.startswith("annotations/") and name.endswith(".json")):
            return data
        document = json.loads(data)
        change(name, document)
        return json.dumps(document).encode()

    return apply


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"candidates": True},
        {"splits": ["train"]},
        {"categories": ["person"]},
        {"splits": ["val"], "candidates": True},
    ],
    ids=["all", "candidates", "train-only", "person-only", "val-with-candidates"],
)
def test_honest_exports_verify(rich_version, tmp_path, key_file, options):
    code, out = run_verifier(export(rich_version, tmp_path, **options), key_file)
    assert code == 0, out


def test_a_coco_file_laid_out_differently_still_verifies(rich_version, tmp_path, key_file):
    def relayout(name, data):
        if name.startswith("annotations/") and name.endswith(".json"):
            return json.dumps(json.loads(data), indent=3).encode()
        return data

    altered = rewrite(export(rich_version, tmp_path), relayout, fix_manifest=True)
    code, out = run_verifier(altered, key_file)
    assert code == 0, out


def _first_box(document):
    return next(a for a in document["annotations"] if a.get("segmentation_is_box") and "keypoints" not in a)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: _first_box(d)["bbox"].__setitem__(0, _first_box(d)["bbox"][0] + 3), "box differs"),
        (lambda d: d["annotations"].pop(), "is missing from the export"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0], id=999)), "appears twice"),
        (lambda d: d["annotations"][0].pop("uid"), "has no uid"),
        (
            lambda d: d["annotations"][0].__setitem__("uid", "00000000-0000-0000-0000-000000000000"),
            "is not a published label",
        ),
        (
            lambda d: d["annotations"][0].__setitem__(
                "category_id", 2 if d["annotations"][0]["category_id"] == 1 else 1
            ),
            "published 'car'",
        ),
        (
            lambda d: next(a for a in d["annotations"] if "keypoints" in a)["keypoints"].__setitem__(0, 0.0),
            "keypoints differs",
        ),
        (
            lambda d: next(
                a for a in d["annotations"] if isinstance(a["segmentation"], list) and a["segmentation"]
            )["segmentation"][0].__setitem__(1, 9.0),
            "polygons differs",
        ),
        (
            lambda d: next(a for a in d["annotations"] if isinstance(a["segmentation"], dict))[
                "segmentation"
            ].__setitem__("counts", "0"),
            "mask differs",
        ),
        (lambda d: d["annotations"][0].__setitem__("iscrowd", 1), "crowd flag differs"),
    ],
    ids=["box", "dropped", "added", "no-uid", "foreign", "class", "keypoints", "polygon", "mask", "crowd"],
)
def test_an_altered_coco_label_fails_with_a_rewritten_manifest(
    rich_version, tmp_path, key_file, change, expected
):
    archive = export(rich_version, tmp_path)
    changed = []

    def on_train(name, document):
        if name.endswith("instances_train.json"):
            change(document)
            changed.append(name)

    altered = rewrite(archive, change_annotations(on_train), fix_manifest=True)
    assert changed
    code, out = run_verifier(altered, key_file)
    assert code == 1, out
    assert expected in out, out
    # The manifest and the content verified: the format file alone is what failed.
    assert "manifest" not in out and "content hash" not in out


def test_a_selection_rewritten_to_hide_a_dropped_label_still_names_the_class(
    rich_version, tmp_path, key_file
):
    """Claiming a narrower selection explains a missing class only if that class is wholly absent."""
    archive = export(rich_version, tmp_path)

    def drop_one_car_and_claim_person_only(name, data):
        if name == "evidence/export.json":
            selection = json.loads(data)
            selection["categories"] = ["person"]
            return json.dumps(selection).encode()
        return change_annotations(lambda n, d: d["annotations"].pop(0))(name, data)

    code, out = run_verifier(
        rewrite(archive, drop_one_car_and_claim_person_only, fix_manifest=True), key_file
    )
    assert code == 1, out


def test_the_stream_reader_handles_any_chunking():
    verifier = load_verifier()
    document = {
        "info": {"description": "ünïcode ✓"},
        "categories": [{"id": 1, "name": "car"}],
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(5)],
        "annotations": [{"id": i, "bbox": [i, 2.5, 1e3, 12345678901234567890]} for i in range(7)],
        "empty": [],
        "n": 12345,
    }
    text = json.dumps(document, ensure_ascii=False).encode()

    class Trickle(io.BytesIO):
        def read(self, size=-1):
            return super().read(3)  # splits UTF-8 sequences and numbers across reads

    members = list(verifier._JsonStream(Trickle(text)).object_members(("images", "annotations")))
    assert [k for k, _ in members].count("annotations") == 7
    assert [v for k, v in members if k == "annotations"] == document["annotations"]
    assert {k: v for k, v in members if k not in ("images", "annotations")} == {
        "info": document["info"],
        "categories": document["categories"],
        "empty": [],
        "n": 12345,
    }
    with pytest.raises(ValueError):
        list(verifier._JsonStream(io.BytesIO(b'{"annotations": [{"id": 1}')).object_members(("annotations",)))


def export_as(version, tmp_path, format):
    options = service.normalise_options(version=version, format=format, options={"include_images": False})
    path = tmp_path / f"{format}.zip"
    with open(path, "wb") as fh:
        packaging.build_archive(version=version, format=format, options=options, fileobj=fh)
    return path


@pytest.mark.parametrize("format", ["voc", "yolo"])
def test_voc_and_yolo_exports_verify(rich_version, tmp_path, key_file, format):
    code, out = run_verifier(export_as(rich_version, tmp_path, format), key_file)
    assert code == 0, out


@pytest.mark.parametrize(
    ("format", "target"),
    [("voc", "Annotations/"), ("voc", "labelmap.txt"), ("yolo", "data.yaml")],
    ids=["voc-object", "voc-labelmap", "yolo-names"],
)
def test_a_class_renamed_in_voc_or_yolo_fails_with_a_rewritten_manifest(
    rich_version, tmp_path, key_file, format, target
):
    def rename(name, data):
        if not name.startswith(target):
            return data
        if name.endswith(".xml"):
            return data.replace(b"<name>car</name>", b"<name>vehicle</name>")
        return data.replace(b"car", b"vehicle")

    code, out = run_verifier(
        rewrite(export_as(rich_version, tmp_path, format), rename, fix_manifest=True), key_file
    )
    assert code == 1, out
    assert "'vehicle' is not a published class" in out


def test_a_yolo_row_with_an_unknown_class_index_fails(rich_version, tmp_path, key_file):
    def bump(name, data):
        if name.startswith("labels/") and name.endswith(".txt") and data:
            return b"7" + data[1:]
        return data

    code, out = run_verifier(
        rewrite(export_as(rich_version, tmp_path, "yolo"), bump, fix_manifest=True), key_file
    )
    assert code == 1 and "class index not in data.yaml" in out, out


def _change_provenance(change):
    """``change(rows) -> None`` on provenance.csv's rows (header first), written back as CSV."""
    import csv

    def apply(name, data):
        if name != "provenance.csv":
            return data
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        change(rows)
        out = io.StringIO(newline="")
        csv.writer(out).writerows(rows)
        return out.getvalue().encode("utf-8")

    return apply


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_provenance_rewritten_in_the_archive_fails_with_a_rewritten_manifest(
    rich_version, tmp_path, key_file, format
):
    archive = (
        export(rich_version, tmp_path) if format == "coco" else export_as(rich_version, tmp_path, format)
    )
    assert run_verifier(archive, key_file)[0] == 0

    def another_annotator(rows):
        column = rows[0].index("annotator")
        rows[1][column] = "someone-else"

    code, out = run_verifier(
        rewrite(archive, _change_provenance(another_annotator), fix_manifest=True), key_file
    )
    assert code == 1 and "provenance.csv line 2: annotator of label" in out, out
    assert "manifest" not in out and "content hash" not in out

    def a_later_time(rows):
        column = rows[0].index("made_at")
        rows[2][column] = "2031-01-01T00:00:00+00:00"

    code, out = run_verifier(rewrite(archive, _change_provenance(a_later_time), fix_manifest=True), key_file)
    assert code == 1 and "provenance.csv line 3: made_at of label" in out, out


def test_provenance_times_in_another_offset_are_the_same_time():
    verifier = load_verifier()
    assert verifier._moment("2024-05-01T12:00:00+02:00") == verifier._moment(
        "2024-05-01T10:00:00.000000+00:00"
    )
    assert verifier._moment("2024-05-01T12:00:00+02:00") != verifier._moment("2024-05-01T12:00:00+00:00")
    assert verifier._moment("") == verifier._moment(None) == ""
