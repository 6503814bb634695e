"""Issue #14, amplification: one shape's size is bounded in every format; Label Studio and
provenance.jsonl decode strictly (NaN, 1e400, huge integers, NUL, lone surrogates refused)."""

from __future__ import annotations

import io
import json
import random

import pytest

from marketplace.formats import model
from marketplace.formats.provenance import read_provenance

from .builders import zip_source
from .test_labelstudio import _annotation, _deliver, _read, _result, _task

# -- the shared rule, in the neutral model: the readers all call validate_geometry ------------


def _ring(points: int) -> list[float]:
    rng = random.Random(points)
    return [round(rng.uniform(0, 60), 2) for _ in range(2 * points)]


@pytest.mark.parametrize(
    ("kind", "geometry", "says"),
    [
        (model.POLYGON, {"polygons": [_ring(model.MAX_SHAPE_POINTS + 1)]}, "per shape"),
        (model.POLYGON, {"polygons": [_ring(3)] * (model.MAX_RINGS + 1)}, "polygons in one label"),
        (model.POLYLINE, {"points": _ring(model.MAX_SHAPE_POINTS + 1)}, "per shape"),
        (model.KEYPOINTS, {"keypoints": [1, 1, 2] * (model.MAX_KEYPOINTS + 1)}, "keypoints in one label"),
    ],
)
def test_a_shape_past_the_limit_is_one_short_error(kind, geometry, says):
    errors = model.validate_geometry(kind, geometry, 64, 64)
    assert len(errors) == 1 and says in errors[0] and len(errors[0]) < 120


def test_a_shape_at_the_limit_is_checked_as_usual():
    ring = _ring(model.MAX_SHAPE_POINTS)
    assert model.validate_geometry(model.POLYGON, {"polygons": [ring]}, 64, 64) == []


# -- Label Studio --------------------------------------------------------------------------------


def test_a_label_studio_polygon_of_too_many_points_is_refused(tmp_path):
    n = model.MAX_SHAPE_POINTS + 1
    value = {"points": [[i % 90 + 1, (i * 7) % 90 + 1] for i in range(n)], "polygonlabels": ["road"]}
    root = _deliver(
        tmp_path, [_task(1, "/data/upload/1/a.jpg", [_annotation(10, [_result("polygonlabels", value)])])]
    )
    parsed, _, labels = _read(root)
    problems = parsed.problems
    assert labels == []
    assert [p.code for p in problems] == ["invalid_geometry"] and "per shape" in problems[0].message


RAW_VALUES = {
    "nan": "NaN",
    "infinity": "-Infinity",
    "float_overflow": "1e400",
    "5000_digit_int": "9" * 5000,
    "nul_escape": '"a\\u0000b"',
    "lone_surrogate": '"\\udc00"',
}


@pytest.mark.parametrize("raw", list(RAW_VALUES.values()), ids=list(RAW_VALUES))
def test_label_studio_refuses_unrepresentable_values_as_invalid_json(tmp_path, raw):
    value = {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["car"]}
    task = _task(1, "/data/upload/1/a.jpg", [_annotation(10, [_result("rectanglelabels", value)])])
    task["meta"] = "__X__"
    root = _deliver(tmp_path, [task])
    text = (root / "export.json").read_text().replace('"__X__"', raw)
    (root / "export.json").write_text(text)

    parsed, _, labels = _read(root)

    assert labels == []
    assert [p.code for p in parsed.problems] == ["invalid_json"]
    assert len(parsed.problems[0].message) < 200  # names the problem, does not echo the value


def test_a_well_formed_escape_in_label_studio_is_fine(tmp_path):
    value = {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["caf\u00e9"]}
    root = _deliver(
        tmp_path, [_task(1, "/data/upload/1/a.jpg", [_annotation(10, [_result("rectanglelabels", value)])])]
    )
    assert "\\u00e9" in (root / "export.json").read_text()  # json.dumps escapes it
    parsed, _, labels = _read(root)
    assert parsed.problems == [] and labels[0].category == "caf\u00e9"


# -- provenance.jsonl ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", list(RAW_VALUES.values()), ids=list(RAW_VALUES))
def test_provenance_refuses_unrepresentable_values_per_line(raw):
    good = json.dumps({"label": "a", "annotator": "ann-1"})
    bad = '{"label": "b", "annotator": "ann-2", "note": __X__}'.replace("__X__", raw)
    table, _, problems = read_provenance(io.BytesIO(f"{good}\n{bad}\n".encode()))
    assert [(p.code, p.line) for p in problems] == [("invalid_json", 2)]
    assert "a" in table and "b" not in table


# -- COCO: a JSON too big by its declared size is never read -------------------------------------


def test_a_coco_json_over_the_limit_is_refused_by_its_declared_size_before_reading(monkeypatch):
    from marketplace.formats import coco

    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "car"}]}
    text = json.dumps(doc) + " " * 400_000  # 400 kB, deflates to almost nothing
    source = zip_source({"annotations/instances_train.json": text})
    assert source.size("annotations/instances_train.json") > 100_000

    def never(*args, **kwargs):
        raise AssertionError("the JSON was read")

    monkeypatch.setattr(coco, "safe_load_json", never)
    with pytest.raises(model.FormatError) as refused:
        list(coco.read_coco(source, max_json_bytes=100_000).items)
    assert [p.code for p in refused.value.problems] == ["too_large"]


def test_the_default_json_limit_is_512_mib():
    from django.conf import settings

    from marketplace.formats import coco

    assert coco.DEFAULT_MAX_JSON_BYTES == settings.DELIVERY_MAX_JSON_BYTES == 512 * 1024**2
