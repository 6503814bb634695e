"""Catalogue search: text (full-text on PostgreSQL), facets with counts, sorting, pagination; API and page agree."""

import pytest
from django.db import connection

from marketplace.catalogue import publication as catalogue_publication
from marketplace.formats import model as fmt
from marketplace.models import Offer
from tests import factories as f
from tests.conftest import build_version

from .buyer_support import fast_passwords  # noqa: F401

pytestmark = pytest.mark.django_db

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="full-text search is PostgreSQL's"
)


@pytest.fixture
def shelf(supplier_org):
    """Three listed datasets that differ in every facet, and a draft nobody else may count."""
    cc_by = f.LicenseFactory(
        spdx_id="CC-BY-4.0", name="CC BY 4.0", commercial_use=True, ai_training=True, derivatives=True
    )
    research = f.LicenseFactory(
        name="Research only", commercial_use=False, ai_training=True, derivatives=False
    )
    commercial = f.LicenseFactory(
        name="Commercial", commercial_use=True, ai_training=False, redistribution=False
    )

    streets = f.DatasetFactory(
        supplier=supplier_org,
        slug="street-scenes",
        title="Street Scenes",
        domain="autonomous-driving",
        task_types=["detection"],
        tags=["street"],
        summary="Cars and pedestrians in European cities.",
    )
    build_version(streets, items=5)
    f.OfferFactory(dataset=streets, license=cc_by, access_mode=Offer.AccessMode.OPEN, price=0)

    bridges = f.DatasetFactory(
        supplier=supplier_org,
        slug="bridges",
        title="Bridge Inspection",
        domain="infrastructure",
        task_types=["classification", "3d-detection"],
        tags=["drone"],
        summary="Concrete soffits with cracks and spalling.",
    )
    version = build_version(bridges, items=2, publish=False)
    version.schema.categories.filter(name="car").update(name="crack", geometry_types=[fmt.POLYLINE])
    catalogue_publication.publish_version(version=version)
    f.OfferFactory(dataset=bridges, license=commercial, access_mode=Offer.AccessMode.PURCHASE, price=4900)

    people = f.DatasetFactory(
        supplier=supplier_org,
        slug="people",
        title="Pedestrian Poses",
        domain="robotics",
        task_types=["keypoints"],
        tags=["people"],
        summary="Plazas with people walking.",
    )
    version = build_version(people, items=9, publish=False)
    f.AttributeSpecFactory(schema=version.schema, name="age_band", describes_person=True)
    catalogue_publication.publish_version(version=version)
    f.OfferFactory(dataset=people, license=research, access_mode=Offer.AccessMode.REQUEST, price=0)
    f.OfferFactory(dataset=people, license=commercial, access_mode=Offer.AccessMode.PURCHASE, price=12000)

    secret = f.DatasetFactory(
        supplier=supplier_org, slug="secret", title="Secret cracks", task_types=["detection"]
    )
    build_version(secret, publish=False)
    return {"streets": streets, "bridges": bridges, "people": people}


def slugs(api, query: str) -> list[str]:
    response = api.get(f"/api/v1/datasets/?{query}")
    assert response.status_code == 200, response.content
    return [d["slug"] for d in response.json()["results"]]


def test_search_finds_words_in_titles_summaries_and_class_names(shelf, api_for):
    api = api_for()
    assert slugs(api, "search=cities") == ["street-scenes"]
    assert slugs(api, "search=crack") == ["bridges"]  # a class name of its released version
    assert slugs(api, "search=infrastructure") == ["bridges"]
    assert slugs(api, "search=no-such-thing-anywhere") == []


def test_search_never_reveals_a_draft(shelf, api_for, outsider):
    assert "secret" not in slugs(api_for(outsider), "search=secret")
    assert "secret" not in slugs(api_for(outsider), "search=cracks")


@on_postgresql
def test_postgresql_search_stems_and_ranks_title_matches_first(shelf, api_for):
    api = api_for()
    # "inspections" stems to "inspect"; "pedestrian" is in one title and in the other's summary.
    assert slugs(api, "search=inspections") == ["bridges"]
    assert slugs(api, "search=pedestrian") == ["people", "street-scenes"]
    # websearch syntax: a minus excludes.
    assert slugs(api, "search=pedestrian -poses") == ["street-scenes"]


