"""Lineage as a supplier and a visitor see it, in a real headless Chromium.

v1 is a plain COCO export, published; the supplier fixes it in their tool (one class change, one
nudged box, one label added, same annotation ids), uploads the new export through the page, reads
the lineage section, publishes v2; the public changelog shows what the version diff computes, and
the label whose class changed has one history: created in v1, modified in v2, each event proved.
"""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile

from marketplace.catalogue import publication
from marketplace.deliveries import service as deliveries
from marketplace.models import DatasetVersion, Label
from marketplace.workspace import diff as workspace_diff
from tests.browser import chromium_page

from .ingest_support import zip_bytes
from .test_lineage_ingest import V1, coco_delivery, corrected
from .workspace_support import fast_passwords  # noqa: F401  (autouse fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_corrected_export_shows_its_lineage_changelog_and_label_history_in_the_browser(
    live_server, supplier, dataset, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    first = deliveries.create_delivery(
        dataset=dataset, archive=ContentFile(zip_bytes(coco_delivery(V1)), name="v1.zip"), format="coco"
    )
    assert deliveries.ingest_delivery(delivery_id=first.pk).ok
    publication.publish_version(version=DatasetVersion.objects.get(dataset=dataset, number=1))
    archive = tmp_path / "corrected.zip"
    archive.write_bytes(zip_bytes(coco_delivery(corrected())))

    with chromium_page() as page:
        page.goto(live_server.url + "/accounts/login/?next=/supplier/deliveries/")
        page.fill("#id_username", "supplier")
        page.fill("#id_password", "pass-word-123")
        page.click("button:has-text('Log in')")
        page.wait_for_url("**/supplier/deliveries/")

        # The corrected export, through the upload form (matching on: the default).
        page.select_option("#id_dataset", dataset.slug)
        page.set_input_files("#id_archive", str(archive))
        page.select_option("#id_format", "coco")
        assert not page.is_checked("#id_no_matching")
        page.click("button:has-text('Upload and check')")
        page.wait_for_url(re.compile(r".*/supplier/deliveries/\d+/$"))

        # The delivery page's lineage section: four found by the tool's own id, one new, none removed.
        assert page.locator("h2#lineage").is_visible()
        rows = {
            tr.locator("th").inner_text().strip(): tr.locator("td").inner_text().strip()
            for tr in page.locator("table.lineage tr").all()
        }
        assert rows["By the tool's own id"] == "4"
        assert rows["By geometry"] == "0"
        assert rows["New"] == "1"
        assert rows["Removed"] == "0"
        assert rows["Matched and changed / unchanged"] == "2 / 2"
        assert (
            "Labels matched to version 1"
            in page.locator("p:has-text('Labels matched to version')").inner_text()
        )

        v1 = DatasetVersion.objects.get(dataset=dataset, number=1)
        v2 = DatasetVersion.objects.get(dataset=dataset, number=2)
        publication.publish_version(version=v2, release_notes="Fixed one class and one box; one label added.")
        diff = workspace_diff.diff_versions(old=v1, new=v2)
        labels = {k: diff["labels"][k] for k in ("added", "removed", "changed", "unchanged")}
        assert labels == {"added": 1, "removed": 0, "changed": 2, "unchanged": 2}

        # The label that became a person: one history across both versions, each event proved.
        uid = Label.objects.get(version=v1, source_id="2").uid
        page.goto(f"{live_server.url}/governance/labels/{uid}/")
        events = page.locator("#events tr.event")
        life = [
            (
                events.nth(i).locator("td").nth(1).locator("b").inner_text(),
                events.nth(i).locator("td").nth(6).inner_text().strip(),
                events.nth(i).locator("td").nth(7).inner_text(),
            )
            for i in range(events.count())
        ]
        assert [(what, version) for what, version, _ in life] == [("created", "v1"), ("modified", "v2")]
        assert all("included" in proof for _, _, proof in life)

        # A visitor (no login) reads the dataset page's changelog: the same counts as the diff.
        visitor = page.context.browser.new_page()
        visitor.goto(f"{live_server.url}/datasets/{dataset.slug}/")
        entry = visitor.locator("#changelog-v2")
        cells = entry.locator("tr.diff-labels td").all_inner_texts()
        assert cells[3:] == [f"+{labels['added']}", f"−{labels['removed']}", str(labels["changed"])]
        assert cells[1:3] == [str(diff["labels"]["before"]), str(diff["labels"]["after"])]
        line = entry.locator(".lineage-line").inner_text()
        assert "the tool's own id (4)" in line
        assert f"{labels['changed']} changed" in line and f"{labels['unchanged']} unchanged" in line
