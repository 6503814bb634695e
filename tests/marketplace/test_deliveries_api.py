"""Deliveries over the API and the supplier's pages: upload (202), follow, and nobody else sees a thing."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from marketplace.models import Delivery

from . import ingest_support as support
from .ingest_support import coco_doc, coco_files, make_delivery, row_counts, storage_files, zip_bytes

pytestmark = pytest.mark.django_db

media = support.media  # fixture


def _archive(files=None, name="delivery.zip"):
    return SimpleUploadedFile(name, zip_bytes(files or coco_files()), content_type="application/zip")


@pytest.fixture
def post(api_for, django_capture_on_commit_callbacks):
    """POST an upload as a user; the eager task runs when the request's work commits."""

    def go(user, slug="street-scenes", **data):
        data.setdefault("archive", _archive())
        with django_capture_on_commit_callbacks(execute=True):
            return api_for(user).post(f"/api/v1/datasets/{slug}/deliveries/", data, format="multipart")

    return go


def test_a_supplier_uploads_a_delivery_and_gets_202_with_it(supplier, dataset, media, post, api_for):
    response = post(supplier, defaults=json.dumps({"source": "human"}))

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["dataset"] == "street-scenes" and body["original_name"] == "delivery.zip"
    delivery = Delivery.objects.get(pk=body["id"])
    assert delivery.uploaded_by == supplier and delivery.defaults == {"source": "human"}

    detail = api_for(supplier).get(f"/api/v1/deliveries/{body['id']}/").json()
    assert detail["status"] == "ingested" and detail["progress"] == 100 and detail["version"] == 1
    assert detail["format"] == "coco" and detail["counts"]["items"] == 2 and detail["counts"]["labels"] == 3
    assert detail["report"] == [] and detail["problem_counts"] == {"error": 0, "warning": 0, "info": 0}
    assert detail["provenance"]["shares"]["none"] == 1.0


def test_a_failed_delivery_shows_its_report_as_a_list(supplier, dataset, media, post, api_for):
    doc = coco_doc([("0000.jpg", 64, 48)], [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]}])
    body = post(supplier, archive=_archive(coco_files(n_images=1, doc=doc))).json()

    detail = api_for(supplier).get(f"/api/v1/deliveries/{body['id']}/").json()

    assert detail["status"] == "failed" and detail["version"] is None
    assert detail["report"] == [
        {
            "severity": "error",
            "code": "unknown_category",
            "file": "annotations/instances_train.json",
            "location": "/annotations/0/category_id",
            "message": "category_id 7 is not in categories",
        }
    ]


def test_the_format_can_be_given(supplier, dataset, media, post, api_for):
    body = post(supplier, format="yolo").json()
    detail = api_for(supplier).get(f"/api/v1/deliveries/{body['id']}/").json()
    assert detail["status"] == "failed" and detail["report"][0]["code"] == "missing_schema"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"format": "pdf"}, "invalid_choice"),
        ({"defaults": "not json"}, "invalid_defaults"),
        ({"defaults": "[1, 2]"}, "invalid_defaults"),
        ({"defaults": json.dumps({"annotator": "jane@example.com"})}, "invalid_defaults"),
        ({"archive": ""}, "invalid"),
    ],
)
def test_a_bad_upload_is_a_400_and_stores_nothing(supplier, dataset, media, post, data, code):
    response = post(supplier, **data)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert not Delivery.objects.exists() and not storage_files(media)


def test_the_supplier_lists_deliveries_per_dataset_and_overall(supplier, dataset, media, post, api_for):
    post(supplier)
    post(supplier)
    api = api_for(supplier)
    per_dataset = api.get("/api/v1/datasets/street-scenes/deliveries/").json()
    overall = api.get("/api/v1/deliveries/").json()
    assert per_dataset["count"] == 2 and overall["count"] == 2
    assert [d["version"] for d in per_dataset["results"]] == [2, 1]


