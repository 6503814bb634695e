"""CVAT for images 1.1: an export with every shape kind, subsets, attributes and hostile XML."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from marketplace.formats import model
from marketplace.formats.cvat import read_cvat


class FilesSource:
    """A delivery held in memory: {name: bytes}."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def names(self) -> list[str]:
        return sorted(self.files)

    def open(self, name: str):
        return io.BytesIO(self.files[name])


IMAGES = {
    "images/Train/0001.jpg": b"jpeg",
    "images/Validation/0001.jpg": b"another jpeg",
    "images/Train/0002.jpg": b"jpeg",
}

META = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <project>
      <id>7</id>
      <name>street scenes</name>
      <labels>
        <label>
          <name>car</name>
          <color>#fa3253</color>
          <type>rectangle</type>
          <attributes>
            <attribute>
              <name>colour</name>
              <mutable>False</mutable>
              <input_type>select</input_type>
              <default_value>red</default_value>
              <values>red
blue</values>
            </attribute>
            <attribute>
              <name>parked</name>
              <mutable>True</mutable>
              <input_type>checkbox</input_type>
              <default_value>false</default_value>
              <values>false</values>
            </attribute>
            <attribute>
              <name>speed</name>
              <mutable>True</mutable>
              <input_type>number</input_type>
              <default_value>0</default_value>
              <values>0
200
1</values>
            </attribute>
          </attributes>
        </label>
        <label><name>road</name><color>#33ddff</color><type>polygon</type><attributes/></label>
        <label><name>lane</name><color>#ffffff</color><type>polyline</type><attributes/></label>
        <label><name>face</name><color>#ff00ff</color><type>points</type><attributes/></label>
        <label><name>truck</name><color>#00ff00</color><type>cuboid</type><attributes/></label>
        <label><name>sky</name><color>#0000ff</color><type>mask</type><attributes/></label>
        <label>
          <name>weather</name>
          <color>#aaaaaa</color>
          <type>tag</type>
          <attributes>
            <attribute>
              <name>rain</name>
              <mutable>False</mutable>
              <input_type>checkbox</input_type>
              <default_value>false</default_value>
              <values>false</values>
            </attribute>
          </attributes>
        </label>
      </labels>
    </project>
    <dumped>2024-05-02 10:00:00.000000+00:00</dumped>
  </meta>
"""

BODY = """  <image id="0" name="0001.jpg" subset="Train" task_id="3" width="20" height="12">
    <box label="car" source="manual" occluded="1" xtl="1.50" ytl="2.25" xbr="9.75" ybr="8.00" z_order="1" annotator="ann-042" created_at="2024-05-01T09:30:00Z" guideline_version="v1.2">
      <attribute name="colour">blue</attribute>
      <attribute name="parked">true</attribute>
      <attribute name="speed">42</attribute>
    </box>
    <box label="car" source="auto" occluded="0" xtl="4.00" ytl="2.00" xbr="8.00" ybr="4.00" rotation="90.00" z_order="0">
      <attribute name="colour">red</attribute>
      <attribute name="parked">false</attribute>
      <attribute name="speed">7.5</attribute>
    </box>
    <polygon label="road" source="semi-auto" occluded="0" points="0.00,12.00;10.00,6.00;20.00,12.00" z_order="0">
    </polygon>
    <polyline label="lane" source="manual" occluded="0" points="1.00,11.00;19.00,1.00" z_order="0">
    </polyline>
    <points label="face" source="manual" occluded="0" points="5.00,5.00;6.00,5.50;5.50,7.00" z_order="2">
    </points>
    <cuboid label="truck" source="file" occluded="0" xtl1="2.00" ytl1="3.00" xbl1="2.00" ybl1="9.00" xtr1="8.00" ytr1="3.00" xbr1="8.00" ybr1="9.00" xtl2="4.00" ytl2="1.00" xbl2="4.00" ybl2="7.00" xtr2="10.00" ytr2="1.00" xbr2="10.00" ybr2="7.00" z_order="0">
    </cuboid>
    <mask label="sky" source="manual" occluded="0" rle="1, 2, 1, 4, 2, 1, 1" left="3" top="2" width="4" height="3" z_order="0">
    </mask>
    <tag label="weather" source="manual">
      <attribute name="rain">true</attribute>
    </tag>
  </image>
  <image id="1" name="0001.jpg" subset="Validation" task_id="4" width="20" height="12">
    <box label="car" source="manual" occluded="0" xtl="0.00" ytl="0.00" xbr="20.00" ybr="12.00" z_order="0">
      <attribute name="colour">red</attribute>
      <attribute name="parked">false</attribute>
      <attribute name="speed">0</attribute>
    </box>
  </image>
  <image id="2" name="0002.jpg" subset="Train" task_id="3" width="20" height="12">
  </image>
