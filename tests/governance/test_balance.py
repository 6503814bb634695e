"""Class and demographic balance: the statistics against scipy, the gaps a buyer must see."""

import math

import numpy as np
import pytest
from scipy.stats import chisquare
from scipy.stats import entropy as scipy_entropy

from governance.models import Annotator
from governance.quality import balance
from marketplace.formats import model as fmt
from tests import factories as f

from .quality_support import multi_annotated_version


@pytest.mark.parametrize("seed", range(4))
def test_chi_square_is_scipys(seed):
    rng = np.random.default_rng(seed)
    observed = rng.integers(5, 200, 4 + seed)
    shares = rng.uniform(0.1, 1.0, observed.size)
    expected = shares / shares.sum() * observed.sum()
    statistic, p_value, dof = balance.chi_square(observed, shares)
    reference = chisquare(observed, expected)
    assert statistic == pytest.approx(reference.statistic, abs=1e-9)
    assert p_value == pytest.approx(reference.pvalue, abs=1e-12)
    assert dof == observed.size - 1


def test_normalised_entropy_is_shannons_over_its_maximum():
    counts = [10, 30, 60]
    assert balance.normalised_entropy(counts) == pytest.approx(scipy_entropy(counts) / math.log(3), abs=1e-12)
    assert balance.normalised_entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert balance.normalised_entropy([9, 0, 0]) == 0.0
    assert balance.normalised_entropy([4]) is None


def test_a_distribution_flags_absent_and_small_groups():
    dist = balance.distribution(["child", "adult", "senior"], [12, 80, 0], min_count=30)
    assert dist["absent"] == ["senior"] and dist["too_few"] == ["child"]
    assert dist["min_max_ratio"] == 0.0
    assert dist["shares"] == {
        "child": pytest.approx(12 / 92, abs=1e-6),
        "adult": pytest.approx(80 / 92, abs=1e-6),
        "senior": 0.0,
    }


def test_deviation_from_the_target_names_the_groups_off_target_and_the_largest_gap():
    deviation = balance.target_deviation(
        ["light", "medium", "dark"], [60, 30, 10], {"light": 0.34, "medium": 0.33, "dark": 0.33}
    )
    assert deviation["under_represented"] == ["dark"]
    assert deviation["over_represented"] == ["light"]
    assert deviation["largest_gap"]["value"] == "light"
    assert deviation["largest_gap"]["gap"] == pytest.approx(0.60 - 0.34, abs=1e-6)
    assert deviation["p_value"] < 0.001
    assert deviation["chi_square"] == pytest.approx(chisquare([60, 30, 10], [34, 33, 33]).statistic, abs=1e-6)


def test_a_target_that_does_not_sum_to_one_is_read_as_proportions():
    deviation = balance.target_deviation(["a", "b"], [50, 50], {"a": 2, "b": 2})
    assert deviation["target"] == {"a": 0.5, "b": 0.5} and deviation["chi_square"] == 0.0


def columns(**person):
    """Four images (3 train, 1 val), five labels of two classes, and person attributes as given."""
    data = balance.BalanceInput(
        splits=["train", "val", "test", "unassigned"],
        categories=["car", "person"],
        item_split=np.array([0, 0, 0, 1]),
        item_area=np.full(4, 640.0 * 480.0),
        label_item=np.array([0, 0, 1, 2, 3]),
        label_category=np.array([0, 1, 1, 1, 0]),
        label_boxes=np.array(
            [[0, 0, 20, 20], [0, 0, 50, 100], [0, 0, 120, 200], [0, 0, 40, 40], [np.nan] * 4]
        ),
    )
    for name, (values, codes) in person.items():
        data.attributes.append(
            balance.Attribute(
                name=name,
                scope="label",
                values=values,
                codes=np.array(codes),
                applies=data.label_category == 1,
                target={v: 1 / len(values) for v in values},
            )
        )
    return data


def test_the_balance_report_counts_classes_per_split_labels_per_image_and_sizes():
    report = balance.balance_report(columns(), min_count=2)
    assert report["classes"]["counts"] == {"car": 2, "person": 3}
    assert report["classes"]["per_split"]["train"] == {"car": 1, "person": 3}
    assert report["classes"]["per_split"]["val"] == {"car": 1, "person": 0}
    assert report["labels_per_item"]["histogram"] == {"1": 3, "2": 1}
    assert report["object_sizes"]["coco"] == {"small": 1, "medium": 2, "large": 1}
    assert report["object_sizes"]["measured"] == 4
    assert any(g["kind"] == "split" and "person" in g["text"] for g in report["gaps"])


def test_person_attributes_are_crossed_and_empty_cells_are_gaps():
    report = balance.balance_report(
        columns(age=(["child", "adult"], [-1, 0, 1, 1, -1]), tone=(["light", "dark"], [-1, 0, 0, 1, -1])),
        min_count=1,
    )
    age = report["person_attributes"][0]
    assert age["distribution"]["counts"] == {"child": 1, "adult": 2}
    assert age["applicable"] == 3 and age["unlabelled"] == 0
    assert age["per_class"] == {"person": age["per_class"]["person"]}
    table = report["cross_tables"][0]
    assert table["counts"] == [[1, 0], [1, 1]]
    assert table["absent"] == [["child", "dark"]]
    assert any(g["kind"] == "intersection" and "age=child and tone=dark" in g["text"] for g in report["gaps"])


