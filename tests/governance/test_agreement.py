"""Inter-annotator agreement: checked against scikit-learn, statsmodels, krippendorff and pycocotools."""

import itertools

import krippendorff
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from governance.quality import agreement as ag
from marketplace.formats import model as fmt
from tests import factories as f

from ..conftest import build_version
from .quality_support import DISPUTED, multi_annotated_version

TOLERANCE = 1e-9


def noisy_ratings(rng, raters, units, values, agree=0.7):
    truth = rng.integers(0, values, units)
    return np.where(rng.random((raters, units)) < agree, truth, rng.integers(0, values, (raters, units)))


# --------------------------------------------------------------------------- nominal measures


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_is_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    a, b = noisy_ratings(rng, 2, 300, 2 + seed)
    assert ag.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=TOLERANCE)


def test_cohen_kappa_skips_units_either_rater_left_out():
    rng = np.random.default_rng(11)
    a, b = noisy_ratings(rng, 2, 400, 4)
    a_missing = np.where(rng.random(400) < 0.2, ag.MISSING, a)
    both = a_missing >= 0
    assert ag.cohen_kappa(a_missing, b) == pytest.approx(cohen_kappa_score(a[both], b[both]), abs=TOLERANCE)


@pytest.mark.parametrize(("raters", "values"), [(2, 2), (3, 3), (5, 4), (7, 6)])
def test_fleiss_kappa_is_statsmodels(raters, values):
    rng = np.random.default_rng(raters * 10 + values)
    ratings = noisy_ratings(rng, raters, 250, values, agree=0.6)
    table, _ = aggregate_raters(ratings.T)
    assert ag.fleiss_kappa(ag.value_counts(ratings)) == pytest.approx(
        statsmodels_fleiss(table), abs=TOLERANCE
    )


def test_fleiss_kappa_refuses_units_with_different_numbers_of_ratings():
    with pytest.raises(ValueError, match="same number"):
        ag.fleiss_kappa([[2, 1], [1, 0]])


@pytest.mark.parametrize(
    ("raters", "values", "missing"), [(2, 2, 0.0), (3, 4, 0.2), (4, 5, 0.4), (6, 3, 0.6)]
)
def test_krippendorff_alpha_is_the_packages_with_missing_ratings(raters, values, missing):
    rng = np.random.default_rng(raters + values)
    data = noisy_ratings(rng, raters, 500, values).astype(float)
    data[rng.random(data.shape) < missing] = np.nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert ag.krippendorff_alpha_nominal(data) == pytest.approx(expected, abs=TOLERANCE)
    assert ag.krippendorff_alpha_nominal(ag.as_codes(data)) == pytest.approx(expected, abs=TOLERANCE)


def test_krippendorff_alpha_on_the_packages_own_example_and_on_words():
    nan = np.nan
    numbers = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    assert ag.krippendorff_alpha_nominal(numbers) == pytest.approx(0.691358, abs=1e-6)
    words = [
        ["low", "mid", None, "high", "low", "mid"],
        ["low", "mid", "mid", "high", None, "high"],
        [None, "mid", "mid", "high", "low", "low"],
    ]
    codes, values = ag.encode_nominal(words)
    as_strings = np.array([[w if w is not None else np.nan for w in row] for row in words], dtype=object)
    expected = krippendorff.alpha(reliability_data=as_strings.astype(str), level_of_measurement="nominal")
    assert sorted(values) == ["high", "low", "mid"]
    assert ag.krippendorff_alpha_nominal(codes) == pytest.approx(expected, abs=TOLERANCE)


def test_agreement_is_undefined_not_perfect_when_only_one_value_was_ever_given():
    same = np.zeros((3, 20), dtype=np.int64)
    assert np.isnan(ag.krippendorff_alpha_nominal(same))
    assert np.isnan(ag.cohen_kappa(same[0], same[1]))
    assert ag.nominal_agreement(same, ["a", "b", "c"])["krippendorff_alpha"] is None


def test_true_and_one_are_different_values():
    codes, values = ag.encode_nominal([[True, 1, "1"], [True, 1, "1"]])
    assert len(values) == 3 and codes[0].tolist() == [0, 1, 2]


