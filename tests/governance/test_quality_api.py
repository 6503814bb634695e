"""Quality API and pages: who may read which report, the review loop over HTTP, reports on publication."""

import pytest
from django.db import transaction

from governance.models import LabelEvent, QualityReport, ReviewTask
from governance.quality.tasks import compute_quality_reports
from marketplace.catalogue import publication as catalogue_publication
from tests import factories as f

from ..conftest import build_version
from .quality_support import DISPUTED, multi_annotated_version

pytestmark = pytest.mark.django_db

KINDS = ["stats", "agreement", "balance", "compliance"]
OTHERS = ["anonymous", "buyer", "auditor", "outsider", "other_supplier"]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # The personas' passwords are hashed with PBKDF2's million rounds otherwise: a second per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(slug, number, tail):
    return f"/api/v1/datasets/{slug}/versions/{number}/{tail}"


@pytest.fixture
def persona(request, supplier):
    """The user named by the test's ``who`` (None for anonymous); the supplier always exists."""

    def get(who):
        return None if who == "anonymous" else request.getfixturevalue(who)

    return get


@pytest.fixture
def multi(dataset):
    return multi_annotated_version(dataset)


# --------------------------------------------------------------------------- reading reports


def test_anyone_reads_the_reports_of_a_released_version(api_for, multi):
    for kind in KINDS:
        response = api_for().get(url("street-scenes", 1, f"{kind}/"))
        assert response.status_code == 200
        body = response.json()
        assert body["kind"] == kind and body["version"] == 1 and body["result"]
        assert body["parameters"]["match_threshold"] == 0.5


def test_the_agreement_report_reads_as_a_buyer_expects(api_for, buyer, multi):
    result = api_for(buyer).get(url("street-scenes", 1, "agreement/")).json()["result"]
    assert result["measurable"] and result["annotators"] == ["A-1", "A-2", "A-3"]
    assert result["summary"]["geometry_f1"]["bbox"] < 1.0
    assert result["items"]["lowest"][0]["item"] == DISPUTED


def test_released_reports_are_stored_and_read_back(api_for, multi):
    api_for().get(url("street-scenes", 1, "balance/"))
    assert set(QualityReport.objects.filter(version=multi).values_list("kind", flat=True)) == set(KINDS)
    first = QualityReport.objects.get(version=multi, kind="balance").computed_at
    api_for().get(url("street-scenes", 1, "balance/"))
    assert QualityReport.objects.get(version=multi, kind="balance").computed_at == first


@pytest.mark.parametrize("who", OTHERS)
def test_a_draft_is_a_404_for_everyone_but_its_supplier(api_for, persona, draft_dataset, who):
    client = api_for(persona(who))
    for kind in KINDS:
        response = client.get(url("secret-draft", 1, f"{kind}/"))
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_the_supplier_reads_the_reports_of_its_draft(api_for, supplier, draft_dataset):
    response = api_for(supplier).get(url("secret-draft", 1, "compliance/"))
    assert response.status_code == 200
    assert response.json()["result"]["version_status"] == "draft"


def test_an_unknown_version_is_the_same_404(api_for, supplier, multi):
    response = api_for(supplier).get(url("street-scenes", 9, "stats/"))
    assert response.status_code == 404 and response.json()["code"] == "not_found"


# --------------------------------------------------------------------------- the review queue


@pytest.mark.parametrize("who", OTHERS)
def test_the_review_queue_is_a_404_for_everyone_but_the_supplier(api_for, persona, multi, who):
    client = api_for(persona(who))
    assert client.get(url("street-scenes", 1, "review-queue/")).status_code == 404
    assert client.post(url("street-scenes", 1, "review-queue/"), {"threshold": 0.9}).status_code == 404
    assert not ReviewTask.objects.exists()


@pytest.mark.parametrize("who", ["anonymous", "outsider", "other_supplier"])
def test_a_drafts_review_queue_is_a_404_too(api_for, persona, draft_dataset, who):
    assert api_for(persona(who)).get(url("secret-draft", 1, "review-queue/")).status_code == 404


