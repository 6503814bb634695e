"""The read API: list, filters, detail, schema and docs, one error shape."""

import pytest

from marketplace.formats import model as fmt
from marketplace.models import Offer
from tests import factories as f
from tests.conftest import build_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue_fixture(published_version, dataset, supplier_org):
    """Three listed datasets with different tasks, kinds, domains and licenses."""
    cc_by = f.LicenseFactory(
        spdx_id="CC-BY-4.0", name="Creative Commons Attribution 4.0", commercial_use=True
    )
    research = f.LicenseFactory(name="Research only", commercial_use=False, ai_training=True)
    f.OfferFactory(dataset=dataset, license=cc_by, access_mode=Offer.AccessMode.OPEN, price=0)
    inspection = f.DatasetFactory(
        supplier=supplier_org,
        slug="bridges",
        title="Bridge inspection",
        domain="infrastructure",
        task_types=["classification"],
        tags=["drone"],
        summary="Concrete soffits.",
    )
    version = build_version(inspection, publish=False, items=1)
    version.schema.categories.filter(name="person").update(geometry_types=[fmt.CUBOID_2D])
    from marketplace.catalogue import publication as catalogue_publication

    catalogue_publication.publish_version(version=version)
    f.OfferFactory(dataset=inspection, license=research, access_mode=Offer.AccessMode.REQUEST, price=0)
    return {"streets": dataset, "bridges": inspection}


def slugs(response):
    assert response.status_code == 200, response.content
    return sorted(d["slug"] for d in response.json()["results"])


def test_the_list_is_paginated(catalogue_fixture, api_for):
    body = api_for().get("/api/v1/datasets/?page_size=1").json()
    assert body["count"] == 2 and len(body["results"]) == 1 and body["next"]


def test_it_filters_by_task_type(catalogue_fixture, api_for):
    assert slugs(api_for().get("/api/v1/datasets/?task_type=classification")) == ["bridges"]


def test_it_filters_by_annotation_kind(catalogue_fixture, api_for):
    assert slugs(api_for().get("/api/v1/datasets/?annotation_kind=cuboid_2d")) == ["bridges"]
    assert slugs(api_for().get("/api/v1/datasets/?annotation_kind=keypoints")) == ["street-scenes"]
    assert slugs(api_for().get("/api/v1/datasets/?annotation_kind=bbox")) == ["bridges", "street-scenes"]


def test_it_filters_by_license_and_terms(catalogue_fixture, api_for):
    assert slugs(api_for().get("/api/v1/datasets/?license=cc-by-4.0")) == ["street-scenes"]
    assert slugs(api_for().get("/api/v1/datasets/?commercial_use=true")) == ["street-scenes"]
    assert slugs(api_for().get("/api/v1/datasets/?commercial_use=false")) == ["bridges"]


def test_it_filters_by_domain_and_searches_text(catalogue_fixture, api_for):
    assert slugs(api_for().get("/api/v1/datasets/?domain=infrastructure")) == ["bridges"]
    assert slugs(api_for().get("/api/v1/datasets/?search=soffits")) == ["bridges"]
    assert slugs(api_for().get("/api/v1/datasets/?search=drone")) == ["bridges"]
    assert slugs(api_for().get("/api/v1/datasets/?search=nothing-like-this")) == []


def test_an_invalid_filter_value_is_a_400_with_a_code(catalogue_fixture, api_for):
    response = api_for().get("/api/v1/datasets/?annotation_kind=hologram")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_choice" and "annotation_kind" in body["fields"]


def test_the_detail_has_versions_datasheet_schema_and_offers(catalogue_fixture, api_for):
    body = api_for().get("/api/v1/datasets/street-scenes/").json()
    assert [v["number"] for v in body["versions"]] == [1]
    current = body["current"]
    assert {c["name"] for c in current["schema"]["categories"]} == {"car", "person"}
    person = next(c for c in current["schema"]["categories"] if c["name"] == "person")
    assert person["skeleton"] == [[1, 2], [1, 3]]
    sections = {s["key"]: s for s in current["datasheet"]["sections"]}
    assert list(sections) == [
        "motivation",
        "composition",
        "collection",
        "preprocessing",
        "uses",
        "distribution",
        "maintenance",
    ]
    assert sections["motivation"]["answers"][0]["answer"] == "Detection research."
    assert body["offers"][0]["license"]["spdx_id"] == "CC-BY-4.0"
    assert body["annotation_kinds"] == ["bbox", "keypoints"]


def test_a_missing_dataset_is_a_404_in_the_error_shape(api_for):
    response = api_for().get("/api/v1/datasets/nope/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Not found."}


def test_reads_are_open_but_writes_need_credentials(catalogue_fixture, api_for):
    response = api_for().post("/api/v1/datasets/", {"slug": "x"})
    assert response.status_code in (401, 403, 405)
    assert set(response.json()) >= {"code", "detail"}


def test_a_token_authenticates_api_calls(catalogue_fixture, api_for, supplier):
    from rest_framework.test import APIClient

    token = (
        APIClient()
        .post("/api/v1/auth/token/", {"username": "supplier", "password": "pass-word-123"})
        .json()["token"]
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/datasets/").status_code == 200
    api.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert api.get("/api/v1/datasets/").json()["code"] == "authentication_failed"


def test_the_openapi_schema_and_docs_are_served_without_a_cdn(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/datasets/{slug}/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn.jsdelivr" not in html and "unpkg" not in html
