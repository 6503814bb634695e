"""A new user of each demo role starts at the home page and reaches, by clicking, what the README says they can do.

Runs on the demo catalogue that `make demo` loads, with the demo accounts the README lists, in a
real headless Chromium.
"""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command

from marketplace.demo.delivery import delivery_path
from marketplace.demo.drawing import DEMO_ACCOUNTS
from marketplace.models import DatasetVersion
from tests.browser import chromium_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORDS = {username: password for username, password, *_ in DEMO_ACCOUNTS}


@pytest.fixture
def demo(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("demo", stdout=io.StringIO())


def log_in_from_home(page, base: str, username: str) -> None:
    page.goto(base + "/")
    page.click("#nav-login")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORDS[username])
    page.click("button:has-text('Log in')")


def header_links(page) -> list[str]:
    return [t.strip() for t in page.locator("header.site a").all_inner_texts()]


def assert_header_is_readable(page) -> None:
    """The header bar keeps its height and its links: no page style may collapse it."""
    box = page.locator("header.site .bar").bounding_box()
    assert box is not None and box["height"] >= 30 and box["width"] >= 600
    assert page.locator("#nav-notifications").is_visible()


def test_a_supplier_lands_on_the_workspace_and_reaches_deliveries_requests_and_the_draft(live_server, demo):
    with chromium_page() as page:
        log_in_from_home(page, live_server.url, "supplier")
        page.wait_for_url("**/workspace/")
        links = header_links(page)
        for name in ("Workspace", "Deliveries", "Requests", "Notifications"):
            assert any(link.startswith(name) for link in links), (name, links)
        assert "Governance" not in links and "Admin" not in links

        # The draft v3 of Urban Street Scenes waits for its delivery: the README's zip fills it.
        page.click("#datasets a:has-text('Urban Street Scenes')")
        page.click("#draft-status a:text-is('Upload a delivery')")
        page.set_input_files("#id_archive", str(delivery_path("urban-street-scenes", 3)))
        page.select_option("#id_format", "coco")
        page.click("button:has-text('Upload')")
        page.wait_for_url(re.compile(r".*/supplier/deliveries/\d+/$"))
        assert_header_is_readable(page)
        assert "ingested" in page.locator("main").inner_text().lower()

        page.click("#nav-deliveries")
        page.wait_for_url("**/supplier/deliveries/")
        assert_header_is_readable(page)

        # Its diff with v2, then publish it.
        page.click("#nav-workspace")
        page.click("#datasets a:has-text('Urban Street Scenes')")
        page.click("text=Review and publish")
        page.wait_for_url("**/workspace/urban-street-scenes/versions/3/")
        assert "v2" in page.locator("main").inner_text()
        page.fill("#id_release_notes", "Four new frames.")
        page.click("button:has-text('Publish version 3')")
        page.wait_for_load_state()
        assert DatasetVersion.objects.get(dataset__slug="urban-street-scenes", number=3).status == "published"

        page.click("#nav-requests")
        page.wait_for_url("**/supplier/requests/")
        page.click("#nav-notifications")
        page.wait_for_url("**/notifications/")


def test_a_buyer_lands_on_the_library_and_reaches_samples_and_a_request(live_server, demo):
    with chromium_page() as page:
        log_in_from_home(page, live_server.url, "buyer")
        page.wait_for_url("**/library/")
        links = header_links(page)
        assert "Library" in links and "Workspace" not in links and "Governance" not in links
        assert "Bridge Inspection" in page.locator("main").inner_text()
        page.click("a:has-text('samples')")
        page.wait_for_url("**/datasets/bridge-inspection/versions/*/samples/")

        page.click("header.site a:text-is('Catalogue')")
        page.click("article.dataset h2 a:has-text('Pedestrian Poses')")
        page.click("a.button:text-is('Request access')")
        page.wait_for_url("**/datasets/pedestrian-poses*/offers/*/")


def test_an_auditor_lands_on_governance_and_reaches_provenance_evidence_and_a_label_history(
    live_server, demo
):
    with chromium_page() as page:
        log_in_from_home(page, live_server.url, "auditor")
        page.wait_for_url("**/governance/")
        assert "Governance" in header_links(page)
        rows = page.locator("tr.audit-version")
        titles = rows.locator("td:first-child a").all_inner_texts()
        assert any(t.startswith("Urban Street Scenes") for t in titles)
        assert any(t.startswith("Bridge Inspection") for t in titles)
        # Drafts are not audited: Urban Street Scenes v3 is not listed.
        assert (
            page.locator("tr.audit-version[data-dataset='urban-street-scenes'][data-version='3']").count()
            == 0
        )

        row = "tr.audit-version[data-dataset='urban-street-scenes'][data-version='2']"
        page.click(f"{row} a.provenance")
        page.wait_for_url("**/versions/2/provenance/")
        assert page.locator("h1").inner_text().startswith("Provenance of v2")
        page.go_back()
        page.click(f"{row} a.evidence")
        page.wait_for_url("**/versions/2/quality/compliance/")
        page.go_back()
        page.click(f"{row} a.label-history")
        page.wait_for_url("**/governance/labels/**")
        assert page.locator("main").inner_text().count("created") >= 1


def test_staff_lands_on_the_admin_and_sees_its_link(live_server, demo):
    with chromium_page() as page:
        log_in_from_home(page, live_server.url, "admin")
        page.wait_for_url("**/admin/")
        page.goto(live_server.url + "/")
        page.click("#nav-admin")
        page.wait_for_url("**/admin/")
