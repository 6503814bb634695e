"""The governance API and pages: label histories an auditor can verify offline, provenance, annotators.

Who reads what: auditors, staff, the supplier and entitled buyers read provenance of released versions;
the supplier also its drafts; everyone else gets a 404 (401 when anonymous), never data.
"""

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from governance import ledger, verify_offline
from governance.models import LabelEvent
from marketplace.models import Label
from tests import factories as f

from ..conftest import build_version
from .ledger_support import ledgered_version

pytestmark = pytest.mark.django_db

VERIFIER = Path(verify_offline.__file__)


@pytest.fixture
def guidelines(dataset):
    guideline = f.GuidelineFactory(dataset=dataset, title="Street guideline")
    old = f.GuidelineVersionFactory(guideline=guideline, tag="v1.0", effective_date=date(2026, 1, 1))
    current = f.GuidelineVersionFactory(guideline=guideline, tag="v1.1", effective_date=date(2026, 2, 1))
    f.GuidelineVersionFactory(
        guideline=guideline, tag="v2.0", effective_date=date(2099, 1, 1)
    )  # not in force yet
    return old, current


@pytest.fixture
def released(dataset, supplier_org, guidelines):
    annotator = f.AnnotatorFactory(
        organization=supplier_org, pseudonym="A-17", qualifications=["driving scenes"]
    )
    version = ledgered_version(dataset, items=2, guideline_version=guidelines[0], annotator=annotator)
    return version


@pytest.fixture
def draft(dataset, released):
    version = build_version(dataset, number=2, items=1, publish=False)
    ledger.append_events(
        dataset=dataset, events=ledger.label_created_events(Label.objects.filter(version=version))
    )
    return version


@pytest.fixture
def entitled_buyer(buyer, dataset):
    f.EntitlementFactory(organization=buyer.memberships.get().organization, dataset=dataset)
    return buyer


def a_label(version):
    return Label.objects.filter(version=version).order_by("id").first()


def urls(version, label, event):
    slug, n = version.dataset.slug, version.number
    return [
        ("get", f"/api/v1/labels/{label.uid}/history/", None),
        ("get", f"/api/v1/datasets/{slug}/versions/{n}/provenance/", None),
        ("get", f"/api/v1/datasets/{slug}/versions/{n}/superseded-labels/", None),
        ("get", f"/api/v1/datasets/{slug}/annotators/", None),
        ("post", "/api/v1/ledger/verify/", {"dataset": slug}),
        ("get", f"/api/v1/ledger/events/{event.pk}/bundle/", None),
    ]


# --- what an auditor gets