def test_it_filters_by_every_facet(shelf, api_for):
    api = api_for()
    assert slugs(api, "task_type=3d-detection") == ["bridges"]
    assert slugs(api, "annotation_kind=polyline") == ["bridges"]
    assert slugs(api, "category=crack") == ["bridges"]
    assert sorted(slugs(api, "commercial_use=true")) == ["bridges", "people", "street-scenes"]
    assert slugs(api, "derivatives=true") == ["street-scenes"]
    assert sorted(slugs(api, "ai_training=false")) == ["bridges"]
    assert slugs(api, "access_mode=request") == ["people"]
    assert slugs(api, "has_demographics=true") == ["people"]
    assert slugs(api, "domain=ROBOTICS") == ["people"]
    assert sorted(slugs(api, "min_items=5")) == ["people", "street-scenes"]
    assert slugs(api, "max_items=2") == ["bridges"]
    # The cheapest offer counts: the pose dataset is free on request, however much its purchase costs.
    assert sorted(slugs(api, "max_price=1000")) == ["people", "street-scenes"]
    assert sorted(slugs(api, "max_price=5000")) == ["bridges", "people", "street-scenes"]


def test_it_sorts_by_size_price_and_newest(shelf, api_for):
    api = api_for()
    assert slugs(api, "sort=largest") == ["people", "street-scenes", "bridges"]
    assert slugs(api, "sort=smallest") == ["bridges", "street-scenes", "people"]
    # By the cheapest offer; ties (two free datasets) newest first.
    assert slugs(api, "sort=price") == ["people", "street-scenes", "bridges"]
    assert slugs(api, "sort=-price") == ["bridges", "people", "street-scenes"]
    assert slugs(api, "sort=newest") == ["people", "bridges", "street-scenes"]


def test_an_unknown_sort_or_choice_is_a_400_in_one_error_shape(shelf, api_for):
    response = api_for().get("/api/v1/datasets/?sort=random")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_choice" and "sort" in response.json()["fields"]


def test_facets_count_each_value_with_the_other_filters_applied(shelf, api_for):
    body = api_for().get("/api/v1/datasets/facets/?task_type=keypoints&commercial_use=true").json()
    assert body["count"] == 1
    tasks = {row["value"]: row for row in body["facets"]["task_type"]}
    # Counted without the task filter itself but with commercial_use: all three allow commercial use.
    assert tasks["keypoints"] == {
        "value": "keypoints",
        "label": "Keypoints / pose",
        "count": 1,
        "selected": True,
    }
    assert tasks["detection"]["count"] == 1 and tasks["classification"]["count"] == 1
    # Counted with the task filter: only the pose dataset remains, and it has demographics.
    assert body["facets"]["has_demographics"][0]["count"] == 1
    assert {r["value"]: r["count"] for r in body["facets"]["access_mode"]} == {
        "open": 0,
        "purchase": 1,
        "request": 1,
    }
    licenses = {r["value"]: r["count"] for r in body["facets"]["license"]}
    assert licenses == {"Commercial": 1, "Research only": 1}
    terms = body["facets"]["commercial_use"][0]
    assert terms["count"] == 1 and terms["selected"] is True


def test_facets_never_count_a_draft(shelf, api_for, supplier, outsider):
    for_outsider = api_for(outsider).get("/api/v1/datasets/facets/").json()
    for_supplier = api_for(supplier).get("/api/v1/datasets/facets/").json()
    assert for_outsider["count"] == 3 and for_supplier["count"] == 4
    detection = {r["value"]: r["count"] for r in for_outsider["facets"]["task_type"]}["detection"]
    assert detection == 1


def test_the_list_says_how_big_and_how_cheap(shelf, api_for):
    rows = {d["slug"]: d for d in api_for().get("/api/v1/datasets/").json()["results"]}
    assert rows["people"]["images"] == 9 and rows["people"]["price_from"] == "0.00"
    assert rows["bridges"]["price_from"] == "4900.00"


def test_the_page_shows_facet_counts_and_shares_the_filters(shelf, client):
    html = client.get("/?task_type=keypoints").content.decode()
    assert "Pedestrian Poses" in html and "Street Scenes" not in html
    assert "Object detection (1)" in html and "Keypoints / pose (1)" in html
    assert "1 dataset match" in html


def test_the_page_sorts_and_paginates(shelf, client, supplier_org):
    for i in range(12):
        d = f.DatasetFactory(supplier=supplier_org, slug=f"extra-{i:02d}", title=f"Extra {i:02d}")
        build_version(d, items=1)
    first = client.get("/?sort=largest").content.decode()
    assert first.index("Pedestrian Poses") < first.index("Street Scenes")
    assert "Page 1 of 2" in first and "?sort=largest&page=2" in first
    second = client.get("/?sort=largest&page=2").content.decode()
    assert "Extra" in second and "Pedestrian Poses" not in second


def test_the_page_has_a_clear_empty_state(shelf, client):
    html = client.get("/?search=unicorns").content.decode()
    assert "No dataset matches these filters." in html and "clear them all" in html