</annotations>
"""


def _parse(xml: str, images: dict[str, bytes] = IMAGES) -> tuple[model.Parsed, list, list]:
    parsed = read_cvat(FilesSource({"annotations.xml": xml.encode(), **images}))
    items = list(parsed.items)
    labels = list(parsed.labels)
    return parsed, items, labels


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _by_category(labels: list[model.LabelRecord], name: str) -> list[model.LabelRecord]:
    return [label for label in labels if label.category == name]


def test_it_reads_a_project_export_without_a_problem():
    parsed, items, labels = _parse(META + BODY)

    assert parsed.problems == []
    assert len(items) == 3
    assert len(labels) == 9


def test_it_reads_the_label_schema_with_attribute_specs_from_meta():
    parsed, _, _ = _parse(META + BODY)

    by_name = {c.name: c for c in parsed.categories}
    assert list(by_name) == ["car", "road", "lane", "face", "truck", "sky", "weather"]
    car = by_name["car"]
    assert car.geometry_types == [model.BBOX]
    assert car.color == "#fa3253"
    assert [(a.name, a.input_type, a.values) for a in car.attributes] == [
        ("colour", "select", ["red", "blue"]),
        ("parked", "checkbox", ["false"]),
        ("speed", "number", ["0", "200", "1"]),
    ]
    assert by_name["weather"].geometry_types == [model.CLASSIFICATION]
    assert by_name["truck"].geometry_types == [model.CUBOID_2D]


def test_the_same_image_name_in_two_subsets_gives_two_items():
    _, items, _ = _parse(META + BODY)

    assert [(i.key, i.split, i.source_id) for i in items] == [
        ("images/Train/0001.jpg", "Train", 0),
        ("images/Validation/0001.jpg", "Validation", 1),
        ("images/Train/0002.jpg", "Train", 2),
    ]
    assert items[0].width == 20 and items[0].height == 12
    assert items[0].attributes == {"task_id": 3}


def test_a_box_becomes_a_pixel_bbox_with_typed_attributes_and_provenance():
    xml = META + BODY
    _, _, labels = _parse(xml)

    box = labels[0]
    assert box.item_key == "images/Train/0001.jpg"
    assert box.geometry_type == model.BBOX
    assert box.geometry == {"bbox": [1.5, 2.25, 8.25, 5.75]}
    assert box.attributes == {"occluded": True, "z_order": 1, "colour": "blue", "parked": True, "speed": 42}
    assert box.provenance.source == model.HUMAN
    assert box.provenance.annotator == "ann-042"
    assert box.provenance.made_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert box.provenance.guideline_version == "v1.2"
    line = _line_of(xml, 'annotator="ann-042"')
    assert box.source_ref == f"annotations.xml:{line}"
    assert box.source_id == 0
    assert box.is_final


def test_a_rotated_box_becomes_a_polygon_turned_clockwise_about_its_centre():
    _, _, labels = _parse(META + BODY)

    rotated = labels[1]
    assert rotated.geometry_type == model.POLYGON
    # 4x2 box centred on (6, 3), turned a quarter clockwise: a 2x4 box on the same centre,
    # its former top-left corner now top-right.
    assert rotated.geometry["polygons"][0] == pytest.approx([7, 1, 7, 5, 5, 5, 5, 1])
    assert rotated.attributes["rotation"] == 90.0
    assert rotated.attributes["speed"] == 7.5
    assert rotated.provenance.source == model.MODEL
    assert rotated.provenance.model_name == "cvat-auto"


def test_polygons_polylines_points_and_cuboids_keep_their_coordinates():
    _, _, labels = _parse(META + BODY)

    road = _by_category(labels, "road")[0]
    assert road.geometry == {"polygons": [[0.0, 12.0, 10.0, 6.0, 20.0, 12.0]]}
    assert road.provenance.model_name == "cvat-semi-auto"
    lane = _by_category(labels, "lane")[0]
    assert (lane.geometry_type, lane.geometry) == (model.POLYLINE, {"points": [1.0, 11.0, 19.0, 1.0]})
    face = _by_category(labels, "face")[0]
    assert face.geometry_type == model.KEYPOINTS
    assert face.geometry == {"keypoints": [5.0, 5.0, 2, 6.0, 5.5, 2, 5.5, 7.0, 2]}
    assert face.attributes["z_order"] == 2
    truck = _by_category(labels, "truck")[0]
    assert truck.geometry_type == model.CUBOID_2D
    # front face tl, bl, tr, br, then the back face in the same order
    assert truck.geometry["cuboid"] == [2, 3, 2, 9, 8, 3, 8, 9, 4, 1, 4, 7, 10, 1, 10, 7]
    assert truck.provenance.model_name == "cvat-file"


def test_a_cvat_mask_becomes_a_full_image_coco_rle_with_the_same_pixels():
    _, _, labels = _parse(META + BODY)

    sky = _by_category(labels, "sky")[0]
    assert sky.geometry_type == model.MASK
    rle = sky.geometry["rle"]
    assert rle["size"] == [12, 20]
    assert isinstance(rle["counts"], str)
    expected = np.zeros((12, 20), dtype=np.uint8)
    # rle "1, 2, 1, 4, 2, 1, 1" over the 4x3 box at left=3, top=2, row-major, background first
    expected[2, 3:7] = [0, 1, 1, 0]
    expected[3, 3:7] = [1, 1, 1, 1]
    expected[4, 3:7] = [0, 0, 1, 0]
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(decoded, expected)


def test_a_tag_becomes_a_classification_with_its_attribute():
    _, _, labels = _parse(META + BODY)

    weather = _by_category(labels, "weather")[0]
    assert weather.geometry_type == model.CLASSIFICATION
    assert weather.geometry == {}
    assert weather.attributes == {"rain": True}


def test_shapes_of_the_validation_image_go_to_the_validation_item():
    _, _, labels = _parse(META + BODY)

    assert labels[-1].item_key == "images/Validation/0001.jpg"
    assert labels[-1].geometry == {"bbox": [0.0, 0.0, 20.0, 12.0]}


def test_an_unknown_label_is_a_problem_on_its_line():
    body = BODY.replace('<polyline label="lane"', '<polyline label="lame"')
    xml = META + body
    parsed, _, labels = _parse(xml)

    assert [(p.code, p.line) for p in parsed.problems] == [("unknown_label", _line_of(xml, 'label="lame"'))]
    assert "'lame'" in parsed.problems[0].message
    assert not _by_category(labels, "lame")


def test_a_box_outside_the_image_is_a_problem_and_is_skipped():
    body = BODY.replace(
        'xtl="0.00" ytl="0.00" xbr="20.00" ybr="12.00"', 'xtl="0.00" ytl="0.00" xbr="40.00" ybr="12.00"'
    )
    xml = META + body
    parsed, _, labels = _parse(xml)

    assert [p.code for p in parsed.problems] == ["invalid_geometry"]
    assert parsed.problems[0].line == _line_of(xml, 'xbr="40.00"')
    assert "outside the 20x12 image" in parsed.problems[0].message
    assert len(labels) == 8


def test_attribute_values_that_break_the_spec_are_problems():
    body = BODY.replace(
        '<attribute name="parked">true</attribute>', '<attribute name="parked">maybe</attribute>'
    )
    body = body.replace('<attribute name="speed">42</attribute>', '<attribute name="speed">420</attribute>')
    body = body.replace(
        '<attribute name="colour">blue</attribute>', '<attribute name="colour">green</attribute>'
    )
    parsed, _, _ = _parse(META + body)

    messages = [p.message for p in parsed.problems]
    assert all(p.code == "invalid_attribute" for p in parsed.problems)
    assert len(messages) == 3
    assert any("checkbox" in m for m in messages)
    assert any("outside 0..200" in m for m in messages)
    assert any("not one of ['red', 'blue']" in m for m in messages)


def test_a_mask_whose_runs_do_not_fill_its_box_is_a_problem():
    body = BODY.replace('rle="1, 2, 1, 4, 2, 1, 1"', 'rle="1, 2, 1, 4, 2"')
    parsed, _, labels = _parse(META + body)

    assert [p.code for p in parsed.problems] == ["invalid"]
    assert "covers 10 pixels" in parsed.problems[0].message
    assert not _by_category(labels, "sky")


def test_an_image_missing_from_the_delivery_is_a_problem_and_its_shapes_are_skipped():
    images = {k: v for k, v in IMAGES.items() if "Validation" not in k}
    parsed, items, labels = _parse(META + BODY, images)

    assert [p.code for p in parsed.problems] == ["missing_image"]
    assert len(items) == 2
    assert all(label.item_key != "images/Validation/0001.jpg" for label in labels)
    assert len(labels) == 8


def test_an_image_found_under_its_subset_folder_anywhere_in_the_delivery():
    images = {"export/train/images/0001.jpg": b"", "export/validation/images/0001.jpg": b"", "0002.jpg": b""}
    parsed, items, _ = _parse(META + BODY, images)

    assert parsed.problems == []
    assert [i.key for i in items] == [
        "export/train/images/0001.jpg",
        "export/validation/images/0001.jpg",
        "0002.jpg",
    ]


def test_an_image_in_two_subsets_that_is_one_file_is_reported_as_a_leak():
    images = {"images/0001.jpg": b"jpeg", "images/0002.jpg": b"jpeg"}
    parsed, items, _ = _parse(META + BODY, images)

    assert [p.code for p in parsed.problems] == ["duplicate_image"]
    assert "leaks" in parsed.problems[0].message
    assert [i.key for i in items] == ["images/0001.jpg", "images/0002.jpg"]


def test_problems_seen_by_both_passes_are_reported_once():
    body = BODY.replace('<polyline label="lane"', '<polyline label="lame"')
    parsed = read_cvat(FilesSource({"annotations.xml": (META + body).encode(), **IMAGES}))
    list(parsed.labels)
    list(parsed.items)
    list(parsed.labels)  # a second full pass

    assert len(parsed.problems) == 1


def test_an_entity_bomb_is_refused_as_a_problem():
    bomb = """<?xml version="1.0"?>
