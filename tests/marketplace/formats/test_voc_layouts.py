"""Pascal VOC as the tools really write it: per-file corner conventions, files beside the images,
split lists naming unlabelled images, parts and actions, colour (RGB) masks (issue #17)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from marketplace.formats import model
from marketplace.formats.voc import read_voc, voc_colormap

from .builders import image_bytes, palette_png, zip_source
from .test_voc import _classes, _instances, voc_xml

W, H = 40, 30


def _read(files):
    parsed = read_voc(zip_source(files))
    items, labels = list(parsed.items), list(parsed.labels)
    return parsed, items, labels


def _codes(parsed):
    return [(p.file, p.code) for p in parsed.problems]


def test_each_file_is_read_in_its_own_corner_convention_and_the_report_says_so():
    cvat = voc_xml("c.jpg", [{"name": "dog", "box": ("87.5", "0.0", "100.25", "12.0")}], width=200, height=20)
    roboflow = voc_xml("r.jpg", [{"name": "dog", "box": (3, 4, 10, 20)}]).replace(
        "<folder>VOC2012</folder>", "<source><database>roboflow.com</database></source>"
    )
    zero = voc_xml("z.jpg", [{"name": "dog", "box": (0, 0, 40, 30)}])
    devkit = voc_xml("d.jpg", [{"name": "dog", "box": (1, 1, 40, 30)}])
    files = {
        "Annotations/c.xml": cvat,
        "JPEGImages/c.jpg": image_bytes(200, 20),
        "Annotations/r.xml": roboflow,
        "JPEGImages/r.jpg": image_bytes(W, H),
        "Annotations/z.xml": zero,
        "JPEGImages/z.jpg": image_bytes(W, H),
        "Annotations/d.xml": devkit,
        "JPEGImages/d.jpg": image_bytes(W, H),
    }
    parsed, _, labels = _read(files)

    boxes = {label.item_key: label.geometry["bbox"] for label in labels}
    assert boxes == {
        "JPEGImages/c.jpg": [87.5, 0.0, 12.75, 12.0],  # 0-based, as CVAT means it
        "JPEGImages/r.jpg": [3, 4, 7, 16],  # Roboflow: 0-based integers
        "JPEGImages/z.jpg": [0, 0, 40, 30],  # a 0 corner: 0-based, the whole image
        "JPEGImages/d.jpg": [0, 0, 40, 30],  # the devkit: 1-based inclusive, the whole image
    }
    assert sorted(_codes(parsed)) == [
        ("Annotations/c.xml", "voc_zero_based_decimal"),
        ("Annotations/r.xml", "voc_zero_based_integer"),
    ]
    integer = next(p for p in parsed.problems if p.code == "voc_zero_based_integer")
    assert "2 times" in integer.message  # r.xml and z.xml: one entry, counted, first located


def test_xml_beside_each_image_is_read_with_the_folder_as_split():
    xml = voc_xml("a.jpg", [{"name": "dog", "box": (2, 1, 5, 2)}]).replace(
        "<folder>VOC2012</folder>", "<source><database>roboflow.ai</database></source>"
    )
    files = {
        "train/a.xml": xml,
        "train/a.jpg": image_bytes(W, H),
        "valid/B.JPG": image_bytes(W, H),
        "valid/b.xml": voc_xml("b.jpg", []),  # the file name in another case than the image's
        "valid/unlabelled.jpg": image_bytes(W, H),
    }
    parsed, items, labels = _read(files)

    assert [(i.key, i.split) for i in items] == [("train/a.jpg", "train"), ("valid/B.JPG", "valid")]
    assert [(label.item_key, label.geometry["bbox"]) for label in labels] == [("train/a.jpg", [2, 1, 3, 1])]
    assert _codes(parsed) == [("train/a.xml", "voc_zero_based_integer")]


def test_split_lists_may_name_images_without_xml_and_have_comment_lines():
    files = {
        "Annotations/a.xml": voc_xml("a.jpg", [{"name": "dog", "box": (1, 1, 5, 5)}]),
        "JPEGImages/a.jpg": image_bytes(W, H),
        "JPEGImages/b.png": image_bytes(W, H),
        "ImageSets/Main/train.txt": "# a comment\na\nb\n",
        "ImageSets/Main/test.txt": "missing\n",
    }
    parsed, items, _ = _read(files)

    assert [(i.key, i.split, i.width) for i in items] == [
        ("JPEGImages/a.jpg", "train", W),
        ("JPEGImages/b.png", "train", None),
    ]
    assert [(p.file, p.line, p.code) for p in parsed.problems] == [
        ("ImageSets/Main/test.txt", 1, "missing_file")
    ]


def test_parts_and_actions_are_kept_with_the_object():
    xml = voc_xml("a.jpg", [{"name": "person", "box": (1, 1, 20, 20)}]).replace(
        "  </object>",
        "    <part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></part>\n"
        "    <actions><jumping>1</jumping><reading>0</reading></actions>\n  </object>",
    )
    parsed, _, labels = _read({"Annotations/a.xml": xml, "JPEGImages/a.jpg": image_bytes(W, H)})

    assert parsed.problems == []
    assert labels[0].attributes["parts"] == [{"name": "head", "bbox": [1, 1, 4, 5]}]
    assert labels[0].attributes["actions"] == {"jumping": True, "reading": False}


def _rgb_png(indices: np.ndarray, colours: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(colours[indices].astype(np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def test_colour_masks_are_read_through_the_voc_colour_map_as_datumaro_writes_them():
    from datumaro.plugins.data_formats.voc.format import VocColormap  # the exporter's own table

    ours = voc_colormap()
    assert all(tuple(ours[k]) == tuple(VocColormap[k]) for k in VocColormap)  # the 21 classes
    theirs = ours.copy()
    dog = {"name": "dog", "box": (1, 1, 20, 15)}
    person = {"name": "person", "box": (21, 16, 40, 30)}
    files = {
        "Annotations/a.xml": voc_xml("a.jpg", [dog, person]),
        "JPEGImages/a.jpg": image_bytes(W, H),
        "SegmentationObject/a.png": _rgb_png(_instances(), theirs),
        "SegmentationClass/a.png": _rgb_png(_classes(), theirs),
    }
    parsed, _, labels = _read(files)

    masks = [label for label in labels if label.geometry_type == model.MASK]
    assert [(m.category, m.source_id) for m in masks] == [("dog", 1), ("person", 2)]
    assert parsed.problems == []
    # The same masks as palette PNGs give the same labels.
    files["SegmentationObject/a.png"] = palette_png(_instances())
    files["SegmentationClass/a.png"] = palette_png(_classes())
    _, _, again = _read(files)
    assert [m.geometry for m in again if m.geometry_type == model.MASK] == [m.geometry for m in masks]


def test_a_colour_outside_the_colour_map_is_a_mask_problem():
    odd = np.zeros((H, W, 3), dtype=np.uint8)
    odd[0, 0] = (1, 2, 3)
    buf = io.BytesIO()
    Image.fromarray(odd, "RGB").save(buf, "PNG")
    files = {
        "Annotations/a.xml": voc_xml("a.jpg", [{"name": "dog", "box": (1, 1, 5, 5)}]),
        "JPEGImages/a.jpg": image_bytes(W, H),
        "SegmentationObject/a.png": buf.getvalue(),
    }
    parsed, _, labels = _read(files)

    assert [(p.file, p.code) for p in parsed.problems] == [("SegmentationObject/a.png", "invalid_mask")]
    assert "(1, 2, 3) at (0, 0)" in parsed.problems[0].message
    assert [label.geometry_type for label in labels] == [model.BBOX]


def test_parts_and_actions_go_back_as_voc_elements_in_our_export(tmp_path):
    from marketplace.formats.archive import DirectorySource
    from marketplace.formats.voc_writer import write_voc
    from marketplace.formats.writing import DirectorySink, Notes

    xml = voc_xml("a.jpg", [{"name": "person", "box": (1, 1, 20, 20)}]).replace(
        "  </object>",
        "    <part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></part>\n"
        "    <actions><jumping>1</jumping><reading>0</reading></actions>\n  </object>",
    )
    parsed, items, labels = _read({"Annotations/a.xml": xml, "JPEGImages/a.jpg": image_bytes(W, H)})
    picture = image_bytes(W, H)
    write_voc(
        DirectorySink(tmp_path), [(items[0], labels)], categories=parsed.categories, notes=Notes(),
        image_source=lambda _: io.BytesIO(picture),
    )  # fmt: skip

    written = next((tmp_path / "Annotations").glob("*.xml")).read_text()
    assert "<part><name>head</name>" in written and "<jumping>1</jumping>" in written
    again = read_voc(DirectorySource(tmp_path))
    list(again.items)
    back = list(again.labels)
    assert back[0].attributes["parts"] == labels[0].attributes["parts"]
    assert back[0].attributes["actions"] == labels[0].attributes["actions"]
