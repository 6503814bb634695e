"""The catalogue and dataset pages in a real headless Chromium."""

import pytest

from marketplace.models import Offer
from tests import factories as f
from tests.browser import chromium_page
from tests.conftest import build_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def listed(supplier_org, supplier):
    streets = f.DatasetFactory(
        supplier=supplier_org, slug="street-scenes", title="Street Scenes", task_types=["detection"]
    )
    build_version(streets)
    f.OfferFactory(
        dataset=streets,
        license=f.LicenseFactory(spdx_id="CC-BY-4.0", name="CC BY 4.0"),
        access_mode=Offer.AccessMode.OPEN,
        price=0,
    )
    bridges = f.DatasetFactory(
        supplier=supplier_org,
        slug="bridges",
        title="Bridge Inspection",
        domain="infrastructure",
        task_types=["classification"],
    )
    build_version(bridges)
    draft = f.DatasetFactory(supplier=supplier_org, slug="secret-draft", title="Secret Draft")
    build_version(draft, publish=False)


def test_a_visitor_filters_the_catalogue_and_reads_a_datasheet(live_server, listed):
    with chromium_page() as page:
        page.goto(live_server.url + "/")
        cards = page.locator("article.dataset h2")
        assert sorted(cards.all_inner_texts()) == ["Bridge Inspection", "Street Scenes"]

        page.select_option("#id_task_type", "classification")
        page.click("text=Apply filters")
        page.wait_for_url("**task_type=classification**")
        assert page.locator("article.dataset h2").all_inner_texts() == ["Bridge Inspection"]

        page.goto(live_server.url + "/")
        page.click('article.dataset h2 a:text-is("Street Scenes")')
        page.wait_for_url("**/datasets/street-scenes/")
        assert page.locator("h1").inner_text() == "Street Scenes"
        assert page.locator("#datasheet ~ .card h3").first.inner_text() == "Motivation"
        assert "Detection research." in page.locator("dl.sheet").first.inner_text()
        assert page.locator("tr.category").count() == 2
        assert "CC-BY-4.0" in page.locator("tr.offer").inner_text()


def test_a_supplier_logs_in_and_sees_their_draft_that_visitors_do_not(live_server, listed):
    with chromium_page() as page:
        response = page.goto(live_server.url + "/datasets/secret-draft/")
        assert response.status == 404 and "Secret Draft" not in page.content()

        page.goto(live_server.url + "/accounts/login/?next=/")
        page.fill("#id_username", "supplier")
        page.fill("#id_password", "pass-word-123")
        page.click("button:has-text('Log in')")
        page.wait_for_url(live_server.url + "/")
        assert "Secret Draft" in page.locator("#result-count ~ .grid").inner_text()
        page.click('article.dataset h2 a:text-is("Secret Draft")')
        assert "Draft" in page.locator("#version h2").inner_text()
