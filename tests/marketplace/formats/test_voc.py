"""Reading Pascal VOC: the devkit's 1-based rule, line-numbered problems, hostile XML, masks."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from marketplace.formats import model
from marketplace.formats.archive import DirectorySource
from marketplace.formats.model import FormatError
from marketplace.formats.voc import read_voc

from .builders import image_bytes, line_of, palette_png, zip_source

W, H = 40, 30


def voc_xml(filename: str, objects: list[dict], *, width=W, height=H, size: bool = True) -> str:
    lines = [
        '<?xml version="1.0"?>',
        "<annotation>",
        "  <folder>VOC2012</folder>",
        f"  <filename>{filename}</filename>",
    ]
    if size:
        lines += [
            "  <size>",
            f"    <width>{width}</width>",
            f"    <height>{height}</height>",
            "    <depth>3</depth>",
            "  </size>",
        ]
    lines.append("  <segmented>1</segmented>")
    for obj in objects:
        lines += ["  <object>", f"    <name>{obj['name']}</name>"]
        for tag in ("pose", "truncated", "difficult", "occluded"):
            if tag in obj:
                lines.append(f"    <{tag}>{obj[tag]}</{tag}>")
        xmin, ymin, xmax, ymax = obj["box"]
        lines += [
            "    <bndbox>",
            f"      <xmin>{xmin}</xmin>",
            f"      <ymin>{ymin}</ymin>",
            f"      <xmax>{xmax}</xmax>",
            f"      <ymax>{ymax}</ymax>",
            "    </bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


DOG = {"name": "dog", "box": (1, 1, 20, 15), "pose": "Left", "truncated": 0, "difficult": 1}
PERSON = {"name": "person", "box": (21, 16, 40, 30), "occluded": 1}


def _instances() -> np.ndarray:
    objects = np.zeros((H, W), dtype=np.uint8)
    objects[0:15, 0:20] = 1
    objects[15:30, 20:40] = 2
    objects[15, 0:20] = 255  # the void border VOC draws around objects
    return objects


def _classes(dog=12, person=15) -> np.ndarray:
    classes = np.zeros((H, W), dtype=np.uint8)
    classes[0:15, 0:20] = dog
    classes[15:30, 20:40] = person
    classes[15, 0:20] = 255
    return classes


def _write(root, files: dict[str, bytes | str]) -> DirectorySource:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return DirectorySource(root)


def _voc_files(**extra) -> dict[str, bytes | str]:
    files = {
        "VOC2012/Annotations/2007_000001.xml": voc_xml("2007_000001.jpg", [DOG, PERSON]),
        "VOC2012/JPEGImages/2007_000001.jpg": image_bytes(W, H),
        "VOC2012/Annotations/2007_000002.xml": voc_xml(
            "2007_000002.jpg", [{"name": "dog", "box": (5, 6, 5, 6)}]
        ),
        "VOC2012/JPEGImages/2007_000002.jpg": image_bytes(W, H),
        "VOC2012/ImageSets/Main/train.txt": "2007_000001\n",
        "VOC2012/ImageSets/Main/val.txt": "2007_000002\n",
        "VOC2012/ImageSets/Main/trainval.txt": "2007_000001\n2007_000002\n",
        "VOC2012/ImageSets/Main/dog_train.txt": "2007_000001  1\n",
    }
    files.update(extra)
    return files


def _read(tmp_path, **extra):
    parsed = read_voc(_write(tmp_path, _voc_files(**extra)))
    items = list(parsed.items)
    labels = list(parsed.labels)
    return parsed, items, labels


def _where(parsed) -> list[tuple[str, int | None, str]]:
    return [(p.file, p.line, p.code) for p in parsed.problems]


# -- boxes --------------------------------------------------------------------------------


def test_it_converts_one_based_inclusive_corners_by_the_devkit_rule(tmp_path):
    parsed, _, labels = _read(tmp_path)

    assert parsed.problems == []
    dog, person, tiny = labels
    assert dog.geometry == {"bbox": [0, 0, 20, 15]}  # xmin=1 -> x=0, w = 20 - 1 + 1
    assert person.geometry == {"bbox": [20, 15, 20, 15]}  # xmax=40=width: right edge of the image
    assert tiny.geometry == {"bbox": [4, 5, 1, 1]}  # xmin == xmax is one pixel wide
    assert (dog.geometry_type, dog.category, dog.item_key) == (
        model.BBOX,
        "dog",
        "VOC2012/JPEGImages/2007_000001.jpg",
    )


def test_it_keeps_pose_truncated_difficult_and_occluded_as_attributes(tmp_path):
    _, _, labels = _read(tmp_path)

    dog, person, _ = labels
    assert dog.attributes == {"pose": "Left", "truncated": False, "difficult": True}
    assert person.attributes == {"occluded": True}
    xml = voc_xml("2007_000001.jpg", [DOG, PERSON])
    assert dog.source_ref == f"VOC2012/Annotations/2007_000001.xml:{line_of(xml, '<object>')}"
    assert (dog.source_id, person.source_id) == (1, 2)


def test_it_takes_splits_from_image_sets_main(tmp_path):
    _, items, _ = _read(tmp_path)

    assert [(i.key, i.width, i.height, i.split, i.source_id) for i in items] == [
        ("VOC2012/JPEGImages/2007_000001.jpg", W, H, "train", "2007_000001"),
        ("VOC2012/JPEGImages/2007_000002.jpg", W, H, "val", "2007_000002"),
    ]
    assert items[0].attributes == {"segmented": True}


def test_voc_class_names_get_their_devkit_index_as_source_id(tmp_path):
    parsed, _, _ = _read(tmp_path)

    assert [(c.name, c.source_id) for c in parsed.categories] == [("dog", 12), ("person", 15)]


def test_it_reads_from_a_zip_as_well(tmp_path):
    parsed = read_voc(zip_source(_voc_files()))

    assert len(list(parsed.labels)) == 3


# -- problems with lines ------------------------------------------------------------------


def test_it_reports_bad_corners_at_their_own_line(tmp_path):
    bad = voc_xml(
        "2007_000003.jpg",
        [
            {"name": "cat", "box": ("x", 1, 20, 10)},
            {"name": "cat", "box": (10, 1, 9, 10)},
            {"name": "cat", "box": (1, 1, 41, 10)},
            {"name": "cat", "box": (2, 1, 20, 10)},
        ],
    )
    parsed, _, labels = _read(
        tmp_path,
        **{
            "VOC2012/Annotations/2007_000003.xml": bad,
            "VOC2012/JPEGImages/2007_000003.jpg": image_bytes(W, H),
        },
    )

    xml = "VOC2012/Annotations/2007_000003.xml"
    assert _where(parsed) == [
        (xml, line_of(bad, "<xmin>x</xmin>"), "invalid"),
        (xml, line_of(bad, "<xmax>9</xmax>"), "invalid"),
        (xml, line_of(bad, "<xmax>41</xmax>"), "invalid"),
    ]
    assert "VOC is 1-based" in parsed.problems[2].message
    assert "less than <xmin> 10" in parsed.problems[1].message
    cats = [label for label in labels if label.category == "cat"]
    assert [c.geometry["bbox"] for c in cats] == [[1, 0, 19, 10]]  # only the good one


def test_a_missing_size_is_taken_from_the_image_and_said(tmp_path):
    bad = voc_xml("2007_000001.jpg", [DOG], size=False)
    parsed, items, labels = _read(tmp_path, **{"VOC2012/Annotations/2007_000001.xml": bad})

    assert _where(parsed) == [
        ("VOC2012/Annotations/2007_000001.xml", line_of(bad, "<annotation>"), "size_from_image")
    ]
    assert (items[0].width, items[0].height) == (W, H)
    assert labels[0].geometry == {"bbox": [0, 0, 20, 15]}


def test_it_reports_a_missing_image_at_the_filename_line(tmp_path):
    files = _voc_files()
    del files["VOC2012/JPEGImages/2007_000002.jpg"]
    parsed = read_voc(_write(tmp_path, files))
    list(parsed.items), list(parsed.labels)

    xml = voc_xml("2007_000002.jpg", [{"name": "dog", "box": (5, 6, 5, 6)}])
    assert _where(parsed) == [
        ("VOC2012/Annotations/2007_000002.xml", line_of(xml, "<filename>"), "missing_file")
    ]


def test_it_reports_split_entries_without_annotations_by_line(tmp_path):
    parsed, _, _ = _read(tmp_path, **{"VOC2012/ImageSets/Main/test.txt": "2007_000001\n\n2007_999999\n"})

    assert _where(parsed) == [
        ("VOC2012/ImageSets/Main/test.txt", 1, "split_conflict"),
        ("VOC2012/ImageSets/Main/test.txt", 3, "missing_file"),
    ]


def test_it_reports_malformed_xml_with_its_line_and_reads_the_other_files(tmp_path):
    broken = '<?xml version="1.0"?>\n<annotation>\n  <filename>x.jpg</filename>\n  <size>\n</annotation>\n'
    parsed, items, labels = _read(tmp_path, **{"VOC2012/Annotations/2007_000002.xml": broken})

    assert _where(parsed) == [("VOC2012/Annotations/2007_000002.xml", 5, "invalid_xml")]
    assert [i.source_id for i in items] == ["2007_000001"]
    assert len(labels) == 2


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>&lol9;</filename></annotation>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
<annotation><filename>&secret;</filename></annotation>
"""