def test_the_nominal_summary_names_each_pair_of_raters():
    rng = np.random.default_rng(3)
    ratings = noisy_ratings(rng, 3, 100, 3)
    summary = ag.nominal_agreement(ratings, ["A-1", "A-2", "A-3"])
    assert [(k["a"], k["b"]) for k in summary["cohen_kappa"]] == [
        ("A-1", "A-2"),
        ("A-1", "A-3"),
        ("A-2", "A-3"),
    ]
    assert summary["cohen_kappa"][0]["kappa"] == pytest.approx(
        cohen_kappa_score(ratings[0], ratings[1]), abs=1e-6
    )
    assert summary["fleiss_units"] == 100 and summary["units"] == 100


# --------------------------------------------------------------------------- geometry similarity


def test_box_iou_of_boxes_drawn_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]], dtype=float)
    assert ag.box_iou(a, b).tolist() == pytest.approx([1.0, 50 / 150, 0.0, 0.0])


def test_box_iou_is_pycocotools_iou():
    rng = np.random.default_rng(5)
    a = np.c_[rng.uniform(0, 100, (50, 2)), rng.uniform(5, 60, (50, 2))]
    b = a + rng.normal(0, 8, a.shape)
    b[:, 2:] = np.abs(b[:, 2:]) + 1
    expected = np.diag(mask_utils.iou(b.tolist(), a.tolist(), [0] * 50))
    assert ag.box_iou(a, b) == pytest.approx(expected, abs=TOLERANCE)


def test_keypoint_similarity_is_pycocotools_oks():
    rng = np.random.default_rng(9)
    sigmas = ag.COCO_PERSON_SIGMAS
    gts, dts, ours = [], [], []
    for i in range(20):
        base = np.c_[rng.uniform(50, 300, (17, 2)), np.full(17, 2)]
        moved = base.copy()
        moved[:, :2] += rng.normal(0, 4, (17, 2))
        box = [40.0, 40.0, 280.0, 280.0]
        area = box[2] * box[3]
        gts.append({"id": i + 1, "image_id": 1, "category_id": 1, "keypoints": base.ravel().tolist(), "bbox": box,
                    "area": area, "iscrowd": 0, "num_keypoints": 17})  # fmt: skip
        dts.append(
            {"id": i + 1, "image_id": 1, "category_id": 1, "keypoints": moved.ravel().tolist(), "score": 1.0}
        )
        ours.append(ag.keypoint_similarity(base[None], moved[None], np.array([area]), sigmas)[0])
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "width": 400, "height": 400}],
        "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)], "skeleton": []}],
        "annotations": gts,
    }
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(dts), iouType="keypoints")
    evaluator.params.imgIds = [1]
    evaluator.params.maxDets = [100]
    evaluator._prepare()
    matrix = np.asarray(evaluator.computeOks(1, 1))  # detections x ground truths, detections by score order
    by_id = {
        d["id"]: row
        for d, row in zip(sorted(evaluator._dts[1, 1], key=lambda d: -d["score"]), matrix, strict=True)
    }
    expected = [by_id[i + 1][i] for i in range(20)]
    assert np.array(ours) == pytest.approx(expected, abs=TOLERANCE)


def test_a_keypoint_only_one_annotator_labelled_counts_against_agreement():
    a = np.array([[[10, 10, 2], [20, 20, 2]]], dtype=float)
    b = np.array([[[10, 10, 2], [0, 0, 0]]], dtype=float)
    assert ag.keypoint_similarity(a, b, np.array([400.0]), np.array([0.05, 0.05]))[0] == pytest.approx(0.5)


def test_mask_iou_of_polygons_and_rles():
    square = {"polygons": [[0, 0, 10, 0, 10, 10, 0, 10]]}
    shifted = {"polygons": [[5, 0, 15, 0, 15, 10, 5, 10]]}
    rle_a = ag.rle_of(square, fmt.POLYGON, 20, 20)
    encoded = mask_utils.encode(
        np.asfortranarray(
            (np.arange(20)[None, :] >= 5) & (np.arange(20)[None, :] < 15) & (np.arange(20)[:, None] < 10)
        ).astype(np.uint8)
    )
    as_stored = {"rle": {"size": encoded["size"], "counts": encoded["counts"].decode()}}
    rle_b = ag.rle_of(as_stored, fmt.MASK, 20, 20)
    rle_c = ag.rle_of(shifted, fmt.POLYGON, 20, 20)
    iou = ag.mask_iou_pairs([rle_a, rle_b, rle_c], np.array([0, 0, 1]), np.array([1, 2, 2]))
    assert iou[0] == pytest.approx(iou[1])
    assert iou[2] == pytest.approx(1.0, abs=0.05)
    assert 0.2 < iou[0] < 0.45


