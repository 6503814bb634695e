"""Issue #13: model.validate_geometry's fast path says exactly what the reference said.

``reference_validate_geometry`` below is validate_geometry as it was before the fast path (a
generator per value for the finiteness check, ``any`` per coordinate for the bounds), kept here
verbatim as the oracle, but for one fix: an int past a float's range is refused as not a number
(it raised OverflowError). Hypothesis draws geometries of every kind whose values are finite, NaN,
infinite, huge, negative, bools, strings, None or lists, in images of known and unknown size, and
the two must give the same messages in the same order -- or raise the same exception.
"""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketplace.formats import model
from marketplace.formats.model import (
    EDGE_TOLERANCE,
    GEOMETRY_TYPES,
    PRIMARY_PART,
    _too_many_points,
)

# -- the oracle: the code before the fast path --------------------------------------------------


def _reference_finite(values) -> bool:
    # The one intended change: an int past a float's range is not finite (it raised OverflowError).
    try:
        return all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )
    except OverflowError:
        return False


def reference_validate_geometry(geometry_type, geometry, width, height) -> list[str]:
    if geometry_type not in GEOMETRY_TYPES:
        return [f"unknown geometry type {geometry_type!r}"]
    errors: list[str] = []
    part = PRIMARY_PART[geometry_type]
    if part and part not in geometry:
        return [f"{geometry_type} label has no {part!r}"]
    too_big = _too_many_points(geometry)
    if too_big:
        return [too_big]
    w = (width or 0) + EDGE_TOLERANCE
    h = (height or 0) + EDGE_TOLERANCE

    def inside(xs, ys, what):
        if width is None or height is None:
            return
        if any(x < -EDGE_TOLERANCE or x > w for x in xs) or any(y < -EDGE_TOLERANCE or y > h for y in ys):
            errors.append(f"{what} lies outside the {width}x{height} image")

    if "bbox" in geometry:
        b = geometry["bbox"]
        if not (isinstance(b, (list, tuple)) and len(b) == 4 and _reference_finite(b)):
            errors.append("bbox must be four numbers [x, y, w, h]")
        elif b[2] <= 0 or b[3] <= 0:
            errors.append(f"bbox has zero or negative size (w={b[2]}, h={b[3]})")
        else:
            inside([b[0], b[0] + b[2]], [b[1], b[1] + b[3]], "bbox")
    for ring in geometry.get("polygons", []) if isinstance(geometry.get("polygons", []), list) else [None]:
        if not (isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0 and _reference_finite(ring)):
            errors.append("each polygon needs at least 3 points as [x1, y1, x2, y2, ...]")
            break
        inside(ring[0::2], ring[1::2], "polygon")
    if "points" in geometry:
        pts = geometry["points"]
        if not (isinstance(pts, list) and len(pts) >= 4 and len(pts) % 2 == 0 and _reference_finite(pts)):
            errors.append("a polyline needs at least 2 points as [x1, y1, x2, y2, ...]")
        else:
            inside(pts[0::2], pts[1::2], "polyline")
    if "cuboid" in geometry:
        c = geometry["cuboid"]
        if not (isinstance(c, list) and len(c) == 16 and _reference_finite(c)):
            errors.append("a 2D cuboid needs 8 corners (16 numbers)")
        else:
            inside(c[0::2], c[1::2], "cuboid")
    if "keypoints" in geometry:
        kp = geometry["keypoints"]
        if not (isinstance(kp, list) and len(kp) % 3 == 0 and kp and _reference_finite(kp)):
            errors.append("keypoints must be [x1, y1, v1, ...] triples")
        elif any(v not in (0, 1, 2) for v in kp[2::3]):
            errors.append("keypoint visibility must be 0, 1 or 2")
        else:
            labelled = [i for i in range(0, len(kp), 3) if kp[i + 2] > 0]
            inside([kp[i] for i in labelled], [kp[i + 1] for i in labelled], "keypoint")
    if "rle" in geometry:
        rle = geometry["rle"]
        if not (isinstance(rle, dict) and "size" in rle and "counts" in rle):
            errors.append("mask RLE needs 'size' [h, w] and 'counts'")
        elif width is not None and height is not None and list(rle["size"]) != [height, width]:
            errors.append(f"mask size {rle['size']} does not match the image ({height}x{width}, as [h, w])")
    if "cuboid_3d" in geometry:
        c3 = geometry["cuboid_3d"]
        ok = isinstance(c3, dict) and all(
            isinstance(c3.get(k), list) and len(c3[k]) == 3 and _reference_finite(c3[k])
            for k in ("position", "dimensions", "rotation")
        )
        if not ok:
            errors.append("a 3D cuboid needs position, dimensions and rotation, three numbers each")
        elif any(d <= 0 for d in c3["dimensions"]):
            errors.append("a 3D cuboid's dimensions must be positive")
    return errors


