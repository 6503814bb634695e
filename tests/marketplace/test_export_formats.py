"""Every demo dataset exported to every format, read back by readers we did not write.

pycocotools, datumaro and mlcroissant check the exports; a port of Ultralytics'
``verify_image_label`` checks the YOLO rows; the ingest service reads each export back
(the round trip). The demo catalogue is loaded once for the module inside a transaction that
is rolled back at the end, and each test runs in a savepoint inside it (pytest-django's ``db``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.core.files import File
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from marketplace.deliveries import service as deliveries
from marketplace.exports import packaging as export_packaging
from marketplace.exports import service as export_service
from marketplace.formats import model as fmt
from marketplace.formats.voc_writer import voc_box
from marketplace.models import Category, DatasetVersion, Label

pytestmark = pytest.mark.django_db

DATASETS = ["urban-street-scenes", "pedestrian-poses", "bridge-inspection"]
DEFAULT_YOLO_TASK = {
    "urban-street-scenes": "segment",
    "pedestrian-poses": "pose",
    "bridge-inspection": "detect",
}


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker, tmp_path_factory):
    """The demo catalogue, loaded once; everything this module writes is rolled back after it."""
    media = tmp_path_factory.mktemp("media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=str(media)), transaction.atomic():
        call_command("demo", stdout=io.StringIO())
        yield {"media": media, "built": {}, "root": tmp_path_factory.mktemp("exports")}
        transaction.set_rollback(True)


def latest(slug: str) -> DatasetVersion:
    return DatasetVersion.objects.filter(dataset__slug=slug, status="published").order_by("-number").first()


def build(demo, slug: str, format: str, **options) -> Path:
    """The export's archive, unpacked into a folder (built once per module and options)."""
    key = (slug, format, json.dumps(options, sort_keys=True))
    if key not in demo["built"]:
        version = latest(slug)
        opts = export_service.normalise_options(version=version, format=format, options=options)
        folder = demo["root"] / f"{slug}-{format}-{len(demo['built'])}"
        archive = folder.with_suffix(".zip")
        with open(archive, "wb") as fh:
            result = export_packaging.build_archive(version=version, format=format, options=opts, fileobj=fh)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder)
        demo["built"][key] = (folder, archive, result)
    return demo["built"][key][0]


def notes_of(demo, slug, format, **options) -> list[dict]:
    build(demo, slug, format, **options)
    return demo["built"][(slug, format, json.dumps(options, sort_keys=True))][2].notes


def final_labels(version) -> list[Label]:
    return list(
        Label.objects.filter(version=version, is_final=True).select_related(
            "item", "category", "annotator", "guideline_version"
        )
    )


def box_of(label_geometry: dict) -> list[float]:
    g = label_geometry
    if "bbox" in g:
        return [float(v) for v in g["bbox"]]
    if "rle" in g:
        coded = {"size": g["rle"]["size"], "counts": g["rle"]["counts"].encode()}
        return [float(v) for v in mask_utils.toBbox(coded)]
    x, y, w, h = fmt.bbox_of(g)
    return [x, y, max(w, 1.0), max(h, 1.0)]


def quiet_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


# --------------------------------------------------------------------------- COCO


