"""Writing COCO: original category ids, unique ids, string RLE, notes, provenance our reader reads."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from marketplace.formats import model
from marketplace.formats.archive import DirectorySource
from marketplace.formats.coco import read_coco
from marketplace.formats.coco_writer import coco_category_ids, write_coco
from marketplace.formats.model import CategoryDef, ItemRecord, LabelRecord, Provenance
from marketplace.formats.writing import DirectorySink, Notes

from .builders import image_bytes

CATS = [
    CategoryDef("car", source_id=3),
    CategoryDef("person", source_id=7, keypoints=["head", "foot"], skeleton=[[1, 2]]),
]


def rle_of(width: int, height: int) -> dict:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[2:6, 3:9] = 1
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}


def records():
    """A generator, as the service passes them: two splits, the same file name in each."""
    for split in ("train", "val"):
        item = ItemRecord(key=f"images/{split}/a.jpg", width=20, height=10, split=split)
        yield (
            item,
            [
                LabelRecord(
                    item.key, "car", model.BBOX, {"bbox": [1.0, 2.0, 5.0, 4.0]}, attributes={"occluded": True}
                ),
                LabelRecord(item.key, "car", model.MASK, {"rle": rle_of(20, 10)}, iscrowd=True),
                LabelRecord(
                    item.key,
                    "person",
                    model.KEYPOINTS,
                    {"keypoints": [4, 2, 2, 0, 0, 0], "bbox": [3.0, 1.0, 4.0, 8.0]},
                ),
            ],
        )


def write(tmp_path, recs, categories=CATS, **kwargs):
    notes = Notes()
    summary = write_coco(DirectorySink(tmp_path), recs, categories=categories, notes=notes, **kwargs)
    return summary, notes


def test_category_ids_are_the_originals_and_a_missing_one_never_becomes_0():
    cats = [
        CategoryDef("a", source_id=5),
        CategoryDef("b"),
        CategoryDef("c", source_id=0),
        CategoryDef("d", source_id=2),
    ]
    notes = Notes()
    assert coco_category_ids(cats, notes) == {"a": 5, "b": 6, "c": 7, "d": 2}
    assert len(notes.as_list()) == 2


def test_a_generator_of_records_becomes_one_file_per_split_with_unique_ids(tmp_path):
    summary, _ = write(tmp_path, records())
    assert summary.files == ["annotations/instances_train.json", "annotations/instances_val.json"]
    ids = []
    for name in summary.files:
        raw = json.loads((tmp_path / name).read_text())
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(tmp_path / name))
        assert len(coco.anns) == len(raw["annotations"]) == 3
        ids += [a["id"] for a in raw["annotations"]]
        assert [c["id"] for c in raw["categories"]] == [3, 7]
        assert raw["categories"][1]["skeleton"] == [[1, 2]]
        mask = next(a for a in raw["annotations"] if isinstance(a["segmentation"], dict))
        assert isinstance(mask["segmentation"]["counts"], str) and mask["iscrowd"] == 1
        assert mask["area"] == 24.0 and mask["bbox"] == [3.0, 2.0, 6.0, 4.0]
        assert coco.annToMask(mask).sum() == 24
        pose = next(a for a in raw["annotations"] if "keypoints" in a)
        assert pose["num_keypoints"] == 1 and pose["bbox"] == [3.0, 1.0, 4.0, 8.0]
    assert len(set(ids)) == len(ids) == 6


def test_what_coco_cannot_hold_is_in_the_notes_not_silently_gone(tmp_path):
    item = ItemRecord(key="x.jpg", width=20, height=10, split="train")
    labels = [
        LabelRecord("x.jpg", "car", model.CLASSIFICATION, {}),
        LabelRecord(
            "x.jpg",
            "car",
            model.CUBOID_3D,
            {"cuboid_3d": {"position": [0, 0, 1], "dimensions": [1, 1, 1], "rotation": [0, 0, 0]}},
        ),
        LabelRecord("x.jpg", "car", model.POLYLINE, {"points": [1.0, 1.0, 9.0, 1.0]}),
    ]
    _, notes = write(tmp_path, [(item, labels)])
    by_kind = {(n["code"], n["kind"]): n["count"] for n in notes.as_list() if n["code"] != "info"}
    assert by_kind == {
        ("converted", "classification"): 1,
        ("dropped", "cuboid_3d"): 1,
        ("converted", "polyline"): 1,
    }
    # The line, written as its box, carries the box as segmentation: said once, as a reading note.
    (info,) = [n for n in notes.as_list() if n["code"] == "info"]
    assert "segmentation" in info["detail"]
    raw = json.loads((tmp_path / "annotations/instances_train.json").read_text())
    assert raw["images"][0]["classifications"] == [{"category_id": 3, "source": "human"}]
    (line,) = raw["annotations"]
    assert line["bbox"] == [1.0, 1.0, 8.0, 1.0] and line["points"] == [
        1.0,
        1.0,
        9.0,
        1.0,
    ]  # a line covers a pixel


def test_provenance_rides_on_each_annotation_and_our_reader_reads_it_back(tmp_path):
    made = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    item = ItemRecord(key="images/train/a.jpg", width=20, height=10, split="train")
    label = LabelRecord(
        item.key,
        "car",
        model.BBOX,
        {"bbox": [1.0, 2.0, 5.0, 4.0]},
        attributes={"state": "red"},
        uid="5f0c8f0e-4c1e-4d3a-9a55-5d1f0c3b7a21",
        is_final=False,
        provenance=Provenance(
            annotator="A-1",
            made_at=made,
            guideline_version="v1.2",
            source="model",
            model_name="m",
            model_version="2",
        ),
    )
    write(tmp_path, [(item, [label])], image_source=lambda _: io.BytesIO(image_bytes(20, 10)))
    parsed = read_coco(DirectorySource(tmp_path))
    assert [i.key for i in parsed.items] == ["images/train/a.jpg"]
    (back,) = list(parsed.labels)
    assert not parsed.problems
    assert back.attributes == {"state": "red"} and back.is_final is False
    assert back.provenance == Provenance(
        annotator="A-1",
        made_at=made,
        guideline_version="v1.2",
        source="model",
        model_name="m",
        model_version="2",
    )