# -- what Hypothesis draws ------------------------------------------------------------------------


class _Float(float):
    """A float subclass (numpy's float64 is one): the fast path must hand it to the reference."""


# Mostly coordinates near a small image (inside, on the tolerance edge, outside), then the rest.
_coordinate = st.one_of(
    st.integers(min_value=-3, max_value=70),
    st.floats(min_value=-3, max_value=70),
    st.sampled_from([-1.0, -1.0000001, 0, 0.0, -0.0, 33.0, 33.0000001, 1e-300, 2**53 + 1]),
)
_odd_value = st.one_of(
    st.floats(),  # NaN, infinities, huge and tiny
    st.integers(),
    st.sampled_from([10**400, -(10**400), 10**308 * 2, 1.7e308]),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
    st.builds(_Float, st.floats(min_value=-3, max_value=70)),
    st.lists(st.integers(), max_size=2),
)
_value = st.one_of(_coordinate, _coordinate, _coordinate, _odd_value)


def _flat(min_size: int, max_size: int):
    return st.lists(_value, min_size=min_size, max_size=max_size)


_visibility = st.one_of(st.sampled_from([0, 1, 2, 2.0, 0.0, True]), _value)


@st.composite
def _keypoints(draw):
    n = draw(st.integers(min_value=0, max_value=5))
    out: list = []
    for _ in range(n):
        out += [draw(_value), draw(_value), draw(_visibility)]
    if draw(st.booleans()):
        out += draw(st.lists(_value, max_size=2))  # not triples
    return out


_parts = {
    "bbox": st.one_of(_flat(4, 4), st.tuples(_value, _value, _value, _value), _flat(0, 6), _odd_value),
    "polygons": st.one_of(st.lists(_flat(4, 14), max_size=3), _odd_value, st.lists(_odd_value, max_size=2)),
    "points": st.one_of(_flat(2, 10), _odd_value),
    "cuboid": st.one_of(_flat(16, 16), _flat(0, 18), _odd_value),
    "keypoints": st.one_of(_keypoints(), _odd_value),
    "rle": st.one_of(
        st.fixed_dictionaries(
            {"size": st.lists(st.integers(0, 70), max_size=3), "counts": st.text(max_size=3)}
        ),
        st.dictionaries(st.sampled_from(["size", "counts"]), st.integers(), max_size=2),
        _odd_value,
    ),
    "cuboid_3d": st.one_of(
        st.fixed_dictionaries({"position": _flat(3, 3), "dimensions": _flat(3, 3), "rotation": _flat(3, 3)}),
        st.dictionaries(st.sampled_from(["position", "dimensions", "rotation"]), _flat(2, 4)),
        _odd_value,
    ),
}


@st.composite
def _geometry(draw):
    names = draw(st.lists(st.sampled_from(sorted(_parts)), unique=True, max_size=3))
    return {name: draw(_parts[name]) for name in names}


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the same exception, e.g. OverflowError for an int past float range
        return ("raised", type(exc), str(exc))


# -- the properties -------------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(
    kind=st.one_of(st.sampled_from(GEOMETRY_TYPES), st.just("hexagon")),
    geometry=_geometry(),
    width=st.one_of(st.none(), st.integers(min_value=1, max_value=64)),
    height=st.one_of(st.none(), st.integers(min_value=1, max_value=64)),
)
def test_the_fast_path_refuses_exactly_what_the_reference_refuses(kind, geometry, width, height):
    assert _outcome(model.validate_geometry, kind, geometry, width, height) == _outcome(
        reference_validate_geometry, kind, geometry, width, height
    )


@settings(max_examples=600, deadline=None)
@given(values=st.one_of(st.lists(_value, max_size=12), st.tuples(_value, _value), st.lists(_odd_value)))
def test_finite_agrees_with_the_value_by_value_check(values):
    assert _outcome(model._finite, values) == _outcome(_reference_finite, values)


def test_a_valid_polygon_on_the_tolerance_edge_is_accepted_and_past_it_refused():
    ring = [-1.0, 0, 33.0, 0, 33.0, 25.0]  # 32x24 image: x up to 33, y up to 25
    assert model.validate_geometry(model.POLYGON, {"polygons": [ring]}, 32, 24) == []
    past = [-1.0, 0, 33.0, 0, 33.0, 25.000001]
    assert model.validate_geometry(model.POLYGON, {"polygons": [past]}, 32, 24) == [
        "polygon lies outside the 32x24 image"
    ]


