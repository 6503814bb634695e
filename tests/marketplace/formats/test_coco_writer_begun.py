"""COCO files begun from the items alone and deflated as the labels come are the files written at the end.

``write_coco(..., items_first=...)`` writes each split's images array before the labels arrive and
deflates the rest as it is written (``_Writer.begin``); the archive must be byte for byte the one
written without it, and it must refuse what it cannot hold that way (a classification label, items
other than those it began with) rather than write a wrong file.
"""

from __future__ import annotations

import io

import pytest

from marketplace.formats import model
from marketplace.formats.coco_writer import write_coco
from marketplace.formats.model import CategoryDef, ItemRecord, LabelRecord
from marketplace.formats.writing import Notes, ZipSink

from .builders import image_bytes

CATS = [CategoryDef("car", source_id=3), CategoryDef("person", source_id=None)]


def items() -> list[ItemRecord]:
    """Three splits and none, interleaved; the same file name twice; attributes on some."""
    keys = ["images/train/a.jpg", "images/val/a.jpg", "b/a.jpg", "images/train/c.jpg", "images/a.jpg"]
    splits = ["train", "val", "", "train", "test"]
    return [
        ItemRecord(key=key, width=20 + n, height=10, split=split, attributes={"n": n} if n % 2 else {})
        for n, (key, split) in enumerate(zip(keys, splits, strict=True))
    ]


def records(extra: list[LabelRecord] | None = None):
    for n, item in enumerate(items()):
        labels = [
            LabelRecord(item.key, "car", model.BBOX, {"bbox": [1.0, 2.0, 5.0 + k, 4.0]}, uid=f"u{n}-{k}")
            for k in range(n)
        ]
        labels.append(
            LabelRecord(
                item.key,
                "person",
                model.POLYGON,
                {"polygons": [[1, 1, 6, 1, 6, 5.5]]},
                geometry_text='{"polygons": [[1, 1, 6, 1, 6, 5.5]]}',
            )
        )
        yield item, labels + (extra or [])


def archive(recs, **kwargs) -> bytes:
    out = io.BytesIO()
    sink = ZipSink(out)
    try:
        write_coco(sink, recs, categories=CATS, notes=Notes(), image_source=image_of, **kwargs)
        sink.write_manifest()
    finally:
        sink.close()
    return out.getvalue()


def image_of(item: ItemRecord):
    return io.BytesIO(image_bytes(item.width, item.height))


def test_files_begun_from_the_items_are_the_files_written_at_the_end():
    assert archive(records(), items_first=items()) == archive(records())


def test_with_no_item_it_still_writes_the_empty_file():
    assert archive([], items_first=[]) == archive([])


def test_a_classification_label_is_refused_once_the_images_are_written():
    classification = LabelRecord("images/train/a.jpg", "car", model.CLASSIFICATION, {})
    with pytest.raises(RuntimeError, match="classification"):
        archive(records([classification]), items_first=items())


@pytest.mark.parametrize(
    "given",
    [items()[:-1], items()[1:], items() + items()[:1], [items()[3], *items()[1:3], items()[0], items()[4]]],
)
def test_items_other_than_the_records_are_refused(given):
    with pytest.raises(RuntimeError, match="items"):
        archive(records(), items_first=given)
