"""A supplier takes a dataset from nothing to a published version, in a real headless Chromium."""

from __future__ import annotations

import json
import re

import pytest

from marketplace.models import DatasetVersion
from tests import factories as f
from tests.browser import chromium_page, wait_for_js

from .workspace_support import PDF_BYTES, REQUIRED_ANSWERS, coco_zip, fast_passwords  # noqa: F401  (autouse fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_supplier_goes_from_nothing_to_a_published_version_in_the_browser(
    live_server, supplier, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    f.LicenseFactory(spdx_id="CC-BY-4.0", name="Creative Commons Attribution 4.0")
    archive = tmp_path / "crossings.zip"
    archive.write_bytes(coco_zip(boxes={1: [1, 1, 20, 10], 2: [5, 5, 30, 20], 3: [2, 2, 8, 8]}))
    guide = tmp_path / "guide.pdf"
    guide.write_bytes(PDF_BYTES)

    with chromium_page() as page:
        page.goto(live_server.url + "/accounts/login/?next=/workspace/")
        page.fill("#id_username", "supplier")
        page.fill("#id_password", "pass-word-123")
        page.click("button:has-text('Log in')")
        page.wait_for_url("**/workspace/")

        # A new dataset, then its datasheet.
        page.fill("#new-dataset #id_title", "Crossings")
        page.fill("#new-dataset #id_summary", "Cars and people at crossings.")
        page.fill("#new-dataset #id_domain", "autonomous-driving")
        page.click("text=Create the dataset")
        page.wait_for_url("**/workspace/crossings/versions/1/datasheet/")
        for name, answer in REQUIRED_ANSWERS.items():
            page.fill(f"#id_{name}", answer)
        page.click("text=Save the datasheet")
        assert "Datasheet saved: 25% answered." in page.locator("ul.messages").inner_text()

        # A guideline PDF and an open offer.
        page.click("nav.tabs >> text=Guidelines")
        page.fill("#id_title", "Street guide")
        page.fill("#id_tag", "v1.0")
        page.set_input_files("#id_document", str(guide))
        page.click("text=Add the version")
        assert "Street guide v1.0 added" in page.locator("ul.messages").inner_text()
        page.click("nav.tabs >> text=Offers")
        page.select_option("#id_access_mode", "open")
        page.click("text=Add the offer")
        assert page.locator("tr.offer").count() == 1

        # The overview says a delivery is missing and links to the upload page.
        page.click("nav.tabs >> text=Overview")
        assert "Deliveries: upload a delivery" in page.locator("#draft-status").inner_text()
        page.click("#draft-status a:text-is('Upload a delivery')")
        page.set_input_files("#id_archive", str(archive))
        page.select_option("#id_format", "coco")
        page.fill("#id_defaults", json.dumps({"guideline_version": "v1.0"}))
        page.click("button:has-text('Upload')")
        page.wait_for_url(re.compile(r".*/supplier/deliveries/\d+/$"))

        # The draft v1 now holds the delivery; its review page publishes it.
        page.goto(live_server.url + "/workspace/crossings/")
        page.click("text=Review and publish")
        page.wait_for_url("**/workspace/crossings/versions/1/")
        assert "3" in page.locator("#counts").inner_text()
        # The sample previews are real images, drawn with their labels by the preview service.
        wait_for_js(
            page,
            "[...document.querySelectorAll('.samples img')].length === 3 && "
            "[...document.querySelectorAll('.samples img')].every(i => i.complete && i.naturalWidth > 0)",
        )
        page.fill("#id_release_notes", "First release: three frames.")
        page.click("button:has-text('Publish version 1')")
        page.wait_for_url("**/datasets/crossings/#changelog")
        entry = page.locator("#changelog-v1")
        assert "First release: three frames." in entry.inner_text()
        assert "Published" in entry.inner_text()

    assert DatasetVersion.objects.get(dataset__slug="crossings", number=1).status == "published"
