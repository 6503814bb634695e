"""The AI Act evidence pack of each demo dataset shows that dataset's real gaps, gaps first."""

import numpy as np
import pytest

from governance.quality import compliance, consensus, reports
from marketplace.models import DatasetVersion, Label

from .quality_support import demo_catalogue  # noqa: F401  (the module-scoped demo)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo_catalogue")]


def pack_of(slug: str, number: int | None = None) -> dict:
    versions = DatasetVersion.objects.filter(dataset__slug=slug).order_by("-number")
    version = versions.get(number=number) if number else versions.filter(status="published").first()
    return reports.report_for(version, "compliance")


def point(pack: dict, ref: str) -> dict:
    return next(p for p in pack["points"] if p["ref"] == ref)


def test_every_point_is_answered_once_with_the_gaps_first():
    pack = pack_of("pedestrian-poses")
    refs = [p["ref"] for p in pack["points"]]
    assert sorted(refs) == sorted(ref for ref, _, _ in compliance.POINTS)
    order = [compliance.STATUS_ORDER[p["status"]] for p in pack["points"]]
    assert order == sorted(order)
    assert pack["gaps"] and pack["gaps"][0]["status"] == pack["points"][0]["status"]
    assert sum(pack["counts"].values()) == 12


def test_the_street_scenes_show_people_but_cannot_examine_their_balance():
    pack = pack_of("urban-street-scenes")
    bias = point(pack, "10(2)(f)")
    assert bias["status"] in ("partial", "missing")
    assert any("no attribute describes them" in g for g in bias["gaps"])
    assert point(pack, "10(2)(g)")["status"] == "missing"
    quality = point(pack, "10(3)")
    assert any("label error rate is unknown" in g for g in quality["gaps"])
    availability = point(pack, "10(2)(e)")
    assert any("cyclist" in g for g in availability["gaps"])  # the datasheet itself says "few cyclists"
    assert point(pack, "10(5)")["applicable"] is False


def test_the_pedestrian_poses_flag_their_under_represented_groups():
    pack = pack_of("pedestrian-poses")
    balance = reports.report_for(DatasetVersion.objects.get(dataset__slug="pedestrian-poses"), "balance")
    under = {(g["attribute"], g["value"]) for g in balance["gaps"] if g["kind"] == "under_represented"}
    assert ("age_band", "senior") in under
    assert point(pack, "10(2)(f)")["status"] == "evidenced"
    measures = point(pack, "10(2)(g)")
    assert measures["status"] == "partial"
    assert any("age_band=senior" in g for g in measures["gaps"])
    special = point(pack, "10(5)")  # skin tone is special-category adjacent
    assert special["applicable"] is True
    assert any("retention" in g.lower() for g in special["gaps"])
    assert any("consent" in g for g in point(pack, "10(2)(b)")["gaps"])
    assert any("agreement" in e["source"] for e in point(pack, "10(3)")["evidence"])


def test_the_bridge_inspection_has_no_people_and_no_bias_statement():
    pack = pack_of("bridge-inspection")
    assert pack["depicts_people"] is False
    assert point(pack, "10(5)")["applicable"] is False
    assert point(pack, "10(2)(f)")["status"] == "partial"
    assert any("biases" in g for g in point(pack, "10(2)(f)")["gaps"])
    assert any("labelled independently twice" in g for g in point(pack, "10(3)")["gaps"])


def test_a_supplier_draft_with_nothing_in_it_is_mostly_missing():
    pack = pack_of("retail-shelf-products", 1)
    assert pack["version_status"] == "draft"
    assert pack["counts"]["missing"] >= 5
    assert point(pack, "Annex IV 2(d)")["status"] != "evidenced"


def test_the_croissant_rai_fields_come_from_the_measurements():
    fields = reports.croissant_rai_fields(DatasetVersion.objects.get(dataset__slug="pedestrian-poses"))
    # Demographics come from the live annotator records (exports.documents), not from the stored reports.
    assert set(fields) == {"rai:annotationsPerItem", "rai:dataAnnotationAnalysis", "rai:dataBiases"}
    assert "3 annotators on 20 images" in fields["rai:annotationsPerItem"]
    assert any("age_band: Krippendorff's alpha" in s for s in fields["rai:dataAnnotationAnalysis"])
    assert any("keypoints: pairwise precision" in s for s in fields["rai:dataAnnotationAnalysis"])
    assert any("age_band=senior" in s for s in fields["rai:dataBiases"])
    version = DatasetVersion.objects.get(dataset__slug="pedestrian-poses")
    assert fields["rai:dataBiases"][0] == version.datasheet.biases  # the datasheet's own words first
    pool = reports.report_for(version, "balance")["annotator_pool"]
    assert compliance.annotator_demographics_texts(pool)[0].startswith("3 pseudonymous annotators")

    street = reports.croissant_rai_fields(
        DatasetVersion.objects.filter(dataset__slug="urban-street-scenes", status="published").first()
    )
    assert street["rai:annotationsPerItem"].startswith("One annotator per label")


def test_consensus_of_the_demo_annotators_gives_back_the_demos_final_labels():
    version = DatasetVersion.objects.get(dataset__slug="pedestrian-poses", number=1)
    finals = list(Label.objects.filter(version=version, is_final=True))

    proposals = consensus.propose_for_version(version)

    assert len(proposals) == len(finals)
    by_item: dict = {}
    for label in finals:
        by_item.setdefault(label.item_id, []).append(label)
    agreeing_attributes = 0
    for p in proposals:
        fused = np.array(p.geometry["keypoints"]).reshape(-1, 3)
        nearest = min(
            by_item[p.item],
            key=lambda lab: np.abs(
                np.array(lab.geometry["keypoints"]).reshape(-1, 3)[:, :2] - fused[:, :2]
            ).mean(),
        )
        truth = np.array(nearest.geometry["keypoints"]).reshape(-1, 3)
        # Each candidate is the truth plus N(0, 2.5 px) noise: the mean of three is within ~3 sigma/sqrt(3).
        assert np.abs(truth[:, :2] - fused[:, :2]).max() < 6.0
        agreeing_attributes += nearest.attributes == p.attributes
    assert agreeing_attributes >= 0.9 * len(proposals)


def test_the_bridge_counts_each_bearing_once_in_its_class_share(client):
    version = DatasetVersion.objects.filter(dataset__slug="bridge-inspection", status="published").first()
    classes = reports.report_for(version, "balance")["classes"]
    bearings = Label.objects.filter(version=version, is_final=True, category__name="bearing")
    flat, deep = (
        bearings.filter(geometry_type="cuboid_2d").count(),
        bearings.filter(geometry_type="cuboid_3d").count(),
    )
    assert flat and deep, "the demo bridge has bearings in 2D and in 3D"
    # One bearing per image, drawn as a 2D cuboid and estimated as a 3D cuboid.
    assert classes["counts"]["bearing"] == max(flat, deep) == bearings.values("item").distinct().count()
    assert classes["same_object_views"] == {"bearing": min(flat, deep)}
    page = client.get(
        f"/governance/datasets/bridge-inspection/versions/{version.number}/quality/"
    ).content.decode()
    assert f"{min(flat, deep)} 3D cuboids of bearing" in page
    dataset_page = client.get("/datasets/bridge-inspection/").content.decode()
    assert "a 2D and a 3D cuboid of the same class on one image are one object" in dataset_page