@pytest.mark.parametrize("hostile", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_an_entity_bomb_or_external_entity_is_a_problem_not_a_crash_or_a_hang(tmp_path, hostile):
    started = time.monotonic()
    parsed, items, labels = _read(tmp_path, **{"VOC2012/Annotations/2007_000002.xml": hostile})

    assert _where(parsed) == [("VOC2012/Annotations/2007_000002.xml", 2, "forbidden_xml")]
    assert [i.source_id for i in items] == ["2007_000001"]
    assert len(labels) == 2
    assert time.monotonic() - started < 2


def test_a_source_without_annotations_is_refused(tmp_path):
    with pytest.raises(FormatError):
        read_voc(_write(tmp_path, {"JPEGImages/a.jpg": image_bytes(W, H)}))


# -- instance masks -----------------------------------------------------------------------


def _mask_files(classes=None, **extra):
    return {
        "VOC2012/SegmentationObject/2007_000001.png": palette_png(_instances()),
        "VOC2012/SegmentationClass/2007_000001.png": palette_png(_classes() if classes is None else classes),
        **extra,
    }


def test_each_segmentation_object_becomes_a_mask_label_that_decodes_to_its_pixels(tmp_path):
    parsed, _, labels = _read(tmp_path, **_mask_files())

    assert parsed.problems == []
    masks = [label for label in labels if label.geometry_type == model.MASK]
    assert [(m.category, m.source_id, m.item_key) for m in masks] == [
        ("dog", 1, "VOC2012/JPEGImages/2007_000001.jpg"),
        ("person", 2, "VOC2012/JPEGImages/2007_000001.jpg"),
    ]
    for mask, k in zip(masks, (1, 2), strict=True):
        rle = mask.geometry["rle"]
        assert isinstance(rle["counts"], str) and rle["size"] == [H, W]
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        expected = (_instances() == k).astype(np.uint8)
        assert np.array_equal(decoded, expected)
        assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) == expected.sum()
    assert masks[0].geometry["bbox"] == [0.0, 0.0, 20.0, 15.0]  # the void row 15 is not the dog's
    assert masks[0].attributes == DOG_ATTRIBUTES
    assert masks[0].source_ref == "VOC2012/SegmentationObject/2007_000001.png#1"