def test_the_supplier_queues_reviews_and_accepts_and_each_decision_is_in_the_ledger(api_for, supplier, multi):
    client = api_for(supplier)
    opened = client.post(url("street-scenes", 1, "review-queue/"), {"threshold": 0.8}, format="json")
    assert opened.status_code == 201 and opened.json()["opened"] == 1
    queue = client.get(url("street-scenes", 1, "review-queue/")).json()
    assert queue["open"] == 1 and queue["tasks"][0]["item"] == DISPUTED
    task_id = queue["tasks"][0]["id"]

    accepted = client.post(
        url("street-scenes", 1, f"review-queue/{task_id}/accept/"),
        {"note": "fine", "reviewer": "A-1"},
        format="json",
    )

    assert accepted.status_code == 200
    assert accepted.json()["status"] == "accepted" and accepted.json()["reviewer"] == "A-1"
    assert LabelEvent.objects.filter(action="accepted", actor="A-1").count() == 4  # the image's final labels
    again = client.post(url("street-scenes", 1, f"review-queue/{task_id}/reject/"), {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_decided"


def test_a_fix_of_a_released_version_is_refused_with_a_reason(api_for, supplier, multi):
    client = api_for(supplier)
    client.post(url("street-scenes", 1, "review-queue/"), {}, format="json")
    task = ReviewTask.objects.get()
    label = multi.labels.filter(item=task.item, is_final=True).first()
    response = client.post(
        url("street-scenes", 1, f"review-queue/{task.pk}/fix/"),
        {"label_uid": str(label.uid), "attributes": {"age_band": "child"}},
        format="json",
    )
    assert response.status_code == 409 and response.json()["code"] == "version_frozen"


def test_others_cannot_decide_a_review(api_for, supplier, outsider, other_supplier, multi):
    api_for(supplier).post(url("street-scenes", 1, "review-queue/"), {}, format="json")
    task = ReviewTask.objects.get()
    for user in (outsider, other_supplier, None):
        response = api_for(user).post(
            url("street-scenes", 1, f"review-queue/{task.pk}/accept/"), {}, format="json"
        )
        assert response.status_code == 404
    assert ReviewTask.objects.get().status == "open"
    assert not LabelEvent.objects.filter(action="accepted").exists()


def test_a_reviewer_who_is_not_the_suppliers_annotator_is_refused(api_for, supplier, multi):
    f.AnnotatorFactory(pseudonym="X-9")  # another organisation's
    client = api_for(supplier)
    client.post(url("street-scenes", 1, "review-queue/"), {}, format="json")
    task = ReviewTask.objects.get()
    response = client.post(
        url("street-scenes", 1, f"review-queue/{task.pk}/accept/"), {"reviewer": "X-9"}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_reviewer"


# --------------------------------------------------------------------------- publication starts the reports


def test_publishing_a_version_computes_its_reports_after_the_commit(
    dataset, django_capture_on_commit_callbacks
):
    version = build_version(dataset, publish=False)
    with django_capture_on_commit_callbacks(execute=True):
        catalogue_publication.publish_version(version=version)
    assert set(QualityReport.objects.filter(version=version).values_list("kind", flat=True)) == set(KINDS)


def test_the_quality_task_keeps_the_name_that_queued_messages_carry():
    from config.celery import app

    assert compute_quality_reports.name == "governance.tasks.compute_quality_reports"
    assert app.tasks["governance.tasks.compute_quality_reports"].run.__module__ == "governance.quality.tasks"


def test_a_publication_rolled_back_starts_no_reports(dataset, django_capture_on_commit_callbacks):
    version = build_version(dataset, publish=False)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        catalogue_publication.publish_version(version=version)
        raise RuntimeError("the caller's transaction fails after the publication")
    assert callbacks == [] and not QualityReport.objects.filter(version=version).exists()


def test_the_supplier_can_ask_for_the_reports_again(
    api_for, supplier, multi, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_for(supplier).post(url("street-scenes", 1, "quality/recompute/"))
    assert response.status_code == 202
    assert QualityReport.objects.filter(version=multi).count() == 4
    assert api_for().post(url("street-scenes", 1, "quality/recompute/")).status_code == 404


# --------------------------------------------------------------------------- pages


def test_the_quality_page_draws_the_distributions_without_scripts(client, multi):
    response = client.get(f"/governance/datasets/street-scenes/versions/{multi.number}/quality/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "age_band" in html and "q-fill" in html and "<script" not in html
    assert "Krippendorff" in html


def test_the_dataset_page_links_the_quality_card(client, multi):
    client.get(f"/governance/datasets/street-scenes/versions/{multi.number}/quality/")  # computes the reports
    html = client.get("/datasets/street-scenes/").content.decode()
    assert 'id="quality"' in html and "AI Act evidence pack" in html
    assert "Review queue" not in html  # the supplier's alone


def test_the_auditor_reads_and_downloads_the_evidence_pack(client_for, auditor, multi):
    client = client_for(auditor)
    page = client.get(f"/governance/datasets/street-scenes/versions/{multi.number}/quality/compliance/")
    assert page.status_code == 200 and "10(2)(f)" in page.content.decode()
    download = client.get(
        f"/governance/datasets/street-scenes/versions/{multi.number}/quality/compliance/?format=json"
    )
    assert download["Content-Disposition"].startswith("attachment;")
    assert download.json()["dataset"] == "street-scenes"


@pytest.mark.parametrize("page", ["quality/", "quality/compliance/", "quality/review/"])
def test_pages_of_a_draft_are_a_404_for_an_outsider(client_for, outsider, draft_dataset, page):
    assert client_for(outsider).get(f"/governance/datasets/secret-draft/versions/1/{page}").status_code == 404


def test_the_review_page_is_the_suppliers_and_its_buttons_write_to_the_ledger(
    client_for, supplier, auditor, multi
):
    page = f"/governance/datasets/street-scenes/versions/{multi.number}/quality/review/"
    assert client_for(auditor).get(page).status_code == 404
    client = client_for(supplier)
    client.post(page, {"action": "build", "threshold": "0.8"})
    task = ReviewTask.objects.get()
    assert DISPUTED in client.get(page).content.decode()
    response = client.post(page, {"action": "reject", "task": task.pk, "note": "redo the second car"})
    assert response.status_code == 302
    assert ReviewTask.objects.get().status == "rejected"
    assert LabelEvent.objects.filter(action="rejected", actor="user:supplier").count() == 4


def test_the_report_task_does_nothing_when_the_reports_are_current(multi):
    assert compute_quality_reports(multi.pk)["computed"] == sorted(KINDS)
    assert compute_quality_reports(multi.pk) == {"version": multi.pk, "skipped": "reports are current"}
    assert compute_quality_reports(multi.pk, force=True)["computed"] == sorted(KINDS)
    assert compute_quality_reports(10**9)["skipped"] == "no such version"