def test_a_million_labels_take_no_python_loop_per_label():
    rng = np.random.default_rng(0)
    n = 1_000_000
    data = balance.BalanceInput(
        splits=["train", "val", "test", "unassigned"],
        categories=[f"c{i}" for i in range(10)],
        item_split=rng.integers(0, 3, 100_000),
        item_area=np.full(100_000, 640.0 * 480.0),
        label_item=rng.integers(0, 100_000, n),
        label_category=rng.integers(0, 10, n),
        label_boxes=np.c_[np.zeros((n, 2)), rng.uniform(5, 200, (n, 2))],
    )
    data.attributes.append(
        balance.Attribute(
            "age", "label", ["a", "b", "c"], rng.integers(-1, 3, n), np.ones(n, bool), target={"a": 0.5}
        )
    )
    report = balance.balance_report(data)
    assert report["final_labels"] == n
    assert sum(report["classes"]["counts"].values()) == n


# --------------------------------------------------------------------------- from the database


@pytest.mark.django_db
def test_only_final_labels_and_declared_values_are_counted(dataset):
    version = multi_annotated_version(dataset)

    report = balance.compute_balance_report(version, min_count=2)

    assert report["final_labels"] == 5 * 4  # the candidates (3 x as many) are not the dataset
    age = report["person_attributes"][0]
    assert age["name"] == "age_band"
    assert age["distribution"]["counts"] == {"child": 1, "adult": 3, "senior": 1}
    assert age["target"]["under_represented"] == ["senior"]
    assert age["target"]["largest_gap"]["value"] in {"adult", "senior"}
    assert {"kind": "too_few", "attribute": "age_band", "value": "child"}.items() <= next(
        g for g in report["gaps"] if g["kind"] == "too_few" and g["value"] == "child"
    ).items()


@pytest.mark.django_db
def test_item_attributes_describe_the_setting(dataset):
    version = f.VersionFactory(dataset=dataset)
    schema = f.SchemaFactory(version=version)
    f.CategoryFactory(schema=schema, name="car", geometry_types=[fmt.BBOX])
    f.AttributeSpecFactory(schema=schema, name="weather", scope="item", allowed_values=["clear", "rain"])
    for i, weather in enumerate(["clear", "clear", ""]):
        f.ItemFactory(version=version, attributes={"weather": weather} if weather else {}, key=f"i{i}.jpg")
    report = balance.compute_balance_report(version)
    weather = report["context_attributes"][0]
    assert weather["scope"] == "item"
    assert weather["distribution"]["counts"] == {"clear": 2, "rain": 0}
    assert weather["unlabelled"] == 1 and weather["distribution"]["absent"] == ["rain"]


@pytest.mark.django_db
def test_annotator_demographics_are_only_shown_as_counts_of_three_or_more(dataset):
    version = multi_annotated_version(dataset)
    for pseudonym, gender in zip(["A-1", "A-2", "A-3"], ["female", "female", "male"], strict=True):
        Annotator.objects.filter(organization=dataset.supplier, pseudonym=pseudonym).update(
            demographics={"gender": gender}
        )
    pool = balance.annotator_pool(version)
    assert pool["annotators"] == 3 and pool["declared_demographics"] == 3
    assert pool["demographics"] == {"gender": {"other": 3}}
    assert {a["annotator"]: a["candidate_labels"] for a in pool["per_annotator"]} == {
        "A-1": 20,
        "A-2": 20,
        "A-3": 19,
    }


# --------------------------------------------------------------------------- one object, one count


def test_a_3d_cuboid_is_the_same_object_as_a_2d_cuboid_of_its_class_on_its_image():
    # image 0: one bearing in 2D and 3D; image 1: two 2D, one 3D; image 2: one 2D, two 3D;
    # image 3: a 3D cuboid alone; image 4: a crack's polyline and box (not paired), and a 3D cuboid
    # of another class next to a bearing's 2D cuboid (not paired).
    item = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 4, 4, 4])
    category = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 2])
    kind = ["cuboid_3d", "cuboid_2d", "cuboid_2d", "cuboid_3d", "cuboid_2d", "cuboid_2d", "cuboid_3d",
            "cuboid_3d", "cuboid_3d", "polyline", "bbox", "cuboid_2d", "cuboid_3d"]  # fmt: skip
    marked = balance.same_object_views(item, category, kind)
    assert marked.tolist() == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]


def test_the_class_share_counts_the_bearing_once():
    data = columns()
    data.label_same_object = np.array([False, False, True, False, False])  # the second person label
    report = balance.balance_report(data, min_count=1)
    assert report["classes"]["counts"] == {"car": 2, "person": 2}
    assert report["classes"]["per_split"]["train"] == {"car": 1, "person": 2}
    assert report["classes"]["same_object_views"] == {"person": 1}
    assert report["final_labels"] == 5  # labels are still labels


def test_a_million_3d_cuboids_are_paired_without_a_python_loop_per_label():
    rng = np.random.default_rng(1)
    n = 1_000_000
    item, category = rng.integers(0, 50_000, n), rng.integers(0, 3, n)
    kind = np.where(rng.random(n) < 0.5, "cuboid_2d", "cuboid_3d")
    marked = balance.same_object_views(item, category, kind)
    # Per (image, class): min(#2D, #3D) of its 3D cuboids are marked, counted here with numpy's bincount.
    key = item * 3 + category
    flat = np.bincount(key[kind == "cuboid_2d"], minlength=150_000)
    deep = np.bincount(key[kind == "cuboid_3d"], minlength=150_000)
    assert marked.sum() == np.minimum(flat, deep).sum()
    assert not marked[kind == "cuboid_2d"].any()
    assert (np.bincount(key[marked], minlength=150_000) == np.minimum(flat, deep)).all()
