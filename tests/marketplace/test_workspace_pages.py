"""The supplier's workspace pages through Django's test client: the whole journey, the refusals, the messages."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import GuidelineVersion
from marketplace.models import AttributeSpec, Category, Dataset, DatasetVersion, Offer
from tests import factories as f

from .workspace_support import PDF_BYTES, REQUIRED_ANSWERS, coco_zip, fast_passwords  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def cc_by(db):
    return f.LicenseFactory(spdx_id="CC-BY-4.0", name="Creative Commons Attribution 4.0")


def schema_post(categories: list[dict], attributes: list[dict]) -> dict:
    """A POST of the schema page's two formsets, rows as the supplier fills them in."""
    data = {
        "cat-TOTAL_FORMS": len(categories),
        "cat-INITIAL_FORMS": 0,
        "attr-TOTAL_FORMS": len(attributes),
        "attr-INITIAL_FORMS": 0,
    }
    for i, row in enumerate(categories):
        data |= {f"cat-{i}-{k}": v for k, v in row.items()}
    for i, row in enumerate(attributes):
        data |= {f"attr-{i}-{k}": v for k, v in row.items()}
    return data


def page(response, code=200) -> str:
    assert response.status_code == code, response.status_code
    return response.content.decode()


def test_a_supplier_publishes_a_dataset_through_the_pages(
    supplier, buyer, client_for, media, cc_by, django_capture_on_commit_callbacks
):
    client = client_for(supplier)
    assert "No dataset yet" in page(client.get("/workspace/"))

    # Create: the form checks what it can, then the datasheet is the next step.
    html = page(client.post("/workspace/", {"title": "", "summary": "x", "domain": "adas"}))
    assert "This field is required." in html
    response = client.post(
        "/workspace/",
        {
            "title": "Crossings",
            "summary": "Cars and people at crossings.",
            "domain": "adas",
            "task_types": "detection, segmentation",
        },
    )
    assert (
        response.status_code == 302 and response["Location"] == "/workspace/crossings/versions/1/datasheet/"
    )
    dataset = Dataset.objects.get(slug="crossings")
    assert dataset.task_types == ["detection", "segmentation"] and dataset.supplier.slug == "northwind"

    # Datasheet: every section on one page; saving tells what is still needed.
    html = page(client.get("/workspace/crossings/versions/1/datasheet/"))
    for title in (
        "Motivation",
        "Composition",
        "Collection process",
        "Preprocessing, cleaning and labelling",
        "Uses",
        "Distribution",
        "Maintenance",
    ):
        assert f'<h2 style="margin:0">{title}</h2>' in html
    response = client.post(
        "/workspace/crossings/versions/1/datasheet/", {"purpose": "Crossings."}, follow=True
    )
    assert "6 required answers still missing." in page(response)
    response = client.post("/workspace/crossings/versions/1/datasheet/", REQUIRED_ANSWERS, follow=True)
    assert "Datasheet saved: 25% answered." in page(response)

    # Schema: an invalid skeleton is refused next to its row, then a valid schema is saved.
    person = {
        "name": "person",
        "geometry_types": ["bbox", "keypoints"],
        "keypoint_names": "head, left_foot, right_foot",
    }
    html = page(
        client.post(
            "/workspace/crossings/versions/1/schema/", schema_post([person | {"skeleton": "1-4"}], [])
        )
    )
    assert "Bone 1 (1-4): keypoints are numbered from 1 to 3, as in COCO." in html
    html = page(
        client.post(
            "/workspace/crossings/versions/1/schema/", schema_post([person | {"skeleton": "1 to 2"}], [])
        )
    )
    assert "“1 to 2” is not a bone; write bones as 1-2, 1-3." in html
    response = client.post(
        "/workspace/crossings/versions/1/schema/",
        schema_post(
            [
                {"name": "car", "geometry_types": ["bbox"], "color": "#ff0000"},
                person | {"skeleton": "1-2, 1-3"},
            ],
            [
                {
                    "name": "age_band",
                    "type": "choice",
                    "scope": "label",
                    "allowed_values": "child, adult, senior",
                    "categories": "person",
                    "describes_person": "on",
                }
            ],
        ),
    )
    assert response.status_code == 302
    assert list(
        Category.objects.filter(schema__version__dataset=dataset).values_list("name", "skeleton")
    ) == [("car", []), ("person", [[1, 2], [1, 3]])]
    assert AttributeSpec.objects.get(schema__version__dataset=dataset).describes_person

    # Guideline as a PDF, hashed.
    response = client.post(
        "/workspace/crossings/guidelines/",
        {"title": "Street guide", "tag": "v1.0", "document": SimpleUploadedFile("guide.pdf", PDF_BYTES)},
    )
    assert response.status_code == 302
    assert (
        GuidelineVersion.objects.get(guideline__dataset=dataset).sha256
        == hashlib.sha256(PDF_BYTES).hexdigest()
    )

    # Offer: a purchase without a price is refused with the reason, an open offer is accepted.
    html = page(
        client.post(
            "/workspace/crossings/offers/",
            {
                "action": "offer",
                "license": cc_by.pk,
                "access_mode": "purchase",
                "price": "0",
                "currency": "EUR",
            },
        )
    )
    assert "A purchase has a price; choose “open” for a free download." in html
    client.post(
        "/workspace/crossings/offers/",
        {"action": "offer", "license": cc_by.pk, "access_mode": "open", "price": "0", "currency": "EUR"},
    )
    assert Offer.objects.get(dataset=dataset).access_mode == "open"

    # The draft's review page lists what is missing and links to the delivery upload.
    html = page(client.get("/workspace/crossings/versions/1/"))
    assert "Deliveries: upload a delivery that ingests into this version." in html
    assert 'href="/supplier/deliveries/?dataset=crossings"' in html and "disabled" in html

    # Upload on the ingest pages; the delivery fills the draft v1.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/supplier/deliveries/",
            {
                "dataset": "crossings",
                "format": "coco",
                "defaults": json.dumps({"guideline_version": "v1.0"}),
                "archive": SimpleUploadedFile(
                    "crossings.zip", coco_zip(boxes={1: [1, 1, 20, 10], 2: [5, 5, 30, 20]})
                ),
            },
        )
    assert response.status_code == 302
    html = page(client.get("/workspace/crossings/versions/1/"))
    assert "Datasheet answered, an offer is active, a delivery is ingested." in html
    assert "Validation report" in html and "images/train/0000.jpg" in html

    # Publishing without notes is refused with the reason; with notes, buyers see the changelog.
    response = client.post("/workspace/crossings/versions/1/publish/", {"release_notes": ""}, follow=True)
    assert "Release notes: say what changed in this version." in page(response)
    f.EntitlementFactory(organization=buyer.memberships.get().organization, dataset=dataset, license=cc_by)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/workspace/crossings/versions/1/publish/", {"release_notes": "First release."}
        )
    assert response.status_code == 302 and response["Location"] == "/datasets/crossings/#changelog"
    assert DatasetVersion.objects.get(dataset=dataset, number=1).status == "published"

    html = page(client_for(buyer).get("/datasets/crossings/"))
    assert 'id="changelog"' in html and "First release." in html
    assert "Edit this dataset in your workspace" not in html
    html = page(client_for(buyer).get("/notifications/"))
    assert "Crossings: version 1 is published" in html

    # Retire it with a reason, which the buyers then read.
    client = client_for(supplier)
    assert "Edit this dataset in your workspace" in page(client.get("/datasets/crossings/"))
    response = client.post("/workspace/crossings/versions/1/deprecate/", {"reason": ""}, follow=True)
    assert "Tell buyers why this version is retired." in page(response)
    client.post("/workspace/crossings/versions/1/deprecate/", {"reason": "Wrong boxes on 0001.jpg."})
    assert "Wrong boxes on 0001.jpg." in page(client_for(buyer).get("/datasets/crossings/"))