def test_a_float_subclass_and_a_bool_are_judged_as_before():
    assert model._finite([_Float(1.5), 2]) is True
    assert model._finite([1.0, True]) is False
    assert model._finite([1.0, float("nan")]) is False


def test_an_int_past_a_floats_range_is_refused_as_a_number_not_raised_on():
    huge = 10**400
    assert model.validate_geometry(model.BBOX, {"bbox": [huge, 0, 1, 1]}, 32, 24) == [
        "bbox must be four numbers [x, y, w, h]"
    ]
    assert model.validate_geometry(model.POLYGON, {"polygons": [[0, 0, 1, 0, 1, huge]]}, None, None) == [
        "each polygon needs at least 3 points as [x1, y1, x2, y2, ...]"
    ]


# Rings near the edges of a 40-44 px image, so that each side's check decides some draws.
_near = st.one_of(st.integers(-2, 45), st.floats(-1.5, 45))
_near_rings = st.lists(
    st.integers(3, 6).flatmap(lambda n: st.lists(_near, min_size=2 * n, max_size=2 * n)),
    min_size=1,
    max_size=2,
)
_inside_box = st.tuples(st.floats(-1, 20), st.floats(-1, 20), st.floats(0.5, 14), st.integers(1, 14)).map(
    list
)  # inside a 40x40 image: the rings then decide


@settings(max_examples=1500, deadline=None)
# A ring past each side in turn (the box inside), and one on the tolerance edge: always tried.
@example(bbox=[0, 0, 5, 5], rings=[[0, 0, 5, 0, -1.5, 5]], width=40, height=40)
@example(bbox=[0, 0, 5, 5], rings=[[0, 0, 5, 0, 41.5, 5]], width=40, height=40)
@example(bbox=[0, 0, 5, 5], rings=[[0, 0, 5, -1.5, 5, 5]], width=40, height=40)
@example(bbox=[0, 0, 5, 5], rings=[[0, 0, 5, 0, 5, 41.5]], width=40, height=40)
@example(bbox=[0, 0, 5, 5], rings=[[-1, -1, 41, -1, 41, 41]], width=40, height=40)
@given(
    bbox=st.one_of(_parts["bbox"], _inside_box, _inside_box),
    rings=st.one_of(
        _parts["polygons"],
        st.lists(
            st.integers(3, 7).flatmap(lambda n: st.lists(_coordinate, min_size=2 * n, max_size=2 * n)),
            min_size=1,
            max_size=3,
        ),
        _near_rings,
        _near_rings,
    ),
    width=st.one_of(
        st.none(), st.integers(min_value=1, max_value=64), st.integers(min_value=40, max_value=70)
    ),
    height=st.one_of(
        st.none(), st.integers(min_value=1, max_value=64), st.integers(min_value=40, max_value=70)
    ),
)
def test_polygon_fits_answers_as_validate_geometry(bbox, rings, width, height):
    # Mostly valid draws (a box and rings of coordinates), so that both answers are common.
    reference = _outcome(
        model.validate_geometry, model.POLYGON, {"bbox": bbox, "polygons": rings}, width, height
    )
    expected = ("ok", not reference[1]) if reference[0] == "ok" else reference
    assert _outcome(model.polygon_fits, bbox, rings, width, height) == expected


def test_polygon_fits_on_the_edges_it_writes_out():
    ring = [-1.0, 0, 33.0, 0, 33.0, 25.0]
    assert model.polygon_fits([0, 0, 33, 25], [ring], 32, 24) is True
    assert model.polygon_fits([0, 0, 33.1, 25], [ring], 32, 24) is False  # the box past the edge
    assert model.polygon_fits([0, 0, 0, 5], [ring], None, None) is False  # a box of no width
    assert model.polygon_fits([0, 0, 1, 1], [[0, 0, 1, 0, 1, 10**400]], None, None) is False
    assert model.polygon_fits([0, 0, 1, 1], [[0, 0, 1, 0, 1, float("nan")]], None, None) is False
    assert model.polygon_fits([0, 0, 1, 1], [[0, 0, 1, 0, 1]], None, None) is False  # odd length
    assert model.polygon_fits([0, 0, 1, 1], [[0, 0, 1, 0, 1, True]], None, None) is False  # a bool
