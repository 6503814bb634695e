"""The supplier's write API: a dataset from nothing to a published, licensable version with a changelog."""

from __future__ import annotations

import hashlib

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import LabelEvent
from marketplace.models import Dataset, DatasetVersion, Label, License, Notification
from tests import factories as f

from .workspace_support import PDF_BYTES, REQUIRED_ANSWERS, SCHEMA, coco_zip, fast_passwords, upload_delivery  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.django_db

WS = "/api/v1/workspace/datasets"


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def cc_by(db):
    return f.LicenseFactory(spdx_id="CC-BY-4.0", name="Creative Commons Attribution 4.0")


def ok(response, code=200):
    assert response.status_code == code, response.content
    return response.json()


def test_a_supplier_takes_a_dataset_from_nothing_to_a_published_version(
    supplier, buyer, api_for, media, cc_by, django_capture_on_commit_callbacks
):
    api = api_for(supplier)

    # Given a new dataset: it starts as a draft v1 that holds the datasheet and schema.
    created = ok(
        api.post(
            f"{WS}/",
            {
                "title": "Crossings",
                "summary": "Cars and people at crossings.",
                "domain": "autonomous-driving",
                "task_types": ["detection"],
                "tags": ["street"],
            },
            format="json",
        ),
        201,
    )
    assert created["slug"] == "crossings" and created["supplier"] == "northwind" and created["draft"] == 1
    assert created["status"] == "draft"

    # When the supplier writes the datasheet, the schema, a guideline and an offer ...
    sheet = ok(api.patch(f"{WS}/crossings/versions/1/datasheet/", REQUIRED_ANSWERS, format="json"))
    assert sheet["missing"] == [] and 0 < sheet["completeness"] < 1
    schema = ok(api.put(f"{WS}/crossings/versions/1/schema/", SCHEMA, format="json"))
    assert [c["name"] for c in schema["categories"]] == ["car", "person"]
    assert [c["source_id"] for c in schema["categories"]] == [1, 2]
    assert schema["categories"][1]["skeleton"] == [[1, 2], [1, 3]]
    assert [a["name"] for a in schema["attributes"] if a["describes_person"]] == ["age_band"]

    text_gv = ok(
        api.post(
            f"{WS}/crossings/guidelines/",
            {"title": "Street guide", "tag": "v1.0", "text": "Tight boxes."},
            format="json",
        ),
        201,
    )
    assert text_gv["sha256"] == hashlib.sha256(b"Tight boxes.").hexdigest()
    pdf_gv = ok(
        api.post(
            f"{WS}/crossings/guidelines/",
            {
                "title": "Street guide",
                "tag": "v1.1",
                "document": SimpleUploadedFile("guide.pdf", PDF_BYTES),
                "change_notes": "Occlusion rules.",
            },
            format="multipart",
        ),
        201,
    )
    assert pdf_gv["sha256"] == hashlib.sha256(PDF_BYTES).hexdigest() and pdf_gv["has_document"]

    offer = ok(
        api.post(f"{WS}/crossings/offers/", {"license": cc_by.pk, "access_mode": "open"}, format="json"), 201
    )
    assert offer["license"]["spdx_id"] == "CC-BY-4.0" and offer["price"] == "0.00"

    # ... v1 still cannot be published: it holds no delivery.
    refused = api.post(f"{WS}/crossings/versions/1/publish/", {"release_notes": "First."}, format="json")
    assert refused.status_code == 400
    assert refused.json()["code"] == "not_publishable"
    assert refused.json()["missing"] == ["Deliveries: upload a delivery that ingests into this version."]

    # When a delivery lands, it fills the draft v1 that holds the datasheet and schema.
    upload_delivery(
        api,
        "crossings",
        coco_zip(boxes={1: [1, 1, 20, 10], 2: [5, 5, 30, 20], 3: [2, 2, 8, 8]}),
        django_capture_on_commit_callbacks,
    )
    v1 = ok(api.get(f"{WS}/crossings/versions/1/"))
    assert v1["status"] == "draft" and v1["missing"] == [] and v1["counts"]["items"] == 3
    assert v1["deliveries"][0]["status"] == "ingested"

    # Release notes are required too, and then the version is published.
    refused = api.post(f"{WS}/crossings/versions/1/publish/", {"release_notes": "  "}, format="json")
    assert refused.json()["missing"] == ["Release notes: say what changed in this version."]
    f.EntitlementFactory(
        organization=buyer.memberships.get().organization,
        dataset=Dataset.objects.get(slug="crossings"),
        license=cc_by,
    )
    with django_capture_on_commit_callbacks(execute=True):
        published = ok(
            api.post(
                f"{WS}/crossings/versions/1/publish/", {"release_notes": "First release."}, format="json"
            )
        )
    assert published["status"] == "published" and len(published["content_hash"]) == 64

    # Then: v1 is the first release, the dataset is listed, the ledger has the event, the buyer was told.
    dataset = Dataset.objects.get(slug="crossings")
    assert dataset.status == Dataset.Status.LISTED
    assert list(dataset.versions.values_list("number", "status")) == [(1, "published")]
    assert LabelEvent.objects.filter(dataset=dataset, action="version_published", version_number=1).exists()
    note = Notification.objects.get(recipient=buyer)
    assert note.kind == "new_version" and "First release." in note.body and note.emailed_at is not None
    assert [m.to for m in mail.outbox] == [[buyer.email]] and "version 1" in mail.outbox[0].subject
    catalogue = ok(api_for(buyer).get("/api/v1/datasets/crossings/"))
    assert catalogue["latest_version"]["number"] == 1

    # A published version cannot change.
    frozen = api.patch(f"{WS}/crossings/versions/1/datasheet/", {"purpose": "Changed."}, format="json")
    assert frozen.status_code == 409 and frozen.json()["code"] == "version_frozen"
    assert api.put(f"{WS}/crossings/versions/1/schema/", SCHEMA, format="json").status_code == 409


