"""The COCO writer's splice gives the very file the encoding path gives, parsed, for every geometry type.

``LabelRecord.geometry_text`` is the stored JSON text a geometry was decoded from; the writer copies a
polygon label's ``polygons`` out of it as ``segmentation`` instead of encoding them again. The reference
is the same records without the text (every part encoded by the writer). Stored texts come in the
spellings the databases give back: SQLite keeps Django's ``json.dumps``, PostgreSQL's jsonb prints
keys by length with ", " and ": " and numbers without exponent, and its json column (a label's geometry,
since issue 13) keeps the compact text ingest wrote.
Then pycocotools loads the spliced file and ``annToMask`` decodes every annotation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import io
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO

from marketplace.formats import model
from marketplace.formats.coco_writer import polygons_fragment, write_coco
from marketplace.formats.model import CategoryDef, ItemRecord, LabelRecord, Provenance
from marketplace.formats.writing import DirectorySink, Notes

from .test_coco_writer import rle_of

W, H = 64, 48
CATS = [CategoryDef("car", source_id=3), CategoryDef("person", source_id=7, keypoints=["head", "foot"])]


def _jsonb_number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return json.dumps(value)
    text = format(decimal.Decimal(repr(value)), "f")  # numeric's output: no exponent
    return text if "." in text or "e" in repr(value) else text + ".0"


def jsonb_text(value) -> str:
    """PostgreSQL's jsonb output: keys by length then bytes, ", " and ": ", numbers without exponent."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{json.dumps(k)}: {jsonb_text(value[k])}" for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    return _jsonb_number(value) if isinstance(value, int | float) else json.dumps(value, ensure_ascii=False)


SPELLINGS = {
    "sqlite": json.dumps,
    "postgresql": jsonb_text,
    "compact": lambda g: orjson.dumps(g).decode(),
}

coordinate = st.one_of(
    st.floats(min_value=0, max_value=W, allow_nan=False).map(lambda v: round(v, 3)),
    st.integers(min_value=0, max_value=W),
    st.sampled_from([1e-05, 0.30000000000000004, 0.0, 12.5]),
)
ring = st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=12).map(
    lambda pts: [v for p in pts for v in p]
)
polygon_geometry = st.builds(
    lambda rings, box: {"polygons": rings, **({"bbox": [1.0, 2, 3.5, 4]} if box else {})},
    st.lists(ring, min_size=1, max_size=3),
    st.booleans(),
)


def other_geometries() -> list[tuple[str, dict]]:
    return [
        (model.BBOX, {"bbox": [1.0, 2.0, 5.0, 4.0]}),
        (model.MASK, {"rle": rle_of(W, H)}),
        (model.MASK, {"rle": rle_of(W, H), "bbox": [3, 2, 6, 4]}),
        (model.KEYPOINTS, {"keypoints": [4, 2, 2, 0, 0, 0], "bbox": [3.0, 1.0, 4.0, 8.0]}),
        (model.KEYPOINTS, {"keypoints": [4, 2, 2, 9.5, 7, 1]}),
        (model.POLYLINE, {"points": [1, 1, 10.5, 4, 20, 2]}),
        (model.CUBOID_2D, {"cuboid": [1, 1, 1, 9, 9, 1, 9, 9, 3, 3, 3, 11, 11, 3, 11, 11]}),
        (
            model.CUBOID_3D,
            {"cuboid_3d": {"position": [1, 2, 3], "dimensions": [1, 1, 1], "rotation": [0, 0, 0]}},
        ),
        (
            model.CUBOID_3D,
            {
                "cuboid_3d": {"position": [1, 2, 3], "dimensions": [1, 1, 1], "rotation": [0, 0, 0]},
                "bbox": [1, 1, 2, 2],
            },
        ),
        (model.CLASSIFICATION, {}),
    ]


