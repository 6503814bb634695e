"""Server-rendered pages (the browser tests in test_browser.py drive them in Chromium)."""

import pytest

from marketplace.models import Offer
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_the_catalogue_lists_published_datasets(published_version, draft_dataset, client):
    html = client.get("/").content.decode()
    assert "Street Scenes" in html and "Secret Draft" not in html
    assert "1 dataset" in html


def test_the_catalogue_page_uses_the_api_filters(published_version, client):
    assert "Street Scenes" in client.get("/?annotation_kind=keypoints").content.decode()
    assert "Street Scenes" not in client.get("/?annotation_kind=cuboid_3d").content.decode()


def test_the_dataset_page_shows_datasheet_schema_versions_and_offers(published_version, dataset, client):
    f.OfferFactory(
        dataset=dataset,
        license=f.LicenseFactory(name="Commercial AI License"),
        access_mode=Offer.AccessMode.PURCHASE,
        price=4900,
    )
    html = client.get("/datasets/street-scenes/").content.decode()
    for text in (
        "Detection research.",
        "Motivation",
        "Maintenance",
        "person",
        "17 points" if False else "3 points",
        "Commercial AI License",
        "4,900",
        "v1",
    ):
        assert text in html, text


def test_the_pages_load_nothing_from_other_hosts(published_version, client):
    for url in ("/", "/datasets/street-scenes/", "/accounts/login/"):
        html = client.get(url).content.decode()
        assert "https://" not in html.split("<body>")[0], url


def test_staff_cannot_rename_a_dataset_whose_slug_the_ledger_has_hashed(published_version, dataset, client):
    staff = f.UserFactory(username="moderator", is_staff=True, is_superuser=True)
    client.force_login(staff)
    html = client.get(f"/admin/marketplace/dataset/{dataset.pk}/change/").content.decode()
    assert 'name="slug"' not in html and "street-scenes" in html
    fresh = f.DatasetFactory(slug="no-events-yet")
    assert 'name="slug"' in client.get(f"/admin/marketplace/dataset/{fresh.pk}/change/").content.decode()