DOG_ATTRIBUTES = {"pose": "Left", "truncated": False, "difficult": True}


def test_the_mask_category_comes_from_the_class_png_and_a_disagreement_is_reported(tmp_path):
    parsed, _, labels = _read(tmp_path, **_mask_files(classes=_classes(dog=15)))  # 15 = person

    masks = [label for label in labels if label.geometry_type == model.MASK]
    assert [m.category for m in masks] == ["person", "person"]
    assert _where(parsed) == [("VOC2012/SegmentationClass/2007_000001.png", None, "mask_class_mismatch")]


def test_a_class_png_naming_a_class_no_object_has_keeps_the_xml_name_and_says_so(tmp_path):
    parsed, _, labels = _read(tmp_path, **_mask_files(classes=_classes(dog=8)))  # 8 = cat, not declared

    masks = [label for label in labels if label.geometry_type == model.MASK]
    assert [m.category for m in masks] == ["dog", "person"]  # every label's class is in the schema
    assert {c.name for c in parsed.categories} == {"dog", "person"}
    assert _where(parsed) == [("VOC2012/SegmentationClass/2007_000001.png", None, "mask_class_mismatch")]
    assert "the XML's name is kept" in parsed.problems[0].message


def test_a_custom_labelmap_gives_the_class_palette_order(tmp_path):
    labelmap = "# label:color_rgb:parts:actions\nbackground:0,0,0::\nperson:1,1,1::\ndog:2,2,2::\n"
    parsed, _, labels = _read(
        tmp_path, **_mask_files(classes=_classes(dog=2, person=1), **{"VOC2012/labelmap.txt": labelmap})
    )

    assert [(c.name, c.source_id) for c in parsed.categories] == [("person", 1), ("dog", 2)]
    assert [m.category for m in labels if m.geometry_type == model.MASK] == ["dog", "person"]
    assert parsed.problems == []


def test_a_mask_of_the_wrong_size_is_reported(tmp_path):
    parsed, _, labels = _read(
        tmp_path,
        **{"VOC2012/SegmentationObject/2007_000001.png": palette_png(np.zeros((10, 10), dtype=np.uint8))},
    )

    assert _where(parsed) == [("VOC2012/SegmentationObject/2007_000001.png", None, "invalid_mask")]
    assert all(label.geometry_type == model.BBOX for label in labels)