def records(labelled: list[tuple[str, dict]], spelling: str | None, attributes: dict):
    item = ItemRecord(key="images/train/a.jpg", width=W, height=H, split="train")
    labels = []
    for n, (kind, geometry) in enumerate(labelled):
        text = SPELLINGS[spelling](geometry) if spelling else None
        assert text is None or json.loads(text) == geometry
        category = "person" if kind == model.KEYPOINTS else "car"
        labels.append(
            LabelRecord(
                item.key,
                category,
                kind,
                json.loads(text) if text else geometry,  # what the reader decoded from the text
                attributes=attributes,
                uid=f"00000000-0000-0000-0000-{n:012d}",
                is_final=n % 3 != 1,
                iscrowd=n % 4 == 2,
                provenance=Provenance(annotator="A-1", source=model.HUMAN),
                geometry_text=text,
            )
        )
    return [(item, labels)]


def written(tmp_path, recs) -> tuple[bytes, list]:
    notes = Notes()
    write_coco(DirectorySink(tmp_path), recs, categories=CATS, notes=notes)
    return (tmp_path / "annotations" / "instances_train.json").read_bytes(), notes.as_list()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    polygons=st.lists(polygon_geometry, min_size=1, max_size=4),
    spelling=st.sampled_from(sorted(SPELLINGS)),
    attributes=st.sampled_from([{}, {"occluded": True}, {"big": 2**70}, {"é": "ü"}]),
)
def test_the_spliced_file_parses_to_the_encoded_one(tmp_path_factory, polygons, spelling, attributes):
    labelled = [(model.POLYGON, g) for g in polygons] + other_geometries()
    reference, reference_notes = written(tmp_path_factory.mktemp("ref"), records(labelled, None, attributes))
    spliced, notes = written(tmp_path_factory.mktemp("splice"), records(labelled, spelling, attributes))
    assert json.loads(spliced) == json.loads(reference)
    assert notes == reference_notes
    # The splice did happen, whichever the spelling.
    assert all(polygons_fragment(SPELLINGS[spelling](g), g["polygons"]) is not None for g in polygons)


def test_pycocotools_decodes_every_spliced_annotation(tmp_path):
    labelled = [(model.POLYGON, {"polygons": [[1, 1, 30.5, 2, 20, 40.25], [40, 40, 50, 40, 45, 47]]})]
    labelled += other_geometries()
    for spelling in SPELLINGS:
        data, _ = written(tmp_path / spelling, records(labelled, spelling, {}))
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(tmp_path / spelling / "annotations" / "instances_train.json"))
        assert len(coco.anns) == len(labelled) - 2  # the classification and the 3D cuboid without a box
        for ann in coco.anns.values():
            assert coco.annToMask(ann).shape == (H, W)
        polygon = next(
            a
            for a in coco.anns.values()
            if a["segmentation"] and isinstance(a["segmentation"], list) and len(a["segmentation"]) == 2
        )
        assert polygon["segmentation"] == [[1, 1, 30.5, 2, 20, 40.25], [40, 40, 50, 40, 45, 47]]


def test_only_a_cut_of_numbers_in_brackets_is_spliced():
    polygons = [[1, 2, 3, 4, 5, 6]]
    assert bytes(orjson.dumps({"s": polygons_fragment('{"polygons": [[1, 2, 3, 4, 5, 6]]}', polygons)})) == (
        b'{"s":[[1,2,3,4,5,6]]}'
    )
    # Compact, as ingest writes PostgreSQL's json column (marketplace.models.fields.TextJSONField).
    assert bytes(orjson.dumps({"s": polygons_fragment('{"polygons":[[1,2.5,3,4,5,6]]}', polygons)})) == (
        b'{"s":[[1,2.5,3,4,5,6]]}'
    )
    for text in (
        None,
        '{"polygons":[[NaN,2,3,4,5,6]]}',  # compact, not JSON's numbers
        '{"polygons": [[NaN, 2, 3, 4, 5, 6]]}',  # not JSON's numbers
        '{"polygons": [[[1, 2], 3, 4, 5, 6]]}',  # nested deeper than rings
        '{"bbox": [1, 2, 3, 4]}',
    ):
        assert polygons_fragment(text, polygons) is None, text


def test_a_geometry_changed_after_reading_must_drop_its_text():
    label = LabelRecord("a", "car", model.POLYGON, {"polygons": [[1, 2, 3, 4, 5, 6]]}, geometry_text="x")
    assert dataclasses.replace(label, geometry_text=None).geometry_text is None
