"""Lineage matching on columns: uid, source id, geometry (one-to-one), relabel; random edits recovered."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.deliveries import lineage
from marketplace.deliveries.lineage import (
    BY_GEOMETRY,
    BY_RELABEL,
    BY_SOURCE_ID,
    BY_UID,
    NEW,
    Side,
    Thresholds,
)


def box(x, y, w=10.0, h=8.0, **extra):
    return {"kind": "bbox", "geometry": {"bbox": [x, y, w, h]}, **extra}


def side(rows, *, fresh=False):
    """Columns from rows; ``fresh``: the uids are new (the source had none of its own)."""
    return Side.from_rows(
        {"uid": r.get("uid") or uuid.uuid4(), "item": "a.jpg", "category": "car", "has_uid": not fresh, **r}
        for r in rows
    )


def test_it_keeps_a_label_by_its_uid_wherever_it_moved():
    u = uuid.uuid4()
    old = side([box(1, 1, uid=u)])
    new = side([box(30, 30, uid=u)])
    m = lineage.match_labels(old, new)
    assert m.old.tolist() == [0] and m.method.tolist() == [BY_UID]


def test_a_fresh_uid_does_not_count_as_a_match_even_if_equal():
    u = uuid.uuid4()
    old = side([box(1, 1, uid=u)])
    new = side([box(40, 30, uid=u)], fresh=True)
    assert lineage.match_labels(old, new).method.tolist() == [NEW]


def test_it_matches_a_nudged_box_by_geometry_and_refuses_a_different_object():
    old = side([box(1, 2), box(40, 30)])
    new = side([box(2, 2), box(20, 20)], fresh=True)
    m = lineage.match_labels(old, new)
    assert m.old.tolist() == [0, -1]
    assert m.method.tolist() == [BY_GEOMETRY, NEW]
    assert m.removed.tolist() == [1]
    assert 0.7 < m.similarity[0] < 1


def test_two_near_identical_boxes_are_matched_one_to_one():
    # Both new boxes overlap both old ones above the threshold; each old box continues exactly once,
    # and the pairing that maximises the summed IoU wins.
    old = side([box(10, 10, 20, 20), box(11, 10, 20, 20)])
    new = side([box(11.2, 10, 20, 20), box(10.1, 10, 20, 20)], fresh=True)
    m = lineage.match_labels(old, new)
    assert sorted(m.old.tolist()) == [0, 1]
    assert m.old.tolist() == [1, 0]
    assert m.removed.size == 0


def test_a_class_change_with_the_same_geometry_is_a_relabel():
    old = side([box(5, 5), box(30, 5)])
    new = side([box(5, 5, category="person"), box(30, 5)], fresh=True)
    m = lineage.match_labels(old, new)
    assert m.old.tolist() == [0, 1]
    assert m.method.tolist() == [BY_RELABEL, BY_GEOMETRY]


def test_a_relabel_needs_the_same_geometry_not_just_an_overlap():
    old = side([box(5, 5, 20, 20)])
    new = side([box(9, 5, 20, 20, category="person")], fresh=True)  # IoU 0.67: the same car? not sure
    assert lineage.match_labels(old, new).method.tolist() == [NEW]


def test_source_ids_match_within_an_item_when_consistent():
    old = side([box(1, 1, source_id="7"), box(40, 30, source_id="8")])
    new = side([box(35, 1, source_id="7"), box(40, 30, category="person", source_id="8")], fresh=True)
    m = lineage.match_labels(old, new)
    # id 7: same class, moved far: still the same label (the tool says so); id 8: same box, new class.
    assert m.old.tolist() == [0, 1] and m.method.tolist() == [BY_SOURCE_ID, BY_SOURCE_ID]
    assert m.source_ids == "used"


def test_renumbered_source_ids_are_ignored_and_geometry_decides():
    old = side([box(1, 1, source_id="1"), box(40, 30, source_id="2", category="person")])
    # A re-export that numbered the shapes the other way round: every id pair is inconsistent.
    new = side(
        [box(40, 30, source_id="1", category="person"), box(1, 1, source_id="2")],
        fresh=True,
    )
    m = lineage.match_labels(old, new)
    assert m.source_ids == "ignored"
    assert m.old.tolist() == [1, 0] and m.method.tolist() == [BY_GEOMETRY, BY_GEOMETRY]


def test_labels_on_other_items_or_of_another_annotator_never_match():
    old = side([box(1, 1, item="b.jpg"), box(1, 1, group="ann-2")])
    new = side([box(1, 1), box(1, 1, group="ann-1")], fresh=True)
    m = lineage.match_labels(old, new)
    assert m.old.tolist() == [-1, -1] and m.removed.tolist() == [0, 1]


def test_polygons_match_by_mask_iou():
    ring = [10, 10, 40, 10, 40, 40, 10, 40]
    old = side([{"kind": "polygon", "geometry": {"polygons": [ring]}, "height": 64, "width": 64}])
    nudged = [v + 1 for v in ring]
    far = [v + 20 for v in ring]
    new = side(
        [
            {"kind": "polygon", "geometry": {"polygons": [far]}, "height": 64, "width": 64},
            {"kind": "polygon", "geometry": {"polygons": [nudged]}, "height": 64, "width": 64},
        ],
        fresh=True,
    )
    m = lineage.match_labels(old, new)
    assert m.old.tolist() == [-1, 0] and m.method[1] == BY_GEOMETRY


def test_polylines_and_points_match_by_distance():
    old = side(
        [
            {"kind": "polyline", "geometry": {"points": [0, 0, 50, 40]}},
            {"kind": "keypoints", "geometry": {"keypoints": [20, 20, 2]}},
        ]
    )
    new = side(
        [
            {"kind": "polyline", "geometry": {"points": [3, 0, 53, 41]}},
            {"kind": "keypoints", "geometry": {"keypoints": [22, 21, 2]}},
        ],
        fresh=True,
    )
    m = lineage.match_labels(old, new)
    assert m.old.tolist() == [0, 1]
    far = side([{"kind": "polyline", "geometry": {"points": [0, 20, 50, 60]}}], fresh=True)
    assert lineage.match_labels(old, far).old.tolist() == [-1]
    # A stricter threshold set for the delivery refuses the 3 px shift.
    strict = lineage.match_labels(old, new, thresholds=Thresholds(distance=2.5))
    assert strict.old.tolist() == [-1, 1]


def test_thresholds_are_parsed_with_clear_errors():
    assert Thresholds.parse({"iou": 0.7}).iou == 0.7
    for bad, word in (
        ({"iou": 1.5}, "iou"),
        ({"iou": "x"}, "number"),
        ({"nope": 1}, "unknown"),
        ([], "object"),
    ):
        try:
            Thresholds.parse(bad)
        except ValueError as error:
            assert word in str(error)
        else:
            raise AssertionError(f"{bad} accepted")


# --------------------------------------------------------------------------- property

CELL = 100  # objects live in separate cells of a grid, so each edit has one right answer


@st.composite
def edited_versions(draw):
    n_items = draw(st.integers(1, 4))
    old_rows = []
    free_cells = []
    for item in range(n_items):
        cells = draw(st.lists(st.integers(0, 15), min_size=0, max_size=8, unique=True))
        for c in range(16):
            (free_cells if c not in cells else []).append((item, c))
        for c in cells:
            x, y = (c % 4) * CELL + draw(st.integers(5, 30)), (c // 4) * CELL + draw(st.integers(5, 30))
            w, h = draw(st.integers(30, 60)), draw(st.integers(30, 60))
            old_rows.append(
                {
                    "item": f"{item}.jpg",
                    "category": draw(st.sampled_from(["car", "person"])),
                    "bbox": [float(x), float(y), float(w), float(h)],
                }
            )
    edits = draw(
        st.lists(
            st.sampled_from(["keep", "move", "relabel", "delete"]),
            min_size=len(old_rows),
            max_size=len(old_rows),
        )
    )
    added = draw(st.lists(st.sampled_from(free_cells), unique=True, max_size=5)) if free_cells else []
    shuffle = draw(st.randoms(use_true_random=False))
    return old_rows, edits, added, shuffle


@settings(max_examples=60, deadline=None)
@given(edited_versions())
def test_matching_recovers_random_edits(case):
    old_rows, edits, added, rnd = case
    old = Side.from_rows(
        {
            "uid": uuid.uuid4(),
            "item": r["item"],
            "category": r["category"],
            "kind": "bbox",
            "geometry": {"bbox": r["bbox"]},
        }
        for r in old_rows
    )
    new_rows, truth = [], []  # truth: the old index each new row continues, or -1
    for i, (row, edit) in enumerate(zip(old_rows, edits, strict=True)):
        x, y, w, h = row["bbox"]
        if edit == "delete":
            continue
        if edit == "move":
            x, y = x + rnd.choice([-3, -1, 1, 2, 3]), y + rnd.choice([-2, 0, 2])
        category = row["category"]
        if edit == "relabel":
            category = "person" if category == "car" else "car"
        new_rows.append({"item": row["item"], "category": category, "bbox": [x, y, w, h]})
        truth.append((i, BY_RELABEL if edit == "relabel" else BY_GEOMETRY))
    for item, c in added:
        new_rows.append(
            {
                "item": f"{item}.jpg",
                "category": "car",
                "bbox": [(c % 4) * CELL + 10.0, (c // 4) * CELL + 10.0, 40.0, 40.0],
            }
        )
        truth.append((-1, NEW))
    order = list(range(len(new_rows)))
    rnd.shuffle(order)
    new = Side.from_rows(
        {
            "uid": uuid.uuid4(),
            "has_uid": False,
            "item": new_rows[k]["item"],
            "category": new_rows[k]["category"],
            "kind": "bbox",
            "geometry": {"bbox": new_rows[k]["bbox"]},
        }
        for k in order
    )
    m = lineage.match_labels(old, new)
    assert m.old.tolist() == [truth[k][0] for k in order]
    assert m.method.tolist() == [truth[k][1] for k in order]
    deleted = sorted(i for i, e in enumerate(edits) if e == "delete")
    assert sorted(m.removed.tolist()) == deleted


def test_ids_renumbered_within_one_class_are_not_trusted():
    old = side([box(1, 1, source_id="1"), box(40, 30, source_id="2")])
    new = side([box(40, 30, source_id="1"), box(1, 1, source_id="2")], fresh=True)
    m = lineage.match_labels(old, new)
    assert m.source_ids == "ignored" and m.old.tolist() == [1, 0]
    assert m.method.tolist() == [BY_GEOMETRY, BY_GEOMETRY]