@pytest.mark.parametrize("slug", DATASETS)
def test_pycocotools_loads_each_coco_export_without_losing_an_annotation(demo, slug):
    folder = build(demo, slug, "coco")
    version = latest(slug)
    files = sorted((folder / "annotations").glob("instances_*.json"))
    assert files
    total, ids = 0, []
    categories = {c.name: c for c in Category.objects.filter(schema__version=version)}
    for path in files:
        raw = json.loads(path.read_text())
        coco = quiet_coco(path)
        # No annotation lost to a duplicate id; every image file is where file_name says.
        assert len(coco.anns) == len(raw["annotations"])
        assert len(coco.imgs) == len(raw["images"])
        ids += [a["id"] for a in raw["annotations"]]
        split = path.stem.removeprefix("instances_")
        for image in raw["images"]:
            assert (folder / "images" / split / image["file_name"]).is_file()
        # Original category ids, keypoints and the 1-based skeleton, info and licenses filled.
        for cat in raw["categories"]:
            assert cat["id"] == categories[cat["name"]].source_id and cat["id"] >= 1
            if categories[cat["name"]].keypoint_names:
                assert cat["keypoints"] == categories[cat["name"]].keypoint_names
                assert cat["skeleton"] == categories[cat["name"]].skeleton
        assert raw["info"]["description"] == version.dataset.title and raw["info"]["version"] == str(
            version.number
        )
        assert raw["licenses"][0]["name"] and all(
            img["license"] == raw["licenses"][0]["id"] for img in raw["images"]
        )
        for ann in coco.anns.values():
            seg = ann["segmentation"]
            if isinstance(seg, dict):
                assert isinstance(seg["counts"], str)
            # Every annotation decodes to a mask: masks, polygons, and a box-only annotation's
            # rectangle (an empty or missing segmentation would crash annToMask).
            assert seg
            mask = coco.annToMask(ann)
            assert mask.shape == (
                coco.imgs[ann["image_id"]]["height"],
                coco.imgs[ann["image_id"]]["width"],
            )
            assert mask.any()
            if ann.get("segmentation_is_box"):
                x, y, w, h = ann["bbox"]
                assert seg == [[x, y, x + w, y, x + w, y + h, x, y + h]]
            if isinstance(seg, dict):
                assert ann["area"] == pytest.approx(float(mask_utils.area(coco.annToRLE(ann))))
            if "keypoints" in ann:
                assert ann["num_keypoints"] == sum(1 for v in ann["keypoints"][2::3] if v > 0)
                assert len(ann["bbox"]) == 4
            assert ann["bbox"][2] > 0 and ann["bbox"][3] > 0
        total += len(raw["annotations"])
    assert len(ids) == len(set(ids))
    held = [
        lab for lab in final_labels(version) if lab.geometry_type not in (fmt.CLASSIFICATION, fmt.CUBOID_3D)
    ]
    assert total == len(held)


