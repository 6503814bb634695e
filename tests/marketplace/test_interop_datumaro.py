"""Deliveries written by datumaro's exporters ingest with what datumaro itself reads back from them.

Each test builds a small dataset in datumaro (images as numpy arrays), exports it with one of its
exporters, zips the folder, ingests the zip, and compares images, categories, counts and
coordinates with ``Dataset.import_from`` on the same folder: an independent reader, not ours.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from marketplace.formats import model as fmt
from marketplace.models import Delivery

from . import ingest_support as support
from .ingest_support import make_delivery

dm = pytest.importorskip("datumaro")
from datumaro.components.annotation import AnnotationType, LabelCategories, PointsCategories  # noqa: E402

pytestmark = pytest.mark.django_db

media, run = support.media, support.run  # fixtures

W, H = 64, 48
KEYPOINTS = ["nose", "left_eye", "right_eye"]


def _image(seed: int):
    rng = np.random.default_rng(seed)
    return dm.Image.from_numpy(data=rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def _mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[10:20, 30:50] = 1
    mask[30:33, 5:9] = 1
    return mask


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def _export(dataset, tmp_path: Path, format: str, **options) -> tuple[Path, bytes]:
    folder = tmp_path / format
    dataset.export(str(folder), format, save_media=True, **options)
    return folder, _zip_folder(folder)


def _ingest(db_dataset, run, data: bytes):
    delivery = make_delivery(db_dataset, data)
    result = run(delivery)
    assert result.ok, result.problems
    assert delivery.status == Delivery.Status.INGESTED
    return delivery.version


def _stem(key: str) -> str:
    return posixpath.splitext(posixpath.basename(key))[0]


def _theirs(folder: Path, format: str):
    """What datumaro reads back from the export: {item id: [(label name, annotation)]}, names."""
    imported = dm.Dataset.import_from(str(folder), format)
    names = [c.name for c in imported.categories()[AnnotationType.label]]
    items = {}
    for item in imported:
        items[_stem(item.id)] = [(names[a.label], a) for a in item.annotations if a.label is not None]
    return items, names


def _ours(version):
    items = {}
    for item in version.items.all():
        items[_stem(item.key)] = list(version.labels.filter(item=item).select_related("category"))
    return items


def _close(a, b, tol=1e-3) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b, strict=True))


def _street_scenes(subsets=("train", "val")):
    """Two classes, boxes, polygons and a mask, over two subsets."""
    items = [
        dm.DatasetItem(
            id="a",
            subset=subsets[0],
            media=_image(1),
            annotations=[
                dm.Bbox(1, 2, 10, 8, label=0, id=1),
                dm.Polygon([5, 5, 20, 5, 20, 30, 5, 30], label=1, id=2),
                dm.Mask(_mask(), label=0, id=3),
            ],
        ),
        dm.DatasetItem(
            id="b",
            subset=subsets[-1],
            media=_image(2),
            annotations=[dm.Bbox(3.5, 4.25, 20, 10, label=1, id=4), dm.Bbox(40, 30, 23, 17, label=0, id=5)],
        ),
    ]
    return dm.Dataset.from_iterable(items, categories=["car", "person"])


def _boxes_only(subsets=("train", "val")):
    items = [
        dm.DatasetItem(
            id="a", subset=subsets[0], media=_image(1), annotations=[dm.Bbox(1, 2, 10, 8, label=0)]
        ),
        dm.DatasetItem(
            id="b",
            subset=subsets[-1],
            media=_image(2),
            annotations=[dm.Bbox(3, 4, 20, 10, label=1), dm.Bbox(40, 30, 23, 17, label=0)],
        ),
    ]
    return dm.Dataset.from_iterable(items, categories=["car", "person"])


def test_coco_instances(dataset, media, run, tmp_path):
    folder, data = _export(_street_scenes(), tmp_path, "coco_instances")
    version = _ingest(dataset, run, data)
    theirs, names = _theirs(folder, "coco_instances")
    ours = _ours(version)

    assert set(ours) == set(theirs) == {"a", "b"}
    assert sorted(version.schema.categories.values_list("source_id", "name")) == [(1, "car"), (2, "person")]
    assert sorted(names) == ["car", "person"]
    assert dict(version.items.values_list("key", "split")) == {
        "images/train/a.jpg": "train",
        "images/val/b.jpg": "val",
    }
    for key, anns in theirs.items():
        # datumaro splits one COCO annotation into a group (its bbox, and its polygon or mask);
        # we keep one label per annotation with every part: compare group by group.
        groups: dict[int, list] = {}
        for name, ann in anns:
            groups.setdefault(ann.group, []).append((name, ann))
        assert len(groups) == len(ours[key])
        for group in groups.values():
            name = group[0][0]
            parts = {ann.type: ann for _, ann in group}
            candidates = [
                lab
                for lab in ours[key]
                if lab.category.name == name
                and _close(lab.geometry["bbox"], parts[AnnotationType.bbox].get_bbox())
            ]
            assert len(candidates) == 1, (key, group)
            label = candidates[0]
            if AnnotationType.polygon in parts:
                assert label.geometry_type == fmt.POLYGON
                assert _close(label.geometry["polygons"][0], parts[AnnotationType.polygon].points)
            elif AnnotationType.mask in parts:
                assert label.geometry_type == fmt.MASK and label.iscrowd
                rle = label.geometry["rle"]
                decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
                assert np.array_equal(decoded.astype(bool), parts[AnnotationType.mask].image.astype(bool))
            else:
                assert label.geometry_type == fmt.BBOX


def test_coco_person_keypoints(dataset, media, run, tmp_path):
    categories = {
        AnnotationType.label: LabelCategories.from_iterable(["person"]),
        AnnotationType.points: PointsCategories.from_iterable(
            [(0, KEYPOINTS, {(1, 2), (1, 3)})]
        ),  # COCO's 1-based pairs,
    }
    items = [
        dm.DatasetItem(
            id="p",
            subset="train",
            media=_image(3),
            annotations=[
                dm.Points([30, 10, 27, 8, 0, 0], visibility=[2, 1, 0], label=0, group=1, id=1),
                dm.Bbox(20, 5, 20, 30, label=0, group=1, id=1),
            ],
        )
    ]
    folder, data = _export(
        dm.Dataset.from_iterable(items, categories=categories), tmp_path, "coco_person_keypoints"
    )
    version = _ingest(dataset, run, data)
    theirs, _ = _theirs(folder, "coco_person_keypoints")

    person = version.schema.categories.get(name="person")
    assert person.keypoint_names == KEYPOINTS
    assert sorted(map(sorted, person.skeleton)) == [[1, 2], [1, 3]]  # 1-based, as COCO writes it
    (label,) = version.labels.all()
    assert label.geometry_type == fmt.KEYPOINTS
    points = next(a for _, a in theirs["p"] if a.type == AnnotationType.points)
    box = next(a for _, a in theirs["p"] if a.type == AnnotationType.bbox)
    kp = label.geometry["keypoints"]
    assert _close(kp[0::3], points.points[0::2]) and _close(kp[1::3], points.points[1::2])
    assert kp[2::3] == [int(v) for v in points.visibility]
    assert _close(label.geometry["bbox"], box.get_bbox())  # one source annotation keeps its box


def test_pascal_voc_boxes_written_by_datumaro_are_read_as_datumaro_means_them(dataset, media, run, tmp_path):
    folder, data = _export(_boxes_only(), tmp_path, "voc")
    version = _ingest(dataset, run, data)
    theirs, _ = _theirs(folder, "voc")
    ours = _ours(version)

    assert set(ours) == set(theirs) == {"a", "b"}
    assert set(version.schema.categories.values_list("name", flat=True)) == {"car", "person"}
    for key, anns in theirs.items():
        boxes = [(n, a.get_bbox()) for n, a in anns if a.type == AnnotationType.bbox]
        assert len(boxes) == len(ours[key])
        for name, (x, y, w, h) in boxes:
            # datumaro writes and reads VOC corners as 0-based decimals ("1.0"); we detect that
            # convention per file (issue #17) and read them as datumaro means them.
            assert any(
                lab.category.name == name and _close(lab.geometry["bbox"], [x, y, w, h]) for lab in ours[key]
            ), (key, name, ours[key])
    assert dict(version.items.values_list("key", "split")) == {
        "JPEGImages/a.jpg": "train",
        "JPEGImages/b.jpg": "val",
    }


def test_yolo(dataset, media, run, tmp_path):
    folder, data = _export(_boxes_only(), tmp_path, "yolo")
    version = _ingest(dataset, run, data)
    theirs, names = _theirs(folder, "yolo")
    ours = _ours(version)

    assert set(ours) == set(theirs) == {"a", "b"}
    assert sorted(version.schema.categories.values_list("source_id", "name")) == [(0, "car"), (1, "person")]
    for key, anns in theirs.items():
        assert len(anns) == len(ours[key])
        for name, ann in anns:
            # Both read the same normalised numbers written with six decimals: compare to 1e-3 px.
            assert any(
                lab.category.name == name and _close(lab.geometry["bbox"], ann.get_bbox())
                for lab in ours[key]
            )
    assert {i.split for i in version.items.all()} == {"train", "val"}


def test_cvat_for_images(dataset, media, run, tmp_path):
    # datumaro writes one XML per subset; a CVAT task export (what suppliers upload) is one file.
    folder, data = _export(_street_scenes(subsets=("default",)), tmp_path, "cvat")
    version = _ingest(dataset, run, data)
    theirs, _ = _theirs(folder, "cvat")
    ours = _ours(version)

    assert set(ours) == set(theirs) == {"a", "b"}
    assert Counter(lab.geometry_type for ls in ours.values() for lab in ls) == Counter(
        {fmt.BBOX: 3, fmt.POLYGON: 1, fmt.MASK: 1}
    )
    for key, anns in theirs.items():
        labels = ours[key]
        assert len(anns) == len(labels)
        for name, ann in anns:
            if ann.type == AnnotationType.bbox:
                assert any(
                    lab.category.name == name and _close(lab.geometry.get("bbox", []), ann.get_bbox(), 0.01)
                    for lab in labels
                )
            elif ann.type == AnnotationType.polygon:
                assert any(_close(lab.geometry.get("polygons", [[]])[0], ann.points, 0.01) for lab in labels)
            elif ann.type == AnnotationType.mask:
                (mask_label,) = [lab for lab in labels if lab.geometry_type == fmt.MASK]
                rle = mask_label.geometry["rle"]
                decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
                assert np.array_equal(decoded.astype(bool), ann.image.astype(bool))
    assert all(lab.source == fmt.HUMAN for ls in ours.values() for lab in ls)