def test_the_catalogue_can_show_a_datasheets_completeness(published_version):
    from marketplace.templatetags.workspace_tags import datasheet_completeness

    assert datasheet_completeness(published_version) == 4  # 1 of 28 questions answered
    assert datasheet_completeness(None) is None


def test_a_published_version_is_read_only_and_a_new_draft_starts_from_it(
    supplier, client_for, published_version
):
    client = client_for(supplier)
    html = page(client.get("/workspace/street-scenes/versions/1/datasheet/"))
    assert "its datasheet can no longer change" in html and "<fieldset" in html and "disabled" in html
    response = client.post(
        "/workspace/street-scenes/versions/1/datasheet/", {"purpose": "Changed."}, follow=True
    )
    assert "cannot change; start a new draft instead." in page(response)
    assert DatasetVersion.objects.get(number=1).datasheet.purpose == "Detection research."

    response = client.post("/workspace/street-scenes/drafts/")
    assert response["Location"] == "/workspace/street-scenes/versions/2/"
    html = page(client.get("/workspace/street-scenes/versions/2/datasheet/"))
    assert "Detection research." in html and "Save the datasheet" in html


PAGES = [
    "/workspace/street-scenes/",
    "/workspace/street-scenes/guidelines/",
    "/workspace/street-scenes/offers/",
    "/workspace/street-scenes/versions/1/",
    "/workspace/street-scenes/versions/1/datasheet/",
    "/workspace/street-scenes/versions/1/schema/",
]
ACTIONS = [
    "/workspace/street-scenes/drafts/",
    "/workspace/street-scenes/versions/1/publish/",
    "/workspace/street-scenes/versions/1/deprecate/",
]


@pytest.mark.parametrize("who", ["buyer", "other_supplier"])
def test_other_users_get_404_on_every_workspace_page(who, request, client_for, published_version, dataset):
    client = client_for(request.getfixturevalue(who))
    for url in PAGES:
        assert client.get(url).status_code == 404, url
        assert client.post(url, {"title": "Mine", "purpose": "Mine"}).status_code == 404, url
    for url in ACTIONS:
        assert client.post(url, {"reason": "Mine", "release_notes": "Mine"}).status_code == 404, url
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 1
    assert Dataset.objects.get(pk=dataset.pk).title == "Street Scenes"


def test_a_buyer_has_no_workspace_and_visitors_are_sent_to_log_in(
    buyer, client, client_for, published_version
):
    response = client.get("/workspace/street-scenes/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client_for(buyer).get("/workspace/").status_code == 404


def test_the_workspace_lists_only_the_suppliers_own_datasets(
    supplier, other_supplier, client_for, published_version
):
    html = page(client_for(supplier).get("/workspace/"))
    assert "Street Scenes" in html and "their-dataset" not in html
    html = page(client_for(other_supplier).get("/workspace/"))
    assert "their-dataset" in html and "Street Scenes" not in html
