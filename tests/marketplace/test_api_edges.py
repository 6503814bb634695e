"""The API's edges a new client trips over: unknown paths and malformed ids answer the JSON error
shape; yes/no filters and unknown parameters are refused, not ignored; a purchase without an
idempotency key says what to fix first; the schema declares the errors; samples page."""

import json

import pytest
from openapi_spec_validator import validate as validate_openapi

from marketplace.models import Order
from tests import factories as f
from tests.conftest import build_version

from .buyer_support import fast_passwords, purchase_offer  # noqa: F401

pytestmark = pytest.mark.django_db

NOT_FOUND_PATHS = [
    "/api/v1/nope/",
    "/api/v1/datasets/street-scenes/versions/abc/",
    "/api/v1/datasets/street-scenes/versions/abc/samples/",
    "/api/v1/labels/not-a-uuid/history/",
    "/api/v1/exports/x1/",
    "/api/v2/datasets/",
]


@pytest.mark.parametrize("path", NOT_FOUND_PATHS)
@pytest.mark.parametrize("who", ["anonymous", "outsider"])
def test_unknown_paths_and_malformed_ids_answer_json_404(path, who, outsider, published_version, api_for):
    response = api_for(outsider if who == "outsider" else None).get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content) == {"code": "not_found", "detail": "Not found."}


