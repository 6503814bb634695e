"""CVAT as jobs, datumaro and video tasks write it (issue #17)."""

from __future__ import annotations

from marketplace.formats import model
from marketplace.formats.cvat import read_cvat

from .test_cvat import META, FilesSource

VIDEO = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels><label><name>car</name><attributes><attribute><name>occluded</name>
    <input_type>select</input_type><values>yes
no</values></attribute></attributes></label></labels>
    <original_size><width>40</width><height>30</height></original_size></task></meta>
  <track id="3" label="car" source="manual">
    <box frame="0" outside="0" occluded="1" keyframe="1" xtl="1" ytl="2" xbr="11" ybr="12" z_order="0">
      <attribute name="occluded">no</attribute>
    </box>
    <box frame="1" outside="0" occluded="0" keyframe="0" xtl="2" ytl="2" xbr="12" ybr="12" z_order="0"/>
    <box frame="2" outside="1" occluded="0" keyframe="1" xtl="2" ytl="2" xbr="12" ybr="12" z_order="0"/>
  </track>
  <track id="4" label="car">
    <polyline frame="1" outside="0" occluded="0" keyframe="1" points="1,1;5,5" z_order="0"/>
  </track>
</annotations>
"""
FRAMES = {
    "images/frame_000000.PNG": b"png",
    "images/frame_000001.PNG": b"png",
    "images/frame_000002.PNG": b"png",
}


def _parse(xml: str, files=FRAMES):
    parsed = read_cvat(FilesSource({"annotations.xml": xml.encode(), **files}))
    return parsed, list(parsed.items), list(parsed.labels)


def test_a_video_track_is_one_item_per_frame_with_shapes_and_one_label_per_shape_not_outside():
    parsed, items, labels = _parse(VIDEO)

    assert [(i.key, i.width, i.height, i.source_id) for i in items] == [
        ("images/frame_000000.PNG", 40, 30, 0),
        ("images/frame_000001.PNG", 40, 30, 1),
    ]
    assert [
        (lab.item_key, lab.geometry_type, lab.attributes["track_id"], lab.attributes["keyframe"])
        for lab in labels
    ] == [
        ("images/frame_000000.PNG", model.BBOX, 3, True),
        ("images/frame_000001.PNG", model.BBOX, 3, False),
        ("images/frame_000001.PNG", model.POLYLINE, 4, True),
    ]
    assert labels[0].geometry == {"bbox": [1.0, 2.0, 10.0, 10.0]}
    assert labels[0].category == "car"
    codes = [p.code for p in parsed.problems]
    assert codes == ["video_frames", "attribute_renamed"]


def test_an_attribute_named_occluded_is_kept_beside_the_shape_flag():
    _, _, labels = _parse(VIDEO)

    assert labels[0].attributes["occluded"] is True  # the shape's flag
    assert labels[0].attributes["attribute:occluded"] == "no"  # the label attribute, not lost


def test_a_frame_without_its_image_is_an_error():
    files = {k: v for k, v in FRAMES.items() if "000001" not in k}
    parsed, items, labels = _parse(VIDEO, files)

    assert [i.source_id for i in items] == [0]
    assert [p.code for p in parsed.problems if p.code == "missing_image"] == ["missing_image"]
    assert len(labels) == 1


def test_attribute_values_separated_by_spaces_as_datumaro_writes_them():
    xml = META.replace("<values>red\nblue</values>", "<values>red blue</values>") + (
        '  <image id="0" name="0001.jpg" subset="Train" width="20" height="12">\n'
        '    <box label="car" xtl="1" ytl="1" xbr="5" ybr="5"><attribute name="colour">blue</attribute></box>\n'
        "  </image>\n</annotations>\n"
    )
    parsed = read_cvat(FilesSource({"annotations.xml": xml.encode(), "images/Train/0001.jpg": b"jpeg"}))
    car = next(c for c in parsed.categories if c.name == "car")
    labels = list(parsed.labels)

    assert next(a for a in car.attributes if a.name == "colour").values == ["red", "blue"]
    assert labels[0].attributes["colour"] == "blue"
    assert not [p for p in parsed.problems if p.code == "invalid_attribute"]


def test_a_huge_frame_or_track_number_is_a_problem_not_a_crash():
    xml = VIDEO.replace(
        'frame="1" outside="0" occluded="0" keyframe="0"',
        f'frame="{"9" * 5000}" outside="0" occluded="0" keyframe="0"',
    )
    xml = xml.replace('<track id="4"', f'<track id="{"7" * 5000}"')
    parsed, items, labels = _parse(xml)

    assert [i.source_id for i in items] == [0, 1]
    assert any("needs a frame number" in p.message and len(p.message) < 200 for p in parsed.problems)
    assert all(len(str(lab.attributes["track_id"])) <= 100 for lab in labels)