@pytest.mark.parametrize("slug", DATASETS)
def test_cocoeval_of_each_coco_export_against_itself_gives_ap_1(demo, slug):
    folder = build(demo, slug, "coco")
    for path in sorted((folder / "annotations").glob("instances_*.json")):
        gt = quiet_coco(path)
        detections = [
            {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt.anns.values()
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0), path.name


@pytest.mark.parametrize("slug", DATASETS)
def test_datumaro_imports_each_coco_export_with_matching_counts_and_boxes(demo, slug):
    import datumaro as dm
    from datumaro.components.annotation import AnnotationType

    folder = build(demo, slug, "coco")
    ours = Counter()
    images = 0
    for path in (folder / "annotations").glob("instances_*.json"):
        raw = json.loads(path.read_text())
        images += len(raw["images"])
        names = {c["id"]: c["name"] for c in raw["categories"]}
        files = {i["id"]: Path(i["file_name"]).stem for i in raw["images"]}
        for a in raw["annotations"]:
            ours[(files[a["image_id"]], names[a["category_id"]], *(round(v, 2) for v in a["bbox"]))] += 1
    logging.disable(logging.WARNING)
    try:
        dataset = dm.Dataset.import_from(str(folder), "coco_instances")
    finally:
        logging.disable(logging.NOTSET)
    labels = dataset.categories()[AnnotationType.label]
    theirs = Counter(
        (item.id, labels[a.label].name, *(round(v, 2) for v in a.get_bbox()))
        for item in dataset
        for a in item.annotations
        if a.type == AnnotationType.bbox
    )
    assert len(dataset) == images
    assert theirs == ours


# --------------------------------------------------------------------------- Pascal VOC


@pytest.mark.parametrize("slug", DATASETS)
def test_datumaro_imports_each_voc_export_with_matching_counts_and_boxes(demo, slug):
    import datumaro as dm
    from datumaro.components.annotation import AnnotationType

    folder = build(demo, slug, "voc")
    version = latest(slug)
    labels = final_labels(version)
    expected = Counter()
    masks = classes = 0
    for lab in labels:
        stem = Path(lab.item.key).stem
        if lab.geometry_type == fmt.CLASSIFICATION:
            classes += 1
            continue
        if lab.geometry_type == fmt.CUBOID_3D:
            continue
        (xmin, ymin, xmax, ymax), _ = voc_box(box_of(lab.geometry), lab.item.width, lab.item.height)
        # VOC's 1-based inclusive corners, read back with the devkit's rule.
        expected[
            (
                stem,
                lab.category.name,
                float(xmin - 1),
                float(ymin - 1),
                float(xmax - xmin + 1),
                float(ymax - ymin + 1),
            )
        ] += 1
        masks += lab.geometry_type in (fmt.MASK, fmt.POLYGON)
    logging.disable(logging.WARNING)
    try:
        dataset = dm.Dataset.import_from(str(folder), "voc", coordinate_mode="voc-one-based")
    finally:
        logging.disable(logging.NOTSET)
    names = dataset.categories()[AnnotationType.label]
    found = Counter(a.type for item in dataset for a in item.annotations)
    boxes = Counter(
        (item.id, names[a.label].name, *(float(v) for v in a.get_bbox()))
        for item in dataset
        for a in item.annotations
        if a.type == AnnotationType.bbox
    )
    assert len(dataset) == version.items.count()
    assert boxes == expected
    assert found[AnnotationType.mask] == masks
    assert found[AnnotationType.label] == classes  # from ImageSets/Main/<class>_<split>.txt
    # And the boxes are the original ones within VOC's integer precision (half a pixel per edge).
    for lab in labels:
        if lab.geometry_type in (fmt.CLASSIFICATION, fmt.CUBOID_3D):
            continue
        x, y, w, h = box_of(lab.geometry)
        (xmin, ymin, xmax, ymax), clamped = voc_box([x, y, w, h], lab.item.width, lab.item.height)
        if not clamped:
            assert abs((xmin - 1) - x) <= 0.5 and abs(xmax - (x + w)) <= 0.5
            assert abs((ymin - 1) - y) <= 0.5 and abs(ymax - (y + h)) <= 0.5


# --------------------------------------------------------------------------- YOLO


def verify_image_label(text: str, nc: int, kpt_shape: list[int] | None) -> list[list[float]]:
    """The checks of Ultralytics' ultralytics/data/utils.py verify_image_label, as assertions.

    Returns the rows. Stricter in one place: rows must not repeat (Ultralytics drops repeats
    silently; our writer must not produce them).
    """
    rows = [line.split() for line in text.strip().splitlines() if len(line)]
    if not rows:
        return []
    if kpt_shape is None and any(len(r) > 6 for r in rows):  # a segment file
        assert all(len(r) >= 7 and len(r) % 2 == 1 for r in rows), "segment rows need a class and 3+ points"
        segments = [np.array(r[1:], dtype=np.float32).reshape(-1, 2) for r in rows]
        boxes = [
            [
                (s[:, 0].min() + s[:, 0].max()) / 2,
                (s[:, 1].min() + s[:, 1].max()) / 2,
                np.ptp(s[:, 0]),
                np.ptp(s[:, 1]),
            ]
            for s in segments
        ]
        lb = np.concatenate([np.array([[float(r[0])] for r in rows]), np.array(boxes)], 1)
        assert all(s.max() <= 1 and s.min() >= 0 for s in segments)
    else:
        lb = np.array(rows, dtype=np.float32)
    if kpt_shape is not None:
        nk, nd = kpt_shape
        assert lb.shape[1] == 5 + nk * nd, f"labels require {5 + nk * nd} columns each"
        points = lb[:, 5:].reshape(-1, nd)[:, :2]
    else:
        assert lb.shape[1] == 5, f"labels require 5 columns, {lb.shape[1]} columns detected"
        points = lb[:, 1:]
    assert points.max() <= 1, f"non-normalized or out of bounds coordinates {points[points > 1]}"
    assert lb.min() >= 0, f"negative label values {lb[lb < 0]}"
    assert lb[:, 0].max() < nc, "class index beyond names"
    assert len(np.unique(lb, axis=0)) == len(lb) or len({tuple(r) for r in rows}) == len(rows), (
        "duplicate rows"
    )
    assert all("e" not in v.lower() for r in rows for v in r), "exponent notation"
    return [[float(v) for v in r] for r in rows]


@pytest.mark.parametrize("slug", DATASETS)
def test_every_yolo_label_file_passes_ultralytics_checks(demo, slug):
    folder = build(demo, slug, "yolo")
    data = yaml.safe_load((folder / "data.yaml").read_text())
    assert "path" not in data  # folders resolve next to data.yaml
    names = data["names"]
    assert sorted(names) == list(range(len(names)))  # 0-based, contiguous
    kpt_shape = data.get("kpt_shape")
    task = DEFAULT_YOLO_TASK[slug]
    assert (kpt_shape is not None) == (task == "pose")
    if kpt_shape:
        category = Category.objects.get(schema__version=latest(slug), name="person")
        assert kpt_shape == [len(category.keypoint_names), 3]
        assert data["flip_idx"] == category.flip_idx
    images = sorted(p for p in (folder / "images").rglob("*") if p.is_file())
    assert len(images) == latest(slug).items.count()
    rows = 0
    for image in images:
        label = folder / "labels" / image.relative_to(folder / "images").with_suffix(".txt")
        assert label.is_file()  # every image has its label file, even an empty one
        parsed = verify_image_label(label.read_text(), len(names), kpt_shape)
        if task == "segment":
            assert all(len(r) >= 7 for r in parsed)  # never a box row among segments
        rows += len(parsed)
    assert rows > 0
    for split in ("train", "val"):
        assert (folder / data[split]).is_dir()


@pytest.mark.parametrize("slug", DATASETS)
def test_datumaro_imports_each_yolo_detect_export_with_matching_counts_and_boxes(demo, slug):
    import datumaro as dm
    from datumaro.components.annotation import AnnotationType

    folder = build(demo, slug, "yolo", yolo_task="detect")
    version = latest(slug)
    expected = defaultdict(list)
    for lab in final_labels(version):
        if lab.geometry_type in (fmt.CLASSIFICATION, fmt.CUBOID_3D):
            continue
        x, y, w, h = box_of(lab.geometry)
        x2, y2 = min(x + w, lab.item.width), min(y + h, lab.item.height)
        x, y = max(x, 0.0), max(y, 0.0)
        expected[(Path(lab.item.key).stem, lab.category.name)].append([x, y, x2 - x, y2 - y])
    logging.disable(logging.WARNING)
    try:
        dataset = dm.Dataset.import_from(str(folder), "yolo")
    finally:
        logging.disable(logging.NOTSET)
    names = dataset.categories()[AnnotationType.label]
    found = defaultdict(list)
    for item in dataset:
        for a in item.annotations:
            found[(item.id, names[a.label].name)].append(list(a.get_bbox()))
    assert len(dataset) == version.items.count()
    assert sorted(found) == sorted(expected)
    for key, boxes in expected.items():
        assert len(found[key]) == len(boxes), key
        for a, b in zip(sorted(boxes), sorted(found[key]), strict=True):
            # Six decimals of the image size: well under a hundredth of a pixel.
            assert max(abs(p - q) for p, q in zip(a, b, strict=True)) < 0.01, (key, a, b)


# --------------------------------------------------------------------------- round trip


def _labels_by_image(version, *, only_kinds=None) -> dict[str, list[Label]]:
    out = defaultdict(list)
    for lab in final_labels(version):
        if only_kinds is None or lab.geometry_type in only_kinds:
            out[lab.item.sha256].append(lab)
    return out


def _expected(format: str, task: str, lab: Label) -> list[tuple[str, list[float]]]:
    """(kind, box) of what the format holds of a label, as ingest reads it back."""
    kind = lab.geometry_type
    if kind == fmt.CLASSIFICATION and format == "coco":
        return [(kind, None)]  # in the image entry's classifications, read back
    if kind in (fmt.CLASSIFICATION, fmt.CUBOID_3D):
        return []
    box = box_of(lab.geometry)
    if format == "coco":
        # Polylines and 2D cuboids ride beside their box in our non-standard points/cuboid fields.
        kept = (fmt.BBOX, fmt.POLYGON, fmt.MASK, fmt.KEYPOINTS, fmt.POLYLINE, fmt.CUBOID_2D)
        return [(kind if kind in kept else fmt.BBOX, box)]
    if format == "voc":
        (xmin, ymin, xmax, ymax), _ = voc_box(box, lab.item.width, lab.item.height)
        out = [(fmt.BBOX, [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1])]
        if kind in (fmt.POLYGON, fmt.MASK):
            out.append((fmt.MASK, None))  # the instance PNG: its extent depends on what overlaps it
        return out
    if task == "segment" and "polygons" in lab.geometry:
        box = fmt.bbox_of(
            {"polygons": lab.geometry["polygons"]}
        )  # the polygon's own extent, not its box part
    return [({"segment": fmt.POLYGON, "pose": fmt.KEYPOINTS, "detect": fmt.BBOX}[task], box)]


def _provenance(lab: Label) -> tuple:
    return (
        lab.category.name,
        lab.annotator.pseudonym if lab.annotator else None,
        lab.guideline_version.tag if lab.guideline_version else None,
        lab.source,
        lab.model_name,
        lab.model_version,
        lab.made_at,
    )


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
@pytest.mark.parametrize("slug", DATASETS)
def test_ingesting_an_export_gives_back_the_same_labels(
    demo, slug, format, django_capture_on_commit_callbacks
):
    """Round trip: export, ingest the archive as a new version, compare label by label.

    Coordinates within the format's precision (COCO exact, YOLO 1e-6 of the image, VOC half a
    pixel per edge, traced mask outlines 1.5 px); attributes and provenance where the format
    or its provenance sidecar holds them; what the format cannot hold is in the notes instead.
    """
    version = latest(slug)
    task = DEFAULT_YOLO_TASK[slug]
    build(demo, slug, format)
    archive = demo["built"][(slug, format, json.dumps({}, sort_keys=True))][1]
    with open(archive, "rb") as fh, django_capture_on_commit_callbacks(execute=True):
        delivery = deliveries.create_delivery(
            dataset=version.dataset, archive=File(fh, name=archive.name), format=format
        )
        result = deliveries.ingest_delivery(delivery_id=delivery.pk)
    delivery.refresh_from_db()  # the image copy runs after the commit: read the final status
    assert delivery.status == "ingested", json.dumps(delivery.report)[:2000]
    back = DatasetVersion.objects.get(dataset=version.dataset, number=result.version_number)
    assert sorted(back.items.values_list("sha256", flat=True)) == sorted(
        version.items.values_list("sha256", flat=True)
    )
    before, after = _labels_by_image(version), _labels_by_image(back)
    tolerance = {"coco": 1e-9, "voc": 1e-9, "yolo": 1e-3}[format]
    for sha, labels in before.items():
        want = defaultdict(list)
        for lab in labels:
            for kind, box in _expected(format, task, lab):
                want[(lab.category.name, kind)].append(box)
        got = defaultdict(list)
        for lab in after.get(sha, []):
            no_box = (
                format == "voc" and lab.geometry_type == fmt.MASK
            ) or lab.geometry_type == fmt.CLASSIFICATION
            box = None if no_box else box_of(lab.geometry)
            got[(lab.category.name, lab.geometry_type)].append(box)
        assert sorted(got) == sorted(want), sha
        for key, boxes in want.items():
            assert len(got[key]) == len(boxes), key
            if boxes[0] is None:
                continue
            traced = format == "yolo" and any(
                lab.geometry_type == fmt.MASK and lab.category.name == key[0] for lab in labels
            )
            for a, b in zip(sorted(boxes), sorted(got[key]), strict=True):
                assert max(abs(p - q) for p, q in zip(a, b, strict=True)) <= (2.0 if traced else tolerance), (
                    key,
                    a,
                    b,
                )
    # Geometry beyond the box, attributes and provenance, where the format holds them.
    if format == "coco":
        native = (fmt.BBOX, fmt.POLYGON, fmt.MASK, fmt.KEYPOINTS)

        def exact(lab):
            return (
                lab.category.name,
                json.dumps(lab.geometry, sort_keys=True),
                json.dumps(lab.attributes, sort_keys=True),
            )

        for sha, labels in before.items():
            missing = Counter(exact(lab) for lab in labels if lab.geometry_type in native) - Counter(
                exact(lab) for lab in after[sha]
            )
            assert not missing, missing
    if format == "yolo" and task == "pose":
        for sha, labels in before.items():
            a = sorted(lab.geometry["keypoints"] for lab in labels)
            b = sorted(lab.geometry["keypoints"] for lab in after[sha])
            for ka, kb in zip(a, b, strict=True):
                assert all(abs(p - q) <= tolerance for p, q in zip(ka, kb, strict=True))
    primary = {"coco": None, "voc": {fmt.BBOX}, "yolo": None}[format]
    for sha, labels in before.items():
        held = Counter(_provenance(lab) for lab in labels if _expected(format, task, lab))
        returned = Counter(
            _provenance(lab) for lab in after[sha] if primary is None or lab.geometry_type in primary
        )
        assert returned == held, sha


# --------------------------------------------------------------------------- archive, notes, Croissant


def test_the_archive_carries_documents_provenance_and_a_manifest_of_every_file(demo):
    folder = build(demo, "urban-street-scenes", "coco")
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    manifest = dict(
        reversed(line.split("  ", 1)) for line in (folder / "MANIFEST.sha256").read_text().splitlines()
    )
    assert sorted(manifest) == [n for n in names if n != "MANIFEST.sha256"]
    for name, sha in manifest.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, name
    sheet = (folder / "datasheet.md").read_text()
    assert "## Uses" in sheet and "Only daytime and dry weather" in sheet
    assert "CC-BY-4.0" in (folder / "LICENSE.txt").read_text()
    rows = list((folder / "provenance.csv").read_text().splitlines())
    assert rows[0].split(",")[:3] == ["label_uid", "item", "category"]
    version = latest("urban-street-scenes")
    assert len(rows) - 1 == Label.objects.filter(version=version, is_final=True).count()
    lane = next(r for r in rows if ",lane_marking," in r)
    assert "model,lane-prelabel,0.9.3" in lane


def test_building_the_same_export_twice_gives_the_same_bytes(demo, tmp_path):
    version = latest("bridge-inspection")
    digests = []
    for n in range(2):
        path = tmp_path / f"{n}.zip"
        with open(path, "wb") as fh:
            export_packaging.build_archive(
                version=version, format="voc", options={"include_images": False}, fileobj=fh
            )
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_what_a_format_cannot_hold_is_counted_in_the_notes(demo):
    version = latest("bridge-inspection")
    count = Counter(
        Label.objects.filter(version=version, is_final=True).values_list("geometry_type", flat=True)
    )

    def note(notes, code, kind):
        return sum(n["count"] for n in notes if n["code"] == code and n.get("kind") == kind)

    coco = notes_of(demo, "bridge-inspection", "coco")
    assert note(coco, "dropped", fmt.CUBOID_3D) == count[fmt.CUBOID_3D]
    assert note(coco, "converted", fmt.CLASSIFICATION) == count[fmt.CLASSIFICATION]
    assert note(coco, "converted", fmt.POLYLINE) == count[fmt.POLYLINE]
    yolo = notes_of(demo, "bridge-inspection", "yolo")
    assert note(yolo, "dropped", fmt.CLASSIFICATION) == count[fmt.CLASSIFICATION]
    assert note(yolo, "dropped", fmt.CUBOID_3D) == count[fmt.CUBOID_3D]
    assert any(n["code"] == "info" and "0=crack (id 1)" in n["detail"] for n in yolo)
    voc = notes_of(demo, "bridge-inspection", "voc")
    assert note(voc, "converted", fmt.CUBOID_2D) == count[fmt.CUBOID_2D]
    # Every label is accounted for: written as itself, converted, or dropped with a note.
    streets = notes_of(demo, "urban-street-scenes", "yolo")
    assert (
        note(streets, "converted", fmt.MASK)
        == Label.objects.filter(
            version=latest("urban-street-scenes"), is_final=True, geometry_type=fmt.MASK
        ).count()
    )


def test_options_choose_splits_categories_candidates_and_images(demo):
    people = latest("pedestrian-poses")
    all_labels = Label.objects.filter(version=people)
    folder = build(demo, "pedestrian-poses", "coco", candidates=True, splits=["val"], include_images=False)
    assert not (folder / "images").exists()
    assert [p.name for p in (folder / "annotations").iterdir()] == ["instances_val.json"]
    anns = json.loads((folder / "annotations" / "instances_val.json").read_text())["annotations"]
    val = all_labels.filter(item__split="val")
    assert len(anns) == val.count() > val.filter(is_final=True).count()
    assert sum(1 for a in anns if a.get("is_final") is False) == val.filter(is_final=False).count()
    streets = build(demo, "urban-street-scenes", "yolo", categories=["car", "road"])
    data = yaml.safe_load((streets / "data.yaml").read_text())
    assert data["names"] == {0: "car", 1: "road"}


def test_mlcroissant_validates_the_croissant_of_an_export_and_of_the_api(demo, client):
    import mlcroissant as mlc

    folder = build(demo, "urban-street-scenes", "coco")
    in_archive = json.loads((folder / "croissant.json").read_text())
    served = client.get("/api/v1/datasets/pedestrian-poses/versions/1/croissant/")
    assert served.status_code == 200 and served["Content-Type"] == "application/ld+json"
    for doc in (in_archive, served.json()):
        dataset = mlc.Dataset(jsonld=doc)  # raises on any validation error; offline
        assert not dataset.metadata.ctx.issues.errors
    files = {d["name"]: d for d in in_archive["distribution"] if d["@type"] == "cr:FileObject"}
    sha = hashlib.sha256((folder / "annotations" / "instances_train.json").read_bytes()).hexdigest()
    assert files["annotations/instances_train.json"]["sha256"] == sha
    # The datasheet's own words first, then the measured gaps (tests/governance/test_croissant_rai.py).
    assert in_archive["rai:dataBiases"][0] == "Only daytime and dry weather; four Western European countries."
    assert [t.split(":")[0] for t in in_archive["rai:machineAnnotationTools"]] == ["lane-prelabel 0.9.3"]
    assert any(s.startswith("Final labels by source: ") for s in in_archive["rai:dataAnnotationAnalysis"])
    assert "rai:annotatorDemographics" not in in_archive  # nobody declared any
    people = served.json()
    assert "3 annotators on 20 images" in people["rai:annotationsPerItem"]  # measured, by governance
    assert "age_band" in people["rai:personalSensitiveInformation"]


def test_the_export_command_writes_a_coco_archive(demo, tmp_path):
    out = tmp_path / "streets.zip"
    call_command(
        "export",
        "urban-street-scenes",
        "2",
        "--format",
        "coco",
        "--out",
        str(out),
        "--no-images",
        stdout=io.StringIO(),
    )
    with zipfile.ZipFile(out) as zf:
        raw = json.loads(zf.read("annotations/instances_train.json"))
        assert not any(n.startswith("images/") for n in zf.namelist())
    assert raw["annotations"] and all(math.isfinite(v) for a in raw["annotations"] for v in a["bbox"])


def test_annotator_demographics_appear_only_when_declared_and_only_in_aggregate(demo, client):
    from governance.models import Annotator

    url = "/api/v1/datasets/pedestrian-poses/versions/1/croissant/"
    assert "rai:annotatorDemographics" not in client.get(url).json()
    declared = {
        "A-21": {"gender": "female", "age": "30-39"},
        "A-22": {"gender": "female"},
        "A-23": {"gender": "male"},
    }
    for pseudonym, demographics in declared.items():
        Annotator.objects.filter(pseudonym=pseudonym).update(demographics=demographics)
    doc = client.get(url).json()
    # Three annotators declared a gender: counts, the single "male" folded into "other"; one
    # declared an age, too few to show at all. No pseudonym appears.
    assert doc["rai:annotatorDemographics"] == ["gender: female 2, other 1 (3 of 3 annotators declared)"]
    assert not any(p in json.dumps(doc) for p in declared)


# --------------------------------------------------------------------------- NOTES.md, empty versions


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_notes_md_in_the_archive_says_what_the_notes_say(demo, format):
    folder = build(demo, "bridge-inspection", format)
    notes = notes_of(demo, "bridge-inspection", format)
    text = (folder / "NOTES.md").read_text()
    assert text.startswith("# Notes on this export: ")
    assert "NOTES.md" in (folder / "MANIFEST.sha256").read_text()
    lossy = [n for n in notes if n["code"] != "info"]
    assert lossy  # the bridge dataset has cuboids and classifications no format holds whole
    for n in notes:
        assert n["detail"] in text
        if n["code"] != "info":
            line = next(
                line
                for line in text.splitlines()
                if n["detail"] in line
                and n["kind"].replace("_", " ") in line
                and (not n.get("category") or f"class {n['category']!r}" in line)
            )
            assert f"{n['count']} label" in line
    assert "Nothing was dropped" not in text


def test_an_empty_version_exports_an_empty_coco_file(demo, tmp_path):
    from tests import factories as f

    dataset = latest("bridge-inspection").dataset
    empty = f.VersionFactory(dataset=dataset, number=99)
    f.SchemaFactory(version=empty)
    opts = export_service.normalise_options(version=empty, format="coco", options={})
    archive = tmp_path / "empty.zip"
    with open(archive, "wb") as fh:
        export_packaging.build_archive(version=empty, format="coco", options=opts, fileobj=fh)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "empty")
    (path,) = (tmp_path / "empty" / "annotations").glob("instances_*.json")
    raw = json.loads(path.read_text())
    assert raw["images"] == [] and raw["annotations"] == []
    coco = quiet_coco(path)  # pycocotools opens it
    assert coco.getImgIds() == [] and coco.getAnnIds() == []
    assert "Nothing was dropped" in (tmp_path / "empty" / "NOTES.md").read_text()