def test_json_404_also_in_debug_and_pages_keep_their_html_404(client, settings, db):
    settings.DEBUG = True
    response = client.get("/api/v1/datasets/x/versions/abc/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    settings.DEBUG = False
    page = client.get("/datasets/x/versions/abc/samples/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_a_missing_trailing_slash_still_redirects(client, db):
    response = client.get("/api/v1/datasets")
    assert response.status_code == 301
    assert response["Location"].endswith("/api/v1/datasets/")


@pytest.mark.parametrize(
    "query, code",
    [
        ("commercial_use=maybe", "invalid_boolean"),
        ("has_demographics=perhaps", "invalid_boolean"),
        ("ai_training=2", "invalid_boolean"),
        ("ordering=price", "unknown_parameter"),
        ("comercial_use=true", "unknown_parameter"),  # a typo no longer answers the unfiltered list
        ("sort=cheapest", "invalid_choice"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/api/v1/datasets/", "/api/v1/datasets/facets/"])
def test_bad_query_parameters_answer_400_with_a_code(
    query, code, endpoint, outsider, published_version, api_for
):
    response = api_for(outsider).get(f"{endpoint}?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code
    assert len(body["detail"]) < 500
    if query.startswith("ordering"):
        assert "?sort=" in body["detail"]


def test_a_long_unknown_parameter_is_not_echoed_whole(api_for, db):
    name = "x" * 5000
    body = api_for().get(f"/api/v1/datasets/?{name}=1").json()
    assert body["code"] == "unknown_parameter"
    assert "x" * 41 not in body["detail"]


def test_valid_booleans_and_paging_still_filter(published_version, api_for, supplier_org):
    # The published dataset's only offer allows commercial use; a second dataset's forbids it.
    f.OfferFactory(dataset=published_version.dataset, license=f.LicenseFactory(commercial_use=True))
    other = f.DatasetFactory(supplier=supplier_org, slug="research-only")
    build_version(other)
    f.OfferFactory(dataset=other, license=f.LicenseFactory(commercial_use=False, name="Research"))
    api = api_for()
    yes = api.get("/api/v1/datasets/?commercial_use=true&page=1&page_size=5").json()
    no = api.get("/api/v1/datasets/?commercial_use=false").json()
    everything = api.get("/api/v1/datasets/?commercial_use=").json()
    assert [d["slug"] for d in yes["results"]] == ["street-scenes"]
    assert "research-only" in [d["slug"] for d in no["results"]]
    assert "street-scenes" not in [d["slug"] for d in no["results"]]
    assert everything["count"] == 2


def test_notifications_unread_refuses_a_non_boolean(buyer, api_for):
    assert api_for(buyer).get("/api/v1/notifications/?unread=true").status_code == 200
    response = api_for(buyer).get("/api/v1/notifications/?unread=sometimes")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_boolean"


@pytest.mark.parametrize("who", ["buyer", "outsider"])
def test_purchase_without_a_key_checks_the_license_first(who, buyer, outsider, published_version, api_for):
    offer = purchase_offer(published_version.dataset, price=100)
    api = api_for(buyer if who == "buyer" else outsider)
    url = f"/api/v1/offers/{offer.pk}/purchase/"
    refused = api.post(url, {"accept_license": False}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, "license_not_accepted")
    keyless = api.post(url, {"accept_license": True}, format="json")
    assert (keyless.status_code, keyless.json()["code"]) == (400, "idempotency_key_required")
    assert not Order.objects.exists()
    done = api.post(url, {"accept_license": True}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert done.status_code == 201
    again = api.post(url, {"accept_license": True}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.json()["id"] == done.json()["id"]
    assert Order.objects.count() == 1


def test_purchase_anonymous_is_refused_in_json(published_version, api_for):
    offer = purchase_offer(published_version.dataset, price=100)
    response = api_for().post(f"/api/v1/offers/{offer.pk}/purchase/", {"accept_license": True}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def _schema(client):
    return json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)


def test_the_schema_declares_the_error_shape_on_every_operation(client, db):
    schema = _schema(client)
    validate_openapi(schema)
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "detail"}
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 40
    for path, method, op in operations:
        for status in ("400", "401", "403", "404"):
            assert status in op["responses"], (path, method, status)
    purchase = schema["paths"]["/api/v1/offers/{offer_id}/purchase/"]["post"]
    key = next(p for p in purchase["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header"
    assert key["required"] is True
    assert purchase["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_error_answers_match_the_declared_shape(client, outsider, api_for, db):
    """The shape the schema declares is the shape answered (checked with jsonschema, not by hand)."""
    import jsonschema

    error = _schema(client)["components"]["schemas"]["Error"]
    answers = [
        api_for(outsider).get("/api/v1/nope/").json(),
        api_for(outsider).get("/api/v1/datasets/?commercial_use=maybe").json(),
        api_for().post("/api/v1/offers/1/purchase/", {}, format="json").json(),
        api_for(outsider).get("/api/v1/datasets/?ordering=price").json(),
    ]
    for answer in answers:
        jsonschema.validate(answer, error)


# --------------------------------------------------------------------------- samples paging


@pytest.fixture
def thirty(dataset):
    return build_version(dataset, number=1, items=30)


@pytest.mark.parametrize("who", ["anonymous", "outsider"])
def test_samples_page_through_every_item_once(who, thirty, outsider, api_for):
    api = api_for(outsider if who == "outsider" else None)
    url = "/api/v1/datasets/street-scenes/versions/1/samples/?page_size=12"
    seen, pages = [], 0
    while url:
        body = api.get(url).json()
        assert body["count"] == 30
        assert len(body["results"]) <= 12
        seen += [r["id"] for r in body["results"]]
        pages += 1
        url = body["next"]
    assert pages == 3
    assert sorted(seen) == sorted(thirty.items.values_list("pk", flat=True))
    assert len(seen) == len(set(seen))
    last = api.get("/api/v1/datasets/street-scenes/versions/1/samples/?page_size=12&page=3").json()
    assert last["previous"].endswith("page=2") or "page=2" in last["previous"]
    first = api.get("/api/v1/datasets/street-scenes/versions/1/samples/?page_size=12").json()
    assert first["previous"] is None
    # Page 1 is the stratified selection the endpoint always answered.
    assert [r["id"] for r in first["results"]] == seen[:12]


def test_samples_paging_edges(thirty, api_for):
    api = api_for()
    base = "/api/v1/datasets/street-scenes/versions/1/samples/"
    beyond = api.get(f"{base}?page_size=12&page=4")
    assert (beyond.status_code, beyond.json()["code"]) == (404, "not_found")
    assert api.get(f"{base}?page=abc").json()["code"] == "invalid_limit"
    capped = api.get(f"{base}?page_size=500").json()
    assert len(capped["results"]) == 30  # at most 48 a page; 30 is all there is
    by_split = api.get(f"{base}?split=val").json()
    assert by_split["count"] == 1
    legacy = api.get(f"{base}?limit=5").json()
    assert len(legacy["results"]) == 5


def test_samples_of_a_draft_stay_private_with_paging(draft_dataset, outsider, api_for):
    response = api_for(outsider).get("/api/v1/datasets/secret-draft/versions/1/samples/?page=2")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_deep_samples_page_costs_the_same_queries_as_the_second(dataset, api_for):
    """Bounded per page: the stratified head, the count and one offset query, whatever the page."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    build_version(dataset, number=1, items=60)
    api = api_for()
    base = "/api/v1/datasets/street-scenes/versions/1/samples/?page_size=6"
    counts = {}
    for page in (2, 10):
        with CaptureQueriesContext(connection) as queries:
            body = api.get(f"{base}&page={page}").json()
        assert len(body["results"]) == 6
        counts[page] = len(queries)
    assert counts[10] == counts[2], counts