@pytest.mark.parametrize("who", ["outsider", "buyer", "other_supplier", "anonymous"])
def test_nobody_but_the_supplier_can_upload_or_see_deliveries(
    who, request, supplier, dataset, media, api_for, post
):
    user = None if who == "anonymous" else request.getfixturevalue(who)
    delivery = make_delivery(dataset, coco_files(), user=supplier)
    rows = row_counts()

    assert post(user).status_code == 404
    api = api_for(user)
    assert api.get(f"/api/v1/deliveries/{delivery.pk}/").status_code == 404
    assert api.get("/api/v1/datasets/street-scenes/deliveries/").status_code == 404
    assert api.get("/api/v1/deliveries/").json()["count"] == 0
    assert row_counts() == rows


def test_another_supplier_cannot_upload_to_a_dataset_it_does_not_supply(other_supplier, dataset, media, post):
    assert post(other_supplier, slug="street-scenes").status_code == 404
    # ... but can to its own.
    assert post(other_supplier, slug="their-dataset").status_code == 202


# --------------------------------------------------------------------------- the supplier's pages


def test_the_supplier_uploads_on_the_page_and_reads_the_report(
    supplier, dataset, media, client_for, django_capture_on_commit_callbacks
):
    client = client_for(supplier)
    page = client.get("/supplier/deliveries/")
    assert page.status_code == 200 and b"Upload a delivery" in page.content

    doc = coco_doc([("0000.jpg", 64, 48)], [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]}])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/supplier/deliveries/",
            {
                "dataset": "street-scenes",
                "format": "auto",
                "archive": _archive(coco_files(n_images=1, doc=doc)),
            },
        )
    delivery = Delivery.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/supplier/deliveries/{delivery.pk}/"

    detail = client.get(response["Location"])
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "Failed" in html and "unknown_category" in html and "/annotations/0/category_id" in html
    assert "Nothing was changed" in html

    listing = client.get("/supplier/deliveries/").content.decode()
    assert f"/supplier/deliveries/{delivery.pk}/" in listing and "1 error" in listing


def test_a_running_delivery_page_refreshes_itself(supplier, dataset, media, client_for):
    delivery = make_delivery(dataset, coco_files())
    Delivery.objects.filter(pk=delivery.pk).update(
        status="validating", progress=40, report={"stage": "checking images"}
    )
    html = client_for(supplier).get(f"/supplier/deliveries/{delivery.pk}/").content.decode()
    assert 'http-equiv="refresh"' in html and "40%" in html and "checking images" in html


@pytest.mark.parametrize("who", ["outsider", "buyer", "other_supplier"])
def test_the_delivery_pages_are_a_404_for_everyone_else(who, request, supplier, dataset, media, client_for):
    delivery = make_delivery(dataset, coco_files(), user=supplier)
    client = client_for(request.getfixturevalue(who))
    assert client.get(f"/supplier/deliveries/{delivery.pk}/").status_code == 404
    if who != "other_supplier":
        assert client.get("/supplier/deliveries/").status_code == 404
    else:
        assert (
            str(delivery.pk)
            not in client.get("/supplier/deliveries/").content.decode().split("Your deliveries")[1]
        )


def test_the_delivery_pages_ask_an_anonymous_visitor_to_log_in(dataset, media, client):
    delivery = make_delivery(dataset, coco_files())
    response = client.get(f"/supplier/deliveries/{delivery.pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_supplier_uploads_in_a_real_browser_and_reads_the_outcome(
    live_server, supplier, dataset, media, tmp_path
):
    from tests.browser import chromium_page

    archive = tmp_path / "street-delivery.zip"
    archive.write_bytes(zip_bytes(coco_files(n_images=2)))
    with chromium_page() as page:
        page.goto(live_server.url + "/accounts/login/?next=/supplier/deliveries/")
        page.fill("#id_username", "supplier")
        page.fill("#id_password", "pass-word-123")
        page.click("button:has-text('Log in')")
        page.wait_for_url("**/supplier/deliveries/")
        page.select_option("#id_dataset", "street-scenes")
        page.set_input_files("#id_archive", str(archive))
        page.click("button:has-text('Upload and check')")
        page.wait_for_url("**/supplier/deliveries/*/")
        assert "Ingested" in page.locator("h1").inner_text()
        assert "version 1" in page.locator("section.card").inner_text()
        assert page.locator("[role=progressbar]").get_attribute("aria-valuenow") == "100"
        page.click("text=← Deliveries")
        assert "street-delivery.zip" in page.locator("table").inner_text()
