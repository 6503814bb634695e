"""The Croissant of a version carries the measured figures of its stored quality reports.

The figures are checked against the stored ``QualityReport`` rows (agreement and balance) and the
source shares against the labels counted directly; mlcroissant validates the documents.
"""

from collections import Counter

import pytest

from governance.models import QualityReport
from governance.quality import reports
from marketplace.exports import documents
from marketplace.models import DatasetVersion, Label

from .quality_support import demo_catalogue  # noqa: F401  (the module-scoped demo)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("demo_catalogue")]


def published(slug: str) -> DatasetVersion:
    return DatasetVersion.objects.filter(dataset__slug=slug, status="published").order_by("-number").first()


def served(client, version: DatasetVersion) -> dict:
    response = client.get(f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/croissant/")
    assert response.status_code == 200
    return response.json()


def stored(version: DatasetVersion, kind: str) -> dict:
    reports.reports_for(version)  # computed on publication; here make sure they exist
    return QualityReport.objects.get(version=version, kind=kind).result


def test_the_served_croissant_carries_kappa_and_alpha_per_attribute_and_per_class(client):
    version = published("pedestrian-poses")
    doc = served(client, version)
    agreement = stored(version, "agreement")
    analysis = doc["rai:dataAnnotationAnalysis"]
    attributes = agreement["categorical"]["attributes"]
    assert attributes, "the demo's pedestrians carry attributes rated by three annotators"
    for name, measured in attributes.items():
        alpha, kappa = measured["krippendorff_alpha"], measured["fleiss_kappa"]
        assert any(
            s.startswith(f"{name}: Krippendorff's alpha {alpha:.3f}, Fleiss' kappa {kappa:.3f}")
            for s in analysis
        )
        for cls, per_class in measured["per_class"].items():
            assert any(
                s.startswith(f"{name} on {cls}: Krippendorff's alpha {per_class['krippendorff_alpha']:.3f}")
                for s in analysis
            )
    for kind, section in agreement["geometry"].items():
        for cls, tally in section["per_class"].items():
            assert f"{kind} on {cls}: pairwise F1 {tally['f1']:.3f}" in " ".join(analysis)
    below = agreement["items"]["below_threshold"]
    assert any(
        s.startswith(f"{below} of {agreement['items']['scored']} images scored under") for s in analysis
    )
    assert "3 annotators on" in doc["rai:annotationsPerItem"]


def test_the_balance_gaps_are_the_stored_reports_gaps_after_the_datasheets_words(client):
    version = published("pedestrian-poses")
    doc = served(client, version)
    balance = stored(version, "balance")
    gaps = [
        g["text"]
        for g in balance["gaps"]
        if g["kind"] in ("under_represented", "absent", "intersection", "class")
    ]
    assert gaps
    assert doc["rai:dataBiases"][0] == version.datasheet.biases.strip()
    assert all(text in doc["rai:dataBiases"] for text in gaps)


def test_the_shares_of_human_model_and_consensus_labels_match_the_labels_counted(client):
    version = published("urban-street-scenes")
    doc = served(client, version)
    finals = Counter(Label.objects.filter(version=version, is_final=True).values_list("source", flat=True))
    total = sum(finals.values())
    assert finals["model"], "the demo's street scenes have model-made lanes"
    expected = ", ".join(f"{source} {n / total * 100:.1f}%" for source, n in sorted(finals.items()))
    assert f"Final labels by source: {expected}." in doc["rai:dataAnnotationAnalysis"]
    by_model = Counter(
        Label.objects.filter(version=version, is_final=True, source="model").values_list(
            "model_name", "model_version"
        )
    )
    assert doc["rai:machineAnnotationTools"] == [
        f"{name} {ver}: {n} final labels ({n / total * 100:.1f}%)"
        for (name, ver), n in sorted(by_model.items())
    ]


def test_mlcroissant_validates_the_croissant_with_the_measured_figures(client):
    import mlcroissant as mlc

    for slug in ("pedestrian-poses", "urban-street-scenes", "bridge-inspection"):
        doc = served(client, published(slug))
        dataset = mlc.Dataset(jsonld=doc)  # raises on a validation error; offline
        assert not dataset.metadata.ctx.issues.errors
        assert isinstance(doc["rai:dataAnnotationAnalysis"], list)


def test_the_figures_follow_the_stored_reports_not_a_fresh_count():
    # The document reads the stored rows: change a stored figure and the Croissant says the new one.
    version = published("pedestrian-poses")
    stored(version, "agreement")
    row = QualityReport.objects.get(version=version, kind="agreement")
    result = row.result
    name = next(iter(result["categorical"]["attributes"]))
    result["categorical"]["attributes"][name]["krippendorff_alpha"] = 0.123456
    QualityReport.objects.filter(pk=row.pk).update(result=result)
    rai = documents.rai_facts(version)
    assert any(s.startswith(f"{name}: Krippendorff's alpha 0.123") for s in rai["rai:dataAnnotationAnalysis"])
