"""A buyer's journey and a supplier's decision, in a real headless Chromium.

Buyer: search → dataset → samples (previews, legend, a label's tooltip) → license (read, accept, buy)
→ library → export → download. Supplier: approve an access request. A failing step leaves a
screenshot in var/test-screenshots/.
"""

import io
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from marketplace.licensing import service as licensing
from marketplace.models import AccessRequest, Order
from tests import factories as f
from tests.browser import chromium_page, wait_for_js

from .buyer_support import purchase_offer, request_offer, version_with_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(django_settings.BASE_DIR) / "var" / "test-screenshots"


@contextmanager
def journey(name: str):
    """A browser page; if anything inside fails, a full-page screenshot is kept for the reader."""
    with chromium_page() as page:
        try:
            yield page
        except BaseException:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            path = SCREENSHOTS / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"screenshot of the failure: {path}")
            raise


def log_in(page, base: str, username: str, then: str = "/") -> None:
    page.goto(f"{base}/accounts/login/?next={then}")
    page.fill("#id_username", username)
    page.fill("#id_password", "pass-word-123")
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}{then}")


@pytest.fixture
def shop(settings, tmp_path, dataset, supplier, buyer):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for user in (supplier, buyer):  # re-hash with the fast hasher the test just switched to
        user.set_password("pass-word-123")
        user.save()
    gv = f.GuidelineVersionFactory(guideline=f.GuidelineFactory(dataset=dataset), tag="v2.1")
    annotator = f.AnnotatorFactory(organization=dataset.supplier, pseudonym="A-42")
    version_with_images(dataset, items=4, guideline_version=gv, annotator=annotator)
    other = f.DatasetFactory(
        supplier=dataset.supplier,
        slug="harbour-cranes",
        title="Harbour Cranes",
        domain="logistics",
        summary="Container cranes in ports.",
        tags=["port"],
    )
    version_with_images(other, items=1)
    return {
        "buy": purchase_offer(dataset, price=4900, seats=5, duration_days=365),
        "ask": request_offer(dataset),
    }


def test_a_buyer_finds_previews_licenses_exports_and_downloads(live_server, shop, buyer):
    base = live_server.url
    with journey("buyer-journey") as page:
        log_in(page, base, "buyer")

        # Search.
        page.fill("#id_search", "street")
        page.click("button:has-text('Search')")
        page.wait_for_url("**search=street**")
        assert page.locator("article.dataset h2").all_inner_texts() == ["Street Scenes"]

        # The dataset, then its samples with labels drawn.
        page.click("article.dataset h2 a:text-is('Street Scenes')")
        page.wait_for_url("**/datasets/street-scenes/")
        page.click("#view-samples")
        page.wait_for_url("**/datasets/street-scenes/versions/1/samples/")
        assert "watermarked" in page.locator("#entitlement-banner").inner_text()
        first = page.locator("article.sample img").first
        first.scroll_into_view_if_needed()
        wait_for_js(page, "img => img.complete && img.naturalWidth > 0", first.element_handle())
        assert page.evaluate("img => img.naturalWidth", first.element_handle()) <= 512
        legend = page.locator("#legend").inner_text()
        assert "car" in legend and "person" in legend
        hotspot = page.locator("article.sample .hotspot").last
        hotspot.hover()
        tip = hotspot.locator(".tip")
        assert tip.is_visible()
        assert "Annotator: A-42" in tip.inner_text() and "Guideline: v2.1" in tip.inner_text()

        # The license: read it, accept it, buy.
        page.goto(f"{base}/datasets/street-scenes/")
        page.click("tr.offer a:has-text('Buy license')")
        assert "Train and ship models inside the licensee" in page.locator("#license-text").inner_text()
        page.check("#id_accept_license")
        page.click("#license-submit")
        page.wait_for_url(f"{base}/library/")
        entitlement = page.locator("section.ent").first
        assert (
            "Street Scenes" in entitlement.inner_text()
            and "You accepted the license." in entitlement.inner_text()
        )
        assert entitlement.locator(".expiry").inner_text()  # a date a year ahead
        assert Order.objects.get().invoice_number in page.locator("tr.order").inner_text()

        # Export, then download over the signed link.
        entitlement.locator("select[name=format]").select_option("coco")
        entitlement.locator("button:has-text('Export')").click()
        page.wait_for_url(f"{base}/library/")
        row = page.locator("tr.export").first
        assert "Ready" in row.inner_text(), row.inner_text()
        with page.expect_download() as download:
            row.locator("a.download").click()
        archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
        assert any(name.endswith(".json") for name in archive.namelist())
        page.reload()
        assert "buyer" in page.locator("tr.download-row").first.inner_text()

        # Licensed now: previews without the watermark, originals linked.
        page.goto(f"{base}/datasets/street-scenes/versions/1/samples/")
        assert "You are licensed" in page.locator("#entitlement-banner").inner_text()
        assert page.locator("a.original").count() == 4


def test_a_supplier_approves_a_request_and_the_buyer_sees_it(live_server, shop, buyer, supplier):
    licensing.request_access(
        user=buyer, offer=shop["ask"], accept_license=True, message="For a pedestrian-safety study"
    )
    base = live_server.url
    with journey("supplier-approves") as page:
        log_in(page, base, "supplier", then="/supplier/requests/")
        request = page.locator("section.request").first
        assert "For a pedestrian-safety study" in request.inner_text()
        request.locator("button.reject").click()  # no reason: refused, nothing decided
        page.wait_for_url(f"{base}/supplier/requests/")
        assert "Say why the request is rejected" in page.locator("ul.messages").inner_text()
        page.locator("section.request").first.locator("button.approve").click()
        page.wait_for_url(f"{base}/supplier/requests/")
        assert "approved" in page.locator("ul.messages").inner_text()
        assert page.locator("#no-pending").is_visible()
        assert "Approved" in page.locator("tr.decided").first.inner_text()
        assert AccessRequest.objects.get().status == AccessRequest.Status.APPROVED

        # The buyer, in a separate session of the same browser (starting Chromium again costs seconds).
        page = page.context.browser.new_context().new_page()
        log_in(page, base, "buyer", then="/library/")
        assert "Approved" in page.locator("tr.access-request").inner_text()
        assert "Research only" in page.locator("section.ent").first.inner_text()