<!DOCTYPE annotations [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<annotations><meta><task><labels><label><name>&lol3;</name></label></labels></task></meta></annotations>
"""
    parsed, items, labels = _parse(bomb)

    assert (items, labels) == ([], [])
    assert [p.code for p in parsed.problems] == ["unsafe_xml"]
    unsafe = parsed.problems[0]
    assert unsafe.line == 3
    assert "EntitiesForbidden" in unsafe.message


def test_an_external_entity_is_refused_as_a_problem():
    xxe = """<?xml version="1.0"?>
<!DOCTYPE annotations [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotations><image id="0" name="0002.jpg" width="20" height="12"><tag label="&secret;"/></image></annotations>
"""
    parsed, items, labels = _parse(xxe)

    assert (items, labels) == ([], [])
    assert "unsafe_xml" in {p.code for p in parsed.problems}


def test_malformed_xml_is_a_problem_with_its_line_after_the_labels_before_it():
    xml = META + BODY.replace('  </image>\n  <image id="1"', '  </imag>\n  <image id="1"', 1)
    parsed, items, labels = _parse(xml)

    assert len(labels) == 8  # the first image's shapes streamed out before the error
    syntax = [p for p in parsed.problems if p.code == "xml_syntax"]
    assert len(syntax) == 1
    assert syntax[0].line == _line_of(xml, "</imag>")


def test_without_a_meta_schema_labels_are_read_and_that_is_reported():
    xml = '<?xml version="1.0"?>\n<annotations>\n' + BODY
    parsed, _, labels = _parse(xml)

    assert [p.code for p in parsed.problems] == ["no_schema"]
    assert {c.name for c in parsed.categories} == {"car", "road", "lane", "face", "truck", "sky", "weather"}
    assert len(labels) == 9
    assert labels[0].attributes["parked"] == "true"  # untyped without a spec


def test_an_email_as_annotator_is_refused():
    body = BODY.replace('annotator="ann-042"', 'annotator="jane.doe@example.com"')
    parsed, _, labels = _parse(META + body)

    assert [p.code for p in parsed.problems] == ["personal_data"]
    assert labels[0].provenance.annotator is None
    assert "example.com" not in repr(labels)


def test_problems_stop_at_a_thousand():
    shapes = '    <box label="bus" xtl="1" ytl="1" xbr="2" ybr="2"/>\n' * 1200
    xml = (
        META
        + f'  <image id="2" name="0002.jpg" width="20" height="12">\n{shapes}  </image>\n</annotations>\n'
    )
    parsed, _, labels = _parse(xml)

    assert labels == []
    assert len(parsed.problems) == 1001
    assert parsed.problems[-1].code == "too_many_problems"


def test_a_large_export_streams_with_one_label_per_image():
    image = (
        '  <image id="{i}" name="0002.jpg" subset="S{i}" width="20" height="12">\n'
        '    <box label="car" xtl="1" ytl="1" xbr="2" ybr="2"/>\n  </image>\n'
    )
    body = "".join(image.format(i=i) for i in range(3000))
    images = {f"images/S{i}/0002.jpg": b"" for i in range(3000)}
    parsed = read_cvat(
        FilesSource({"annotations.xml": (META + body + "</annotations>\n").encode(), **images})
    )

    count = sum(1 for _ in parsed.labels)
    assert count == 3000
    assert sum(1 for _ in parsed.items) == 3000
    assert parsed.problems == []
