"""Issue #13: the COCO reader's one-check path for a box and its polygons agrees with the part-by-part path.

``_Reader.geometry`` takes ``valid_polygon`` when it answers and ``geometry_parts`` (the reference,
which checks each part where it is) otherwise. Hypothesis draws annotations whose box, rings and
keypoints may be valid, outside the image, NaN, infinite, huge, bools, strings or of the wrong
shape: whenever the quick path answers, the reference gives the same geometry and type and finds
nothing wrong; whenever the reference finds a problem, the quick path has declined.
"""

from __future__ import annotations

import contextlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketplace.formats import coco, model
from marketplace.formats.archive import ProblemLog

_coordinate = st.one_of(
    st.integers(min_value=-3, max_value=40),
    st.floats(min_value=-3, max_value=40),
    st.sampled_from([-1.0, 33.0, 25.0, 33.5]),
)
_odd = st.one_of(
    st.floats(),
    st.sampled_from([10**400, float("nan"), float("inf"), True, "1", None]),
    st.integers(),
)
_value = st.one_of(_coordinate, _coordinate, _coordinate, _coordinate, _odd)
# Mostly well-formed shapes (so the valid and nearly valid cases are common), some of any shape.
_good_ring = st.integers(3, 6).flatmap(lambda n: st.lists(_coordinate, min_size=2 * n, max_size=2 * n))
_ring = st.one_of(_good_ring, _good_ring, _good_ring, st.lists(_value, min_size=4, max_size=12))
_good_bbox = st.tuples(st.floats(-1, 20), st.floats(-1, 20), st.floats(0.5, 14), st.floats(0.5, 14)).map(list)
_bbox = st.one_of(
    _good_bbox,
    _good_bbox,
    _good_bbox,
    st.lists(_value, min_size=4, max_size=4),
    st.lists(_value, max_size=5),
    st.tuples(_value, _value, _value, _value),
    st.none(),
    st.just([]),
    _odd,
)
_segmentation = st.one_of(
    st.lists(_ring, min_size=1, max_size=3),
    st.lists(_ring, min_size=1, max_size=3),
    st.lists(st.one_of(_ring, _odd), max_size=2),
    st.none(),
    st.just([]),
    st.fixed_dictionaries({"size": st.just([24, 32]), "counts": st.just("0")}),
    _odd,
)


@st.composite
def _annotation(draw):
    ann: dict = {"id": 1, "image_id": 1, "category_id": 1}
    for key, strategy in (("bbox", _bbox), ("segmentation", _segmentation)):
        if draw(st.integers(0, 5)):
            ann[key] = draw(strategy)
    if draw(st.integers(0, 4)) == 0:
        ann["keypoints"] = draw(st.one_of(st.just([]), st.lists(_value, max_size=6), st.none()))
    if draw(st.integers(0, 4)) == 0:
        ann["segmentation_is_box"] = draw(st.sampled_from([True, False, 1]))
        if draw(st.integers(0, 3)) and isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4:
            with contextlib.suppress(TypeError, OverflowError):
                ann["segmentation"] = [model.box_ring(ann["bbox"])]
    return ann


class _Source:
    def names(self) -> list[str]:
        return []


def _reader() -> coco._Reader:
    return coco._Reader(_Source(), [], ProblemLog())


@settings(max_examples=800, deadline=None)
# A second ring that is wrong, and our writer's marked box ring: rare draws, so always tried.
@example(
    ann={"bbox": [1, 1, 2, 2], "segmentation": [[1, 1, 2, 2, 3, 3], [1, "x"]]},
    size=None,
    keypoint_category=False,
)
@example(
    ann={"bbox": [1, 1, 2, 2], "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]], "segmentation_is_box": True},
    size=(32, 24),
    keypoint_category=False,
)
@given(
    ann=_annotation(),
    size=st.one_of(st.none(), st.tuples(st.integers(1, 40), st.integers(1, 40))),
    keypoint_category=st.booleans(),
)
def test_the_quick_path_answers_only_what_the_part_by_part_path_accepts_unchanged(
    ann, size, keypoint_category
):
    image = None if size is None else coco._Image("images/a.png", *size)
    names = ["nose", "eye"] if keypoint_category else []
    category = model.CategoryDef(name="cat", source_id=1, keypoints=list(names))
    quick = coco._Reader.valid_polygon(ann, image)
    f = coco._File(name="a.json", split="", root="", doc={})
    reader = _reader()
    reference = reader.geometry_parts(f, "/annotations/0", ann, category, image)
    if quick is not None:
        assert quick == reference
        assert list(quick[0]) == list(reference[0])  # the parts in the same order (the ledger hashes it)
        assert list(reader.problems) == []
    if reader.problems or not reference[2]:
        assert quick is None
    # and what the reader uses is always the reference's answer
    again = _reader()
    assert again.geometry(f, "/annotations/0", ann, category, image) == reference
    assert list(again.problems) == list(reader.problems)


def test_a_valid_box_and_polygon_takes_the_quick_path_and_one_outside_does_not():
    image = coco._Image("images/a.png", 32, 24)
    ann = {"bbox": [1, 1, 10, 10], "segmentation": [[1, 1, 11, 1, 11, 11]]}
    assert coco._Reader.valid_polygon(ann, image) == (
        {"bbox": [1, 1, 10, 10], "polygons": [[1, 1, 11, 1, 11, 11]]},
        model.POLYGON,
        True,
    )
    ann["segmentation"][0][2] = 40
    assert coco._Reader.valid_polygon(ann, image) is None