def test_a_label_history_lists_its_events_with_proofs_against_the_latest_tree_head(
    api_for, auditor, released
):
    label = a_label(released)

    body = api_for(auditor).get(f"/api/v1/labels/{label.uid}/history/").json()

    assert body["label_uid"] == str(label.uid) and body["dataset"] == "street-scenes"
    assert body["tree_head"]["tree_size"] == 5
    assert body["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    [entry] = body["events"]
    assert entry["event"]["action"] == "created" and entry["event"]["actor"] == "A-17"
    assert entry["event"]["guideline_version"] == "v1.0"
    result = verify_offline.verify(body["tree_head"], body["public_key"], entry["event"], entry["proof"])
    assert result.valid, result.failures


def test_the_offline_verifier_accepts_a_bundle_taken_from_the_api(api_for, auditor, released, tmp_path):
    body = api_for(auditor).get(f"/api/v1/labels/{a_label(released).uid}/history/").json()
    entry = body["events"][0]
    (tmp_path / "key.pem").write_text(body["public_key"])
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps({"tree_head": body["tree_head"], "event": entry["event"], "proof": entry["proof"]})
    )

    run = subprocess.run(
        [sys.executable, str(VERIFIER), "--key", str(tmp_path / "key.pem"), "--bundle", str(bundle)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "VALID")

    entry["event"]["guideline_version"] = "v1.1"  # claim it was made under the newer guideline
    bundle.write_text(
        json.dumps({"tree_head": body["tree_head"], "event": entry["event"], "proof": entry["proof"]})
    )
    run = subprocess.run(
        [sys.executable, str(VERIFIER), "--key", str(tmp_path / "key.pem"), "--bundle", str(bundle)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "field edited?" in run.stdout


def test_a_history_spans_versions_and_shows_events_not_yet_signed_without_a_proof(api_for, supplier, draft):
    label = Label.objects.filter(version=draft).first()  # only in the draft
    uid_in_both = a_label(draft.dataset.versions.get(number=1)).uid

    body = api_for(supplier).get(f"/api/v1/labels/{label.uid}/history/").json()
    assert [e["proof"] for e in body["events"]] == [None]
    assert "not covered by a signed tree head" in body["events"][0]["proof_error"]
    assert api_for(supplier).get(f"/api/v1/labels/{uid_in_both}/history/").status_code == 200


def test_the_provenance_of_a_version_gives_shares_guidelines_annotators_and_the_tree_head(
    api_for, auditor, released
):
    body = api_for(auditor).get("/api/v1/datasets/street-scenes/versions/1/provenance/").json()

    assert body["labels"]["total"] == 4
    assert body["labels"]["share_with_annotator_and_time"] == 0.0  # the factories set no made_at
    assert body["labels"]["with_annotator"] == 4
    assert body["labels"]["share_in_ledger"] == 1.0
    assert body["sources"]["human"] == {"labels": 4, "share": 1.0, "final": 4, "final_share": 1.0}
    assert [
        (g["tag"], g["labels"], g["superseded"], g["superseded_by"]) for g in body["guideline_versions"]
    ] == [("v1.0", 4, True, "v1.1")]
    assert body["annotators"][0]["pseudonym"] == "A-17" and body["annotators"][0]["labels"] == 4
    assert body["tree_head"]["tree_size"] == 5 and body["ledger_events"] == 5


def test_labels_made_under_a_superseded_guideline_version_are_listed(api_for, auditor, released, guidelines):
    body = api_for(auditor).get("/api/v1/datasets/street-scenes/versions/1/superseded-labels/").json()

    assert body["count"] == 4
    assert {(r["guideline_version"], r["superseded_by"], r["annotator"]) for r in body["results"]} == {
        ("v1.0", "v1.1", "A-17")
    }


def test_a_guideline_version_is_not_superseded_by_one_that_is_not_yet_in_force(guidelines):
    from governance.models import GuidelineVersion

    assert list(GuidelineVersion.objects.superseded().values_list("tag", flat=True)) == ["v1.0"]


def test_the_annotator_registry_shows_qualifications_and_only_aggregated_demographics(
    api_for, auditor, supplier, supplier_org, released
):
    for n in range(6):
        f.AnnotatorFactory(
            organization=supplier_org,
            pseudonym=f"B-{n}",
            demographics={"age_band": "30-39" if n < 5 else "60+"},
        )
    body = api_for(auditor).get("/api/v1/datasets/street-scenes/annotators/").json()

    assert [a["pseudonym"] for a in body["annotators"]] == ["A-17"]  # B-* made no label here
    assert body["annotators"][0]["qualifications"] == ["driving scenes"]
    assert "demographics" not in body["annotators"][0]
    assert body["demographics"]["declared"] == 0 and body["demographics"]["attributes"] == {}
    assert api_for(supplier).get("/api/v1/datasets/street-scenes/annotators/").status_code == 200


def test_demographics_are_shown_only_for_groups_of_the_minimum_size():
    from governance.provenance import aggregate_demographics

    people = [f.AnnotatorFactory.build(demographics={"age_band": "30-39"}) for _ in range(5)]
    people += [f.AnnotatorFactory.build(demographics={"age_band": "60+"})]

    assert aggregate_demographics(people)["attributes"] == {
        "age_band": {"30-39": 5, "(groups under the minimum size)": "<5"}
    }
    assert aggregate_demographics(people[:3])["attributes"] == {}


def test_the_public_key_is_public(api_for, released):
    body = api_for().get("/api/v1/ledger/public-key/").json()

    assert body["algorithm"] == "Ed25519"
    assert body["key_id"] == verify_offline.key_id(body["public_key"])


def test_verify_reports_an_intact_ledger_and_checks_heads_the_caller_holds(
    api_for, auditor, released, django_capture_on_commit_callbacks
):
    api = api_for(auditor)

    def verify(data):
        with django_capture_on_commit_callbacks(execute=True):  # the chunk tasks run (eagerly)
            started = api.post("/api/v1/ledger/verify/", data, format="json")
        assert started.status_code == 202
        return api.get(f"/api/v1/ledger/verify/{started.json()['id']}/").json()

    body = verify({"dataset": "street-scenes"})
    report = body["report"]
    assert (report["ok"], report["events"], report["first_broken_seq"]) == (True, 5, None)

    held = dict(body["latest_tree_head"], tree_size=99)
    report = verify({"dataset": "street-scenes", "tree_heads": [held]})["report"]
    assert report["ok"] is False and "signature does not match key" in report["problems"][0]


def test_verify_without_a_dataset_is_a_clear_error(api_for, auditor):
    response = api_for(auditor).post("/api/v1/ledger/verify/", {}, format="json")

    assert response.status_code == 400 and response.json()["code"] == "dataset_required"


def test_an_event_bundle_verifies_offline(api_for, auditor, released):
    event = LabelEvent.objects.get(dataset=released.dataset, seq=1)

    bundle = api_for(auditor).get(f"/api/v1/ledger/events/{event.pk}/bundle/").json()

    assert verify_offline.verify(
        bundle["tree_head"], bundle["public_key"], bundle["event"], bundle["proof"]
    ).valid


# --- who reads what


def test_an_entitled_buyer_reads_released_provenance_but_not_the_annotator_registry(
    api_for, entitled_buyer, released
):
    api = api_for(entitled_buyer)
    label = a_label(released)

    assert api.get(f"/api/v1/labels/{label.uid}/history/").status_code == 200
    assert api.get("/api/v1/datasets/street-scenes/versions/1/provenance/").status_code == 200
    response = api.get("/api/v1/datasets/street-scenes/annotators/")
    assert response.status_code == 403 and set(response.json()) == {"code", "detail"}


def test_drafts_are_the_suppliers_alone(api_for, supplier, auditor, entitled_buyer, draft):
    draft_label = Label.objects.filter(version=draft).first()
    url = "/api/v1/datasets/street-scenes/versions/2/provenance/"

    assert api_for(supplier).get(url).status_code == 200
    assert api_for(supplier).get(f"/api/v1/labels/{draft_label.uid}/history/").status_code == 200
    for user in (auditor, entitled_buyer):
        assert api_for(user).get(url).status_code == 404
        assert api_for(user).get(f"/api/v1/labels/{draft_label.uid}/history/").status_code == 404
        event = LabelEvent.objects.get(label_uid=draft_label.uid)
        assert api_for(user).get(f"/api/v1/ledger/events/{event.pk}/bundle/").status_code == 404


def test_an_expired_entitlement_reads_nothing(api_for, buyer, dataset, released):
    from django.utils import timezone

    f.EntitlementFactory(
        organization=buyer.memberships.get().organization,
        dataset=dataset,
        starts_at=timezone.now() - timezone.timedelta(days=10),
        ends_at=timezone.now() - timezone.timedelta(days=1),
    )

    assert api_for(buyer).get("/api/v1/datasets/street-scenes/versions/1/provenance/").status_code == 404


@pytest.mark.parametrize("persona", ["anonymous", "outsider", "other_supplier", "buyer"])
@pytest.mark.parametrize("endpoint", range(6))
def test_no_endpoint_gives_data_to_those_without_access(request, api_for, released, persona, endpoint):
    user = None if persona == "anonymous" else request.getfixturevalue(persona)
    event = LabelEvent.objects.filter(dataset=released.dataset).first()
    method, url, data = urls(released, a_label(released), event)[endpoint]

    response = getattr(api_for(user), method)(url, data, format="json")

    assert response.status_code == (401 if user is None else 404)
    assert set(response.json()) == {"code", "detail"}


def test_a_supplier_of_another_dataset_cannot_verify_or_read_this_one(api_for, other_supplier, released):
    api = api_for(other_supplier)

    assert api.post("/api/v1/ledger/verify/", {"dataset": "street-scenes"}, format="json").status_code == 404
    assert (
        api.get("/api/v1/datasets/their-dataset/annotators/").status_code == 404
    )  # no version: nothing to read


# --- pages


def test_the_label_history_page_shows_who_when_and_the_proof(client_for, auditor, released):
    label = a_label(released)

    page = client_for(auditor).get(f"/governance/labels/{label.uid}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "A-17" in html and "created" in html and "v1.0" in html and "included" in html
    assert "verify_offline.py" in html


def test_the_provenance_page_flags_superseded_guideline_versions(client_for, auditor, released):
    page = client_for(auditor).get("/governance/datasets/street-scenes/versions/1/provenance/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "superseded by v1.1" in html and 'class="superseded-label"' in html
    assert str(a_label(released).uid)[:8] in html


def test_the_bundle_and_key_downloads_verify_together(client_for, auditor, released, tmp_path):
    client = client_for(auditor)
    event = LabelEvent.objects.get(dataset=released.dataset, seq=0)

    bundle = json.loads(client.get(f"/governance/events/{event.pk}/bundle.json").content)
    key = client.get("/governance/public-key.pem").content.decode()

    assert verify_offline.verify(bundle["tree_head"], key, bundle["event"], bundle["proof"]).valid


def test_the_dataset_page_links_to_the_provenance_page(client_for, auditor, released):
    html = client_for(auditor).get("/datasets/street-scenes/").content.decode()

    assert "/governance/datasets/street-scenes/versions/1/provenance/" in html


@pytest.mark.parametrize("persona", ["outsider", "other_supplier"])
def test_pages_are_not_found_for_those_without_access(request, client_for, released, persona):
    client = client_for(request.getfixturevalue(persona))
    event = LabelEvent.objects.filter(dataset=released.dataset).first()

    assert client.get(f"/governance/labels/{a_label(released).uid}/").status_code == 404
    assert client.get("/governance/datasets/street-scenes/versions/1/provenance/").status_code == 404
    assert client.get(f"/governance/events/{event.pk}/bundle.json").status_code == 404


def test_pages_send_anonymous_visitors_to_log_in(client, released):
    response = client.get("/governance/datasets/street-scenes/versions/1/provenance/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