def test_a_fix_is_a_new_version_and_the_old_one_is_deprecated_with_a_reason(
    supplier, buyer, api_for, media, cc_by, django_capture_on_commit_callbacks
):
    api = api_for(supplier)
    ok(api.post(f"{WS}/", {"title": "Crossings", "summary": "s", "domain": "adas"}, format="json"), 201)
    ok(api.patch(f"{WS}/crossings/versions/1/datasheet/", REQUIRED_ANSWERS, format="json"))
    ok(api.post(f"{WS}/crossings/offers/", {"license": cc_by.pk, "access_mode": "open"}, format="json"), 201)
    ok(
        api.post(
            f"{WS}/crossings/guidelines/", {"title": "Guide", "tag": "v1.0", "text": "Boxes."}, format="json"
        ),
        201,
    )
    boxes = {1: [1, 1, 20, 10], 2: [5, 5, 30, 20], 3: [2, 2, 8, 8], 4: [10, 10, 5, 5]}
    upload_delivery(api, "crossings", coco_zip(boxes=boxes), django_capture_on_commit_callbacks)
    ok(api.post(f"{WS}/crossings/versions/1/publish/", {"release_notes": "First."}, format="json"))

    # Starting a draft is idempotent: the second call returns the same draft.
    assert api.post(f"{WS}/crossings/versions/").status_code == 201
    assert api.post(f"{WS}/crossings/versions/").status_code == 200
    sheet = ok(api.get(f"{WS}/crossings/versions/2/datasheet/"))
    assert sheet["answers"]["purpose"] == REQUIRED_ANSWERS["purpose"] and sheet["editable"]

    # A corrected delivery fills that draft v2: box 1 moved, box 4 gone, box 5 new, on the same three images.
    fixed = {1: [3, 1, 20, 10], 2: [5, 5, 30, 20], 3: [2, 2, 8, 8], 5: [40, 30, 6, 6]}
    upload_delivery(api, "crossings", coco_zip(boxes=fixed), django_capture_on_commit_callbacks)
    diff = ok(api.get(f"{WS}/crossings/diff/?from=1&to=2"))
    assert diff["items"] == {"before": 3, "after": 3, "added": 0, "removed": 0, "changed": 0, "unchanged": 3}
    assert {c["name"]: (c["before"], c["after"]) for c in diff["classes"]} == {
        "car": (2, 3),
        "person": (2, 1),
    }
    # Labels are matched by uid; COCO carries none, so how many match is up to ingest. The totals hold.
    labels = diff["labels"]
    assert (labels["before"], labels["after"]) == (4, 4)
    assert labels["after"] == labels["added"] + labels["changed"] + labels["unchanged"]
    assert labels["before"] == labels["removed"] + labels["changed"] + labels["unchanged"]
    # Without ?from= the diff compares with the latest release before ?to=.
    assert ok(api.get(f"{WS}/crossings/diff/?to=2"))["from"] == 1

    with django_capture_on_commit_callbacks(execute=True):
        ok(api.post(f"{WS}/crossings/versions/2/publish/", {"release_notes": "Fixed box 1."}, format="json"))
    f.EntitlementFactory(
        organization=buyer.memberships.get().organization,
        dataset=Dataset.objects.get(slug="crossings"),
        license=cc_by,
    )
    assert (
        api.post(f"{WS}/crossings/versions/1/deprecate/", {"reason": ""}, format="json").json()["code"]
        == "reason_required"
    )
    with django_capture_on_commit_callbacks(execute=True):
        body = ok(
            api.post(
                f"{WS}/crossings/versions/1/deprecate/", {"reason": "Box 1 was misplaced."}, format="json"
            )
        )
    assert body["status"] == "deprecated" and body["deprecation_reason"] == "Box 1 was misplaced."
    again = api.post(f"{WS}/crossings/versions/1/deprecate/", {"reason": "again"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "not_published"

    dataset = Dataset.objects.get(slug="crossings")
    assert LabelEvent.objects.filter(dataset=dataset, action="version_deprecated", version_number=1).exists()
    seen = ok(api_for(buyer).get("/api/v1/notifications/"))["results"]
    assert [n["kind"] for n in seen] == ["deprecation"] and "Box 1 was misplaced." in seen[0]["body"]
    assert ok(api_for(buyer).post("/api/v1/notifications/read/", {}, format="json"))["marked"] == 1
    assert ok(api_for(buyer).get("/api/v1/notifications/?unread=1"))["count"] == 0

    # Buyers read the same diff on the public endpoint, released versions only.
    public = ok(api_for(buyer).get("/api/v1/datasets/crossings/diff/?from=1&to=2"))
    assert public["labels"] == diff["labels"]


def test_publishing_an_incomplete_version_lists_everything_missing(supplier, api_for):
    api = api_for(supplier)
    ok(
        api.post(f"{WS}/", {"title": "Empty", "summary": "Nothing yet.", "domain": "retail"}, format="json"),
        201,
    )
    ok(api.patch(f"{WS}/empty/versions/1/datasheet/", {"purpose": "Shelf audits."}, format="json"))

    response = api.post(f"{WS}/empty/versions/1/publish/", {"release_notes": "Try."}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "not_publishable" and "4 things" not in body["detail"]
    assert body["missing"] == [
        "Datasheet, Composition: answer “What do the instances represent? How many are there of each type?”",
        "Datasheet, Collection process: answer “How was the data associated with each instance acquired?”",
        "Datasheet, Preprocessing, cleaning and labelling: answer “How were the labels made: guideline, tools, annotator pool, review and QA?”",
        "Datasheet, Uses: answer “What tasks is the dataset intended for?”",
        "Datasheet, Distribution: answer “How is it distributed, and under which license or terms of use?”",
        "Datasheet, Maintenance: answer “Who maintains the dataset and how can they be contacted?”",
        "Offers: add at least one active license offer, so buyers can get the data.",
        "Deliveries: upload a delivery that ingests into this version.",
    ]
    assert DatasetVersion.objects.get(dataset__slug="empty").status == "draft"
    assert ok(api.get(f"{WS}/empty/versions/1/"))["missing"] == body["missing"]


def test_an_inactive_offer_does_not_count(supplier, api_for, cc_by, published_version):
    api = api_for(supplier)
    offer = ok(
        api.post(f"{WS}/street-scenes/offers/", {"license": cc_by.pk, "access_mode": "open"}, format="json"),
        201,
    )
    ok(api.patch(f"{WS}/street-scenes/offers/{offer['id']}/", {"active": False}, format="json"))
    ok(api.post(f"{WS}/street-scenes/versions/"), 201)
    missing = ok(api.get(f"{WS}/street-scenes/versions/2/"))["missing"]
    assert "Offers: add at least one active license offer, so buyers can get the data." in missing


# --------------------------------------------------------------------------- refusals


def _steps(slug, offer_id):
    """Every workspace operation on one dataset: (method, path, body)."""
    base = f"{WS}/{slug}"
    return [
        ("get", f"{base}/", None),
        ("patch", f"{base}/", {"title": "Mine now"}),
        ("get", f"{base}/versions/", None),
        ("post", f"{base}/versions/", None),
        ("get", f"{base}/versions/1/", None),
        ("get", f"{base}/versions/1/datasheet/", None),
        ("patch", f"{base}/versions/1/datasheet/", {"purpose": "Mine now"}),
        ("put", f"{base}/versions/1/datasheet/", {"purpose": "Mine now"}),
        ("get", f"{base}/versions/1/schema/", None),
        ("put", f"{base}/versions/1/schema/", SCHEMA),
        ("post", f"{base}/versions/1/publish/", {"release_notes": "Mine now"}),
        ("post", f"{base}/versions/1/deprecate/", {"reason": "Mine now"}),
        ("get", f"{base}/diff/?from=1&to=2", None),
        ("get", f"{base}/guidelines/", None),
        ("post", f"{base}/guidelines/", {"title": "G", "tag": "v9", "text": "Mine now"}),
        ("get", f"{base}/offers/", None),
        ("post", f"{base}/offers/", {"license": 1, "access_mode": "open"}),
        ("get", f"{base}/offers/{offer_id}/", None),
        ("patch", f"{base}/offers/{offer_id}/", {"active": False}),
    ]


@pytest.mark.parametrize("who", ["buyer", "other_supplier", "auditor"])
def test_everyone_but_the_supplier_gets_404_at_every_step(
    who, request, api_for, published_version, dataset, cc_by
):
    offer = f.OfferFactory(dataset=dataset, license=cc_by, access_mode="open", price=0)
    user = request.getfixturevalue(who)
    before = (DatasetVersion.objects.count(), Label.objects.count(), License.objects.count())

    for method, path, body in _steps("street-scenes", offer.pk):
        response = getattr(api_for(user), method)(path, body, format="json")
        assert response.status_code == 404, (who, method, path, response.status_code)
        assert response.json()["code"] == "not_found"

    dataset.refresh_from_db()
    offer.refresh_from_db()
    assert dataset.title == "Street Scenes" and offer.active
    assert (DatasetVersion.objects.count(), Label.objects.count(), License.objects.count()) == before


def test_anonymous_callers_are_asked_to_authenticate(api_for, published_version, cc_by):
    for method, path, body in _steps("street-scenes", 1):
        response = getattr(api_for(), method)(path, body, format="json")
        assert response.status_code in (401, 403), (method, path)


def test_only_suppliers_create_datasets_and_lists_hold_only_their_own(
    supplier, buyer, other_supplier, api_for, published_version
):
    refused = api_for(buyer).post(f"{WS}/", {"title": "X", "summary": "x", "domain": "x"}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "not_a_supplier"
    assert [d["slug"] for d in ok(api_for(other_supplier).get(f"{WS}/"))["results"]] == ["their-dataset"]
    assert ok(api_for(buyer).get(f"{WS}/"))["results"] == []
    assert [d["slug"] for d in ok(api_for(supplier).get(f"{WS}/"))["results"]] == ["street-scenes"]


# --------------------------------------------------------------------------- validation


def test_the_schema_is_validated_with_messages_per_field(supplier, api_for):
    api = api_for(supplier)
    ok(api.post(f"{WS}/", {"title": "Poses", "summary": "s", "domain": "robotics"}, format="json"), 201)
    bad = {
        "categories": [
            {
                "name": "person",
                "geometry_types": ["keypoints", "sphere"],
                "keypoint_names": ["a", "b"],
                "skeleton": [[0, 1], [1, 3], [2, 2]],
            },
            {"name": "person", "geometry_types": []},
        ],
        "attributes": [
            {"name": "age", "type": "choice", "categories": ["dog"]},
            {
                "name": "tone",
                "type": "choice",
                "allowed_values": ["a", "b"],
                "target_distribution": {"a": 0.8, "b": 0.4},
            },
        ],
    }
    response = api.put(f"{WS}/poses/versions/1/schema/", bad, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_schema"
    fields = body["fields"]
    assert fields["categories[0].geometry_types"] == [
        "Unknown geometry kind sphere; use bbox, polygon, polyline, mask, keypoints, cuboid_2d, cuboid_3d, classification."
    ]
    assert fields["categories[0].skeleton"] == [
        "Bone 1 (0-1): keypoints are numbered from 1 to 2, as in COCO.",
        "Bone 2 (1-3): keypoints are numbered from 1 to 2, as in COCO.",
        "Bone 3 (2-2) joins a keypoint to itself.",
    ]
    assert "Choose at least one geometry kind" in fields["categories[1].geometry_types"][0]
    assert fields["categories"] == ["Two categories are named “person”."]
    assert fields["attributes[0].allowed_values"] == ["A choice attribute needs its allowed values."]
    assert fields["attributes[0].categories"] == ["No category named dog in this schema."]
    assert fields["attributes[1].target_distribution"] == ["The target shares add up to 1.2, more than 1."]


def test_a_category_with_labels_cannot_be_removed_from_a_draft(supplier, api_for, dataset):
    from tests.conftest import build_version

    build_version(dataset, publish=False)
    response = api_for(supplier).put(
        f"{WS}/street-scenes/versions/1/schema/",
        {"categories": [{"name": "car", "geometry_types": ["polygon"]}], "attributes": []},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["fields"]["categories"] == [
        "“car” has labels drawn as bbox; keep that geometry kind.",
        "“person” has 3 labels in this version and cannot be removed.",
    ]


def test_a_guideline_upload_must_be_a_pdf_and_tags_are_unique(supplier, api_for, media):
    api = api_for(supplier)
    ok(api.post(f"{WS}/", {"title": "G", "summary": "s", "domain": "d"}, format="json"), 201)
    fake = api.post(
        f"{WS}/g/guidelines/",
        {"title": "Guide", "tag": "v1", "document": SimpleUploadedFile("guide.pdf", b"<html>no</html>")},
        format="multipart",
    )
    assert fake.status_code == 400
    assert fake.json()["fields"]["document"] == ["This file is not a PDF (it does not start with %PDF-)."]
    assert api.post(f"{WS}/g/guidelines/", {"title": "Guide", "tag": "v1"}, format="json").json()[
        "fields"
    ] == {"text": ["Paste the guideline's text or upload its PDF."]}
    ok(api.post(f"{WS}/g/guidelines/", {"title": "Guide", "tag": "v1", "text": "x"}, format="json"), 201)
    clash = api.post(f"{WS}/g/guidelines/", {"title": "Guide", "tag": "v1", "text": "y"}, format="json")
    assert clash.status_code == 400 and clash.json()["code"] == "tag_taken"


def test_offers_are_validated(supplier, api_for, published_version, cc_by, other_supplier):
    api = api_for(supplier)
    foreign = f.LicenseFactory(name="Theirs", owner=other_supplier.memberships.get().organization)
    cases = [
        (
            {"license": cc_by.pk, "access_mode": "open", "price": "10"},
            "price",
            "An open offer is free; choose “purchase” to charge for it.",
        ),
        (
            {"license": cc_by.pk, "access_mode": "purchase"},
            "price",
            "A purchase has a price; choose “open” for a free download.",
        ),
        (
            {"license": foreign.pk, "access_mode": "open"},
            "license",
            "Choose a standard license or one of your own.",
        ),
        (
            {"license": cc_by.pk, "access_mode": "purchase", "price": "10", "currency": "euro"},
            "currency",
            "A currency is a three-letter ISO code, e.g. EUR.",
        ),
    ]
    for body, field, message in cases:
        response = api.post(f"{WS}/street-scenes/offers/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["fields"][field] == [message]
    custom = ok(
        api.post(
            "/api/v1/workspace/licenses/",
            {"name": "Northwind commercial", "text": "Terms.", "commercial_use": True, "seats": 5},
            format="json",
        ),
        201,
    )
    offer = ok(
        api.post(
            f"{WS}/street-scenes/offers/",
            {"license": custom["id"], "access_mode": "purchase", "price": "4900.00"},
            format="json",
        ),
        201,
    )
    assert offer["price"] == "4900.00" and offer["license"]["seats"] == 5
    assert custom["id"] not in [
        lic["id"] for lic in ok(api_for(other_supplier).get("/api/v1/workspace/licenses/"))
    ]


def test_the_slug_never_changes_because_the_ledger_hashes_it(supplier, api_for, published_version):
    response = api_for(supplier).patch(f"{WS}/street-scenes/", {"slug": "renamed"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "slug_immutable"
    edited = ok(
        api_for(supplier).patch(
            f"{WS}/street-scenes/", {"title": "Street Scenes 2026", "tags": ["a", " b ", "a"]}, format="json"
        )
    )
    assert edited["title"] == "Street Scenes 2026" and edited["tags"] == ["a", "b"]