# --------------------------------------------------------------------------- matching


def test_matching_is_optimal_where_greedy_would_lose_a_match():
    # A0 overlaps B0 best (0.9) but also B1 (0.6); A1 overlaps only B0 (0.65). Greedy keeps A0-B0
    # and leaves A1 alone; the optimum pairs A0-B1 and A1-B0.
    ia, jb = np.array([0, 0, 1]), np.array([0, 1, 0])
    sim = np.array([0.9, 0.6, 0.65])
    ma, mb, s = ag.match_optimal(ia, jb, sim, np.zeros(3, dtype=np.int64), 0.5)
    assert sorted(zip(ma.tolist(), mb.tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert s.sum() == pytest.approx(1.25)


def test_matching_gives_what_a_plain_hungarian_gives_on_crowded_scenes():
    rng = np.random.default_rng(21)
    items, per = 60, 6
    a = np.c_[rng.uniform(0, 60, (items * per, 2)), rng.uniform(20, 40, (items * per, 2))]
    b = a + rng.normal(0, 6, a.shape)
    key = np.repeat(np.arange(items), per)
    ia, jb = ag.cross_pairs(key, key)
    sim = ag.box_iou(a[ia], b[jb])
    ma, mb, s = ag.match_optimal(ia, jb, sim, key[ia], 0.5)
    total_expected, count_expected = 0.0, 0
    for k in range(items):
        rows = np.arange(k * per, (k + 1) * per)
        grid = ag.box_iou(np.repeat(a[rows], per, axis=0), np.tile(b[rows], (per, 1))).reshape(per, per)
        grid = np.where(grid >= 0.5, grid, 0.0)
        r, c = linear_sum_assignment(grid, maximize=True)
        good = grid[r, c] >= 0.5
        total_expected += grid[r, c][good].sum()
        count_expected += int(good.sum())
    assert s.sum() == pytest.approx(total_expected, abs=1e-9)
    assert len(ma) == count_expected
    assert len(set(ma.tolist())) == len(ma) and len(set(mb.tolist())) == len(mb)


def test_cross_pairs_pairs_every_equal_key():
    key_a, key_b = np.array([3, 1, 3, 7]), np.array([3, 3, 1, 5])
    ia, jb = ag.cross_pairs(key_a, key_b)
    expected = {(i, j) for i, j in itertools.product(range(4), range(4)) if key_a[i] == key_b[j]}
    assert set(zip(ia.tolist(), jb.tolist(), strict=True)) == expected


def frame_of(rows):
    """rows: (item, annotator, category, kind, box)."""
    return ag.LabelFrame(
        item=np.array([r[0] for r in rows]),
        annotator=np.array([r[1] for r in rows]),
        category=np.array([r[2] for r in rows]),
        kind=np.array([r[3] for r in rows]),
        boxes=np.array([r[4] for r in rows], dtype=float),
    )


def test_precision_recall_and_f1_of_a_pair_of_annotators():
    box = [10.0, 10.0, 50.0, 50.0]
    far = [300.0, 300.0, 20.0, 20.0]
    rows = [
        (1, 1, 1, "bbox", box), (1, 1, 1, "bbox", [100.0, 10.0, 50.0, 50.0]), (1, 1, 1, "bbox", far),
        (1, 2, 1, "bbox", [12.0, 10.0, 50.0, 50.0]), (1, 2, 1, "bbox", [100.0, 10.0, 50.0, 50.0]),
        (1, 2, 2, "bbox", box),  # same place, another class: never matched
    ]  # fmt: skip
    match = ag.compare_geometry(frame_of(rows), 1, 2, "bbox")
    result = ag.tally(match).as_dict()
    assert result["matched"] == 2
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 * 2 / 6)
    assert result["mean_similarity"] == pytest.approx((48 * 50 / (52 * 50) + 1.0) / 2)


def test_only_images_both_annotators_labelled_are_compared():
    rows = [
        (1, 1, 1, "bbox", [0.0, 0.0, 10.0, 10.0]), (1, 2, 1, "bbox", [0.0, 0.0, 10.0, 10.0]),
        (2, 1, 1, "bbox", [0.0, 0.0, 10.0, 10.0]),  # only annotator 1 did image 2
    ]  # fmt: skip
    result = ag.tally(ag.compare_geometry(frame_of(rows), 1, 2, "bbox")).as_dict()
    assert result == {**result, "objects_a": 1, "objects_b": 1, "f1": 1.0}


def test_matched_objects_cluster_across_all_annotators():
    box = [0.0, 0.0, 10.0, 10.0]
    rows = [(1, a, 1, "bbox", box) for a in (1, 2, 3)] + [(1, 3, 1, "bbox", [50.0, 50.0, 10.0, 10.0])]
    analysis = ag.analyse(frame_of(rows))
    assert analysis.cluster[0] == analysis.cluster[1] == analysis.cluster[2] != analysis.cluster[3]


# --------------------------------------------------------------------------- a version's report


def test_the_report_of_a_version_with_three_annotators(dataset):
    version = multi_annotated_version(dataset)
    report = ag.compute_agreement_report(version)

    assert report["measurable"] and report["annotators"] == ["A-1", "A-2", "A-3"]
    assert report["annotations_per_item"]["histogram"] == {"3": 5}
    boxes = report["geometry"]["bbox"]
    assert boxes["per_class"]["car"]["recall"] < 1.0  # A-3 missed a car
    assert [p["f1"] for p in boxes["pairs"] if p["b"] == "A-2" and p["a"] == "A-1"] == [1.0]
    assert report["geometry"]["keypoints"]["sigmas"] == {"person": "schema"}
    ages = report["categorical"]["attributes"]["age_band"]
    # Units are the people as matched across annotators; on the disputed image A-3 says child, not senior.
    expected = krippendorff.alpha(
        reliability_data=[[0, 1, 2, 0, 0], [0, 1, 2, 0, 0], [0, 1, 1, 0, 0]], level_of_measurement="nominal"
    )
    assert ages["krippendorff_alpha"] == pytest.approx(expected, abs=1e-6)
    assert report["categorical"]["classification"]["units"] == 5
    by_name = {a["annotator"]: a for a in report["per_annotator"]}
    assert by_name["A-3"]["vs_consensus"]["attribute_accuracy"]["age_band"] == pytest.approx(0.8)
    assert by_name["A-2"]["vs_consensus"]["class_accuracy"] == pytest.approx(0.8)
    assert [g["guideline_version"] for g in report["per_guideline"]] == ["v1.0"]
    assert report["items"]["lowest"][0]["item"] == DISPUTED


def test_a_version_labelled_once_per_image_is_not_measurable(published_version):
    report = ag.compute_agreement_report(published_version)
    assert report["measurable"] is False
    assert "cannot be measured" in report["reason"]


def test_candidates_without_an_annotator_are_left_out(dataset):
    version = build_version(dataset, publish=False, items=2)
    item = version.items.first()
    f.LabelFactory(item=item, category=version.schema.categories.get(name="car"), is_final=False)
    data = ag.load_version_labels(version)
    assert len(data.candidates) == 0 and len(data.finals) == 4


def test_polygons_are_compared_as_masks_on_their_image():
    square = [10.0, 10.0, 50.0, 10.0, 50.0, 50.0, 10.0, 50.0]
    moved = [v + 4.0 for v in square]
    frame = ag.LabelFrame(
        item=np.array([1, 1, 1]),
        annotator=np.array([1, 2, 2]),
        category=np.array([1, 1, 1]),
        kind=np.array([fmt.POLYGON] * 3),
        boxes=ag.boxes_of(
            [{"polygons": [square]}, {"polygons": [moved]}, {"polygons": [[70.0, 70, 90, 70, 90, 90]]}]
        ),
        geometry=[{"polygons": [square]}, {"polygons": [moved]}, {"polygons": [[70.0, 70, 90, 70, 90, 90]]}],
        item_size={1: (100, 100)},
    )
    result = ag.tally(ag.compare_geometry(frame, 1, 2, fmt.POLYGON)).as_dict()
    assert result["matched"] == 1 and result["precision"] == 0.5 and result["recall"] == 1.0
    assert result["mean_similarity"] == pytest.approx(36 * 36 / (2 * 40 * 40 - 36 * 36), abs=0.03)
